"""ETH on internet-style collections and on the benchmark's own inputs (database.db, EXIF priors).

The internet-style scene is built from the real Strecha castle images of ``../shared/data`` (skipped
when absent): crops of 50–100 % at random offsets, rescaled to 675–1083 px (mixed sizes, principal
points and focal lengths), half of them with an EXIF focal length (35 mm equivalent, as cameras write
it), JPEG-compressed again.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pycolmap
import pytest
from PIL import Image
from synthetic_scenes import sift_features_of_folder

from posfeat.evaluation.eth import evaluate as eth
from posfeat.io import DataError
from posfeat.sfm import colmap, verification
from posfeat.trainset.pairs import scale_intrinsics

CASTLE = "megadepth-strecha/strecha_castle/dense0/aligned"


def make_internet_scene(shared: Path, out: Path, n_images: int = 8, exif_every: int = 2, seed: int = 0) -> Path:
    """``out/images/*.jpg`` + ``gt_cameras.txt``: mixed crops/sizes of the castle images (see module doc)."""
    src = shared / CASTLE
    rows = [ln.split() for ln in (src / "img_cam.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    (out / "images").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    lines = []
    for i, r in enumerate(rows[:n_images]):
        img = cv2.imread(str(src / "images" / r[0]))[:, :, ::-1]
        h, w = img.shape[:2]
        fx, fy, cx, cy = map(float, r[3:7])
        cw, ch = int(w * rng.uniform(0.5, 1.0)), int(h * rng.uniform(0.5, 1.0))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        K = np.array([[fx, 0, cx - x0], [0, fy, cy - y0], [0, 0, 1.0]])
        s = rng.uniform(675, 1083) / max(cw, ch)
        nw, nh = int(round(cw * s)), int(round(ch * s))
        res = cv2.resize(
            np.ascontiguousarray(img[y0 : y0 + ch, x0 : x0 + cw]), (nw, nh), interpolation=cv2.INTER_LINEAR
        )
        K = scale_intrinsics(K, nw / cw, nh / ch)
        exif = Image.Exif()
        if i % exif_every == 0:  # COLMAP: f = f35 / 43.27 mm (35 mm diagonal) · image diagonal
            exif[0x010F], exif[0x0110] = "Canon", "EOS"
            exif.get_ifd(0x8769)[0xA405] = int(round(K[0, 0] * 43.27 / float(np.hypot(nw, nh))))
        Image.fromarray(res).save(out / "images" / r[0], quality=92, exif=exif)
        lines.append(
            " ".join([r[0], str(nw), str(nh)] + [f"{v:.4f}" for v in (K[0, 0], K[1, 1], K[0, 2], K[1, 2])] + r[7:])
        )
    (out / "gt_cameras.txt").write_text("\n".join(lines) + "\n")
    return out


@pytest.fixture(scope="module")
def internet_scene(shared_data, tmp_path_factory):
    """(scene folder, features named relative to its images/ folder — `extract --images SCENE/images`)."""
    scene = make_internet_scene(shared_data, tmp_path_factory.mktemp("internet") / "Castle")
    return scene, sift_features_of_folder(scene / "images", scene.parent / "sift.h5")


@pytest.mark.slow
def test_internet_collection_registers_every_image(internet_scene, tmp_path):
    """Mixed sizes, principal points and focal lengths, EXIF on half: every image registers, poses are right."""
    scene, feats = internet_scene
    res = eth.evaluate_scene(
        scene, feats, tmp_path / "work", eth.ETHConfig(num_threads=1), device="cpu", progress=False
    )
    st = res.stats
    assert st["num_images"] == 8 and st["num_reg_images"] == 8, res.message
    assert st["protocol"]["pairs"] == "exhaustive" and st["protocol"]["camera_priors"] == {"exif": 4, "guess": 4}
    assert st["protocol"]["matcher"] == "mutual NN"
    v = st["verification"]
    assert sum(v["configs"].values()) == st["num_matched_pairs"]
    assert v["verified_pairs"] == st["num_inlier_pairs"] and v["inlier_ratio_verified"]["median"] > 0.1
    assert st["median_rotation_error_deg"] < 5.0 and st["mean_reproj_error"] < 1.5
    # cameras with an EXIF focal carry it as a prior, the others COLMAP's guess
    db = pycolmap.Database.open(str(tmp_path / "work" / "database.db"))
    try:
        cams = {im.name: db.read_camera(im.camera_id) for im in db.read_all_images()}
    finally:
        db.close()
    priors = [c.has_prior_focal_length for _, c in sorted(cams.items())]
    assert priors == [True, False] * 4


@pytest.mark.slow
def test_two_sided_ratio_loses_inliers(internet_scene, tmp_path):
    """The cause measured on the internet scene: the two-sided ratio 0.75 keeps far fewer verified inliers."""
    scene, feats = internet_scene
    cfg = dict(num_threads=1)
    plain = eth.evaluate_scene(scene, feats, tmp_path / "a", eth.ETHConfig(**cfg), device="cpu", progress=False)
    ratio = eth.evaluate_scene(
        scene, feats, tmp_path / "b", eth.ETHConfig(ratio=0.75, **cfg), device="cpu", progress=False
    )
    assert ratio.stats["num_inlier_matches"] * 1.5 < plain.stats["num_inlier_matches"]
    assert ratio.stats["protocol"]["matcher"] == "mutual NN + ratio 0.75"


def _old_schema_database(path: Path, cameras: dict[str, tuple[int, int, float]]) -> None:
    """A COLMAP 3.x database (no rigs/frames) as the ETH release ships it: one camera per image, prior focal."""
    c = sqlite3.connect(path)
    c.executescript("""
    CREATE TABLE cameras (camera_id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, model INTEGER NOT NULL,
        width INTEGER NOT NULL, height INTEGER NOT NULL, params BLOB, prior_focal_length INTEGER NOT NULL);
    CREATE TABLE images (image_id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, name TEXT NOT NULL UNIQUE,
        camera_id INTEGER NOT NULL, prior_qw REAL, prior_qx REAL, prior_qy REAL, prior_qz REAL, prior_tx REAL,
        prior_ty REAL, prior_tz REAL);
    CREATE TABLE keypoints (image_id INTEGER PRIMARY KEY NOT NULL, rows INTEGER NOT NULL, cols INTEGER NOT NULL,
        data BLOB);
    CREATE TABLE descriptors (image_id INTEGER PRIMARY KEY NOT NULL, rows INTEGER NOT NULL, cols INTEGER NOT NULL,
        data BLOB);
    CREATE TABLE matches (pair_id INTEGER PRIMARY KEY NOT NULL, rows INTEGER NOT NULL, cols INTEGER NOT NULL,
        data BLOB);
    CREATE TABLE two_view_geometries (pair_id INTEGER PRIMARY KEY NOT NULL, rows INTEGER NOT NULL,
        cols INTEGER NOT NULL, data BLOB, config INTEGER NOT NULL, F BLOB, E BLOB, H BLOB, qvec BLOB, tvec BLOB);
    """)
    for k, (name, (w, h, f)) in enumerate(sorted(cameras.items())):
        cam_id, image_id = 10 + k, 100 + 3 * k  # ids that are not 1..N: they must be kept
        c.execute(
            "INSERT INTO cameras VALUES (?, 2, ?, ?, ?, 1)", (cam_id, w, h, np.array([f, w / 2, h / 2, 0.0]).tobytes())
        )
        c.execute("INSERT INTO images (image_id, name, camera_id) VALUES (?, ?, ?)", (image_id, name, cam_id))
        c.execute("INSERT INTO keypoints VALUES (?, 1, 6, ?)", (image_id, np.zeros((1, 6), np.float32).tobytes()))
    c.commit()
    c.close()


@pytest.mark.slow
def test_scene_database_is_used(internet_scene, tmp_path):
    """<Scene>/database.db (COLMAP 3 schema): its cameras, prior focals, names and ids; the release file untouched."""
    import shutil

    src, feats = internet_scene
    scene = tmp_path / "Castle"
    shutil.copytree(src, scene)
    gt = eth.read_gt_cameras(scene)
    _old_schema_database(scene / "database.db", {n: (c.width, c.height, float(c.K[0, 0])) for n, c in gt.items()})
    before = (scene / "database.db").read_bytes()
    res = eth.evaluate_scene(
        scene, feats, tmp_path / "work", eth.ETHConfig(num_threads=1), device="cpu", progress=False
    )
    assert res.stats["protocol"]["cameras"] == "database.db" and res.stats["num_reg_images"] == 8, res.message
    assert (scene / "database.db").read_bytes() == before
    db = pycolmap.Database.open(str(tmp_path / "work" / "database.db"))
    try:
        ids = sorted(im.image_id for im in db.read_all_images())
        assert ids == [100 + 3 * k for k in range(8)]
        assert all(db.num_keypoints_for_image(i) > 100 for i in ids)  # ours, not the release's 1 keypoint
        assert all(c.has_prior_focal_length for c in db.read_all_cameras())
    finally:
        db.close()
    # a camera whose size disagrees with the features: a clear error naming the database
    c = sqlite3.connect(scene / "database.db")
    c.execute("UPDATE cameras SET width = width + 1 WHERE camera_id = 10")
    c.commit()
    c.close()
    with pytest.raises(DataError, match=r"database.db: camera 10 of image .* expected the features' image size"):
        eth.evaluate_scene(scene, feats, tmp_path / "work2", eth.ETHConfig(num_threads=1), device="cpu", progress=False)


def test_verification_report_counts(tmp_path):
    """verification_report: configuration names and inlier ratios of matched pairs."""
    db = colmap.create_database(tmp_path / "d.db")
    try:
        ids = []
        for n in ("a", "b", "c"):
            ids.append(colmap.add_image(db, n, colmap.add_camera(db, colmap.guess_camera(100, 100))))
            colmap.import_keypoints(db, ids[-1], np.random.default_rng(0).uniform(0, 99, (50, 2)))
        m = np.stack([np.arange(40), np.arange(40)], 1)
        colmap.import_matches(db, ids[0], ids[1], m)
        colmap.import_matches(db, ids[0], ids[2], m[:20])
        g = pycolmap.TwoViewGeometry()
        g.config = pycolmap.TwoViewGeometryConfiguration.UNCALIBRATED
        g.inlier_matches = m[:30].astype(np.uint32)
        db.write_two_view_geometry(ids[0], ids[1], g)
        rep = verification.verification_report(db, [(ids[0], ids[1]), (ids[0], ids[2])], min_num_inliers=15)
    finally:
        db.close()
    assert rep["configs"] == {"NONE": 1, "UNCALIBRATED": 1}
    assert rep["verified_pairs"] == 1 and rep["failed_pairs"] == 1
    assert rep["inlier_ratio_verified"]["median"] == 0.75 and rep["raw_matches_failed_median"] == 20
