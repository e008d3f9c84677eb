"""Dataset readers (MegaDepth CAPS, HPatches, Aachen Day-Night, ETH): good data parses to the values in the
files, bad data raises DataError naming the file, the line and what was expected."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from posfeat.datasets import aachen, eth, hpatches, megadepth
from posfeat.io import DataError

# A valid img_cam.txt line (identity rotation) and helpers to write small broken files.
GOOD_CAM = "a.jpg 640 480 500 500 320 240 1 0 0 0 1 0 0 0 1 0 0 0"


def _rot_line(name: str, R: np.ndarray, t=(0.1, -0.2, 3.0), size=(640, 480), f=500.0) -> str:
    vals = [size[0], size[1], f, f, size[0] / 2, size[1] / 2, *R.ravel(), *t]
    return name + " " + " ".join(f"{v:.12g}" for v in vals)


def _raises_at(fn, path: Path, line: int | None, pattern: str):
    """``fn()`` raises DataError whose message names ``path`` (and ``:line``) and matches ``pattern``."""
    with pytest.raises(DataError) as info:
        fn()
    msg = str(info.value)
    where = f"{path}:{line}" if line is not None else str(path)
    assert where in msg, msg
    assert re.search(pattern, msg), msg
    return msg


def _make_scene(root: Path, cam_lines: list[str], pair_lines: list[str], images=("a.jpg", "b.jpg", "c.jpg")):
    aligned = root / "0100" / "dense0" / "aligned"
    (aligned / "images").mkdir(parents=True)
    for n in images:
        (aligned / "images" / n).write_bytes(b"")  # existence only: readers never open them
    (aligned / "img_cam.txt").write_text("\n".join(cam_lines) + "\n")
    (aligned / "pairs.txt").write_text("\n".join(pair_lines) + "\n")
    return megadepth.find_scenes(root)[0]


# ------------------------------------------------------------------------------------------ MegaDepth
def _independent_img_cam(path: Path) -> dict[str, np.ndarray]:
    rows = [l.split() for l in path.read_text().splitlines() if l.strip() and not l.lstrip().startswith("#")]
    return {r[0]: np.array(r[1:], float) for r in rows}


@pytest.mark.parametrize("which", ["demo", "shared"])
def test_megadepth_reader_matches_files(which, request):
    if which == "demo":
        root = request.getfixturevalue("demo_root") / "megadepth"
        expected_scenes = ["0008/dense0", "0015/dense0", "0021/dense0"]
    else:
        root = request.getfixturevalue("shared_data") / "megadepth-strecha"
        expected_scenes = ["strecha_castle/dense0", "strecha_entry/dense0"]
    scenes = megadepth.find_scenes(root)
    assert [s.key for s in scenes] == expected_scenes
    for scene in scenes:
        cams, pairs = megadepth.load_scene(scene)
        raw = _independent_img_cam(scene.path / "img_cam.txt")
        assert sorted(cams) == sorted(raw)
        for name, v in raw.items():
            c = cams[name]
            assert (c.width, c.height) == (int(v[0]), int(v[1]))
            np.testing.assert_allclose(c.K, [[v[2], 0, v[4]], [0, v[3], v[5]], [0, 0, 1]])
            np.testing.assert_allclose(c.R, v[6:15].reshape(3, 3))
            np.testing.assert_allclose(c.t, v[15:18])
            np.testing.assert_allclose(c.center, -v[6:15].reshape(3, 3).T @ v[15:18])
            assert (scene.image_dir / name).is_file()
        raw_pairs = [tuple(l.split()) for l in (scene.path / "pairs.txt").read_text().splitlines() if l.strip()]
        assert pairs == raw_pairs and len(pairs) > 0


def test_megadepth_check_sizes_decodes_images(shared_data):
    scene = megadepth.find_scenes(shared_data / "megadepth-strecha")[1]
    cams, _ = megadepth.load_scene(scene, check_sizes=True)
    assert all(c.size == (768, 512) for c in cams.values())


@pytest.mark.parametrize(
    "bad_line, pattern",
    [
        ("b.jpg 640 480 500 500 320 240 1 0 0 0 1 0 0 0 1 0 0", r"expected 19 fields"),
        ("b.jpg 640 480 500 500 320 240 1 0 0 0 1 0 0 0 1 0 0 zero", r"expected t3 to be a number"),
        ("b.jpg 640 -480 500 500 320 240 1 0 0 0 1 0 0 0 1 0 0 0", r"expected h > 0"),
        ("b.jpg 640 480 0 500 320 240 1 0 0 0 1 0 0 0 1 0 0 0", r"expected focal lengths"),
        ("b.jpg 640 480 500 500 320 240 1 0 0 0 2 0 0 0 1 0 0 0", r"expected R11..R33 to form a rotation"),
        ("b.jpg 640 480 500 500 320 240 -1 0 0 0 1 0 0 0 1 0 0 0", r"rotation matrix.*det=-1"),  # a reflection
        ("b.jpg 640 480 500 500 320 240 1 0 0 0 1 0 0 0 nan 0 0 0", r"finite"),
        ("a.jpg 640 480 500 500 320 240 1 0 0 0 1 0 0 0 1 0 0 0", r"unique image names.*first on line 2"),
    ],
)
def test_img_cam_bad_line(tmp_path, bad_line, pattern):
    path = tmp_path / "img_cam.txt"
    path.write_text("# name w h fx fy cx cy R t\n" + GOOD_CAM + "\n\n" + bad_line + "\n")
    _raises_at(lambda: megadepth.read_img_cam(path), path, 4, pattern)


def test_img_cam_missing_and_empty(tmp_path):
    _raises_at(lambda: megadepth.read_img_cam(tmp_path / "img_cam.txt"), tmp_path / "img_cam.txt", None, "not found")
    (tmp_path / "img_cam.txt").write_text("# only a comment\n")
    _raises_at(lambda: megadepth.read_img_cam(tmp_path / "img_cam.txt"), tmp_path / "img_cam.txt", None, "at least one")


def test_img_cam_accepts_rounded_rotation(tmp_path):
    R = Rotation.from_euler("xyz", [10, -20, 30], degrees=True).as_matrix()
    path = tmp_path / "img_cam.txt"
    path.write_text(_rot_line("r.jpg", np.round(R, 6)) + "\n")
    np.testing.assert_allclose(megadepth.read_img_cam(path)["r.jpg"].R, R, atol=1e-6)


@pytest.mark.parametrize(
    "pair_lines, line, pattern",
    [
        (["a.jpg b.jpg", "a.jpg"], 2, r"expected 2 fields"),
        (["a.jpg b.jpg", "a.jpg d.jpg"], 2, r"image listed in img_cam.txt.*'d.jpg'"),
        (["a.jpg b.jpg", "c.jpg c.jpg"], 2, r"two different images"),
        (["a.jpg b.jpg", "b.jpg c.jpg", "b.jpg a.jpg"], 3, r"each pair once.*first on line 1"),
    ],
)
def test_pairs_bad_line(tmp_path, pair_lines, line, pattern):
    cams = [GOOD_CAM, GOOD_CAM.replace("a.jpg", "b.jpg"), GOOD_CAM.replace("a.jpg", "c.jpg")]
    scene = _make_scene(tmp_path, cams, pair_lines)
    _raises_at(lambda: megadepth.load_scene(scene), scene.path / "pairs.txt", line, pattern)


def test_megadepth_missing_image_names_img_cam_line(tmp_path):
    cams = [GOOD_CAM, GOOD_CAM.replace("a.jpg", "b.jpg"), GOOD_CAM.replace("a.jpg", "c.jpg")]
    scene = _make_scene(tmp_path, cams, ["a.jpg b.jpg"], images=("a.jpg", "b.jpg"))
    _raises_at(lambda: megadepth.load_scene(scene), scene.path / "img_cam.txt", 3, r"expected image 'c.jpg'")
    cams_, pairs = megadepth.load_scene(scene, check_images=False)
    assert len(cams_) == 3 and pairs == [("a.jpg", "b.jpg")]


def test_megadepth_missing_root(tmp_path):
    _raises_at(lambda: megadepth.find_scenes(tmp_path / "nope"), tmp_path / "nope", None, "root not found")


# ------------------------------------------------------------------------------------------- HPatches
def test_hpatches_demo(demo_root):
    root = demo_root / "hpatches"
    names = hpatches.list_sequences(root)
    assert names == ["i_demo00", "i_demo01", "v_demo00", "v_demo01"]
    for name in names:
        seq = hpatches.load_sequence(root, name)
        assert seq.kind == name[0] and len(seq.images) == 6 and seq.images[0] == f"{name}/1.ppm"
        assert all((root / im).is_file() for im in seq.images)
        for k in range(2, 7):
            np.testing.assert_allclose(seq.homographies[k], np.loadtxt(root / name / f"H_1_{k}"))
            if seq.kind == "i":
                np.testing.assert_allclose(seq.homographies[k], np.eye(3), atol=1e-12)
        pairs = seq.pairs()
        assert [p[1] for p in pairs] == seq.images[1:]


def test_hpatches_shared_v_boat(shared_data):
    root = shared_data / "hpatches-oxford"
    assert hpatches.list_sequences(root) == ["v_boat"]
    seq = hpatches.load_sequence(root, "v_boat")
    assert seq.kind == "v" and seq.images == [f"v_boat/{k}.ppm" for k in range(1, 7)]
    for k in range(2, 7):
        np.testing.assert_allclose(seq.homographies[k], np.loadtxt(root / "v_boat" / f"H_1_{k}"))
        assert abs(np.linalg.det(seq.homographies[k])) > 0


def test_hpatches_exclusion_list(tmp_path):
    for name in ("i_dc", "v_talent", "i_keep", "v_keep", "other"):
        (tmp_path / name).mkdir()
    assert hpatches.list_sequences(tmp_path) == ["i_keep", "v_keep"]
    assert hpatches.list_sequences(tmp_path, exclude=()) == ["i_dc", "i_keep", "v_keep", "v_talent"]
    assert set(hpatches.D2NET_EXCLUDE) == {
        "i_contruction",
        "i_crownnight",
        "i_dc",
        "i_pencils",
        "i_whitebuilding",
        "v_artisans",
        "v_astronautis",
        "v_talent",
    }


def _write_seq(root: Path, name="v_x", homs=None, missing_image=None) -> Path:
    d = root / name
    d.mkdir(parents=True)
    for k in range(1, 7):
        if k != missing_image:
            (d / f"{k}.ppm").write_bytes(b"")
    for k in range(2, 7):
        (d / f"H_1_{k}").write_text((homs or {}).get(k, "1 0 0\n0 1 0\n0 0 1\n"))
    return d


@pytest.mark.parametrize(
    "text, line, pattern",
    [
        ("1 0 0\n0 1\n0 0 1\n", 2, r"expected 3 fields"),
        ("1 0 0\n0 1 0\n", 2, r"expected 3 rows of 3 numbers, found 2"),
        ("1 0 0\n0 1 0\n0 0 1\n0 0 1\n", 4, r"found a 4th row"),
        ("1 0 0\n0 1 x\n0 0 1\n", 2, r"expected H\[1,2\] to be a number"),
        ("1 2 3\n2 4 6\n0 0 1\n", 3, r"expected an invertible homography"),
        ("0 0 0\n0 0 0\n0 0 0\n", 3, r"expected an invertible homography"),
    ],
)
def test_hpatches_bad_homography(tmp_path, text, line, pattern):
    d = _write_seq(tmp_path, homs={4: text})
    _raises_at(lambda: hpatches.load_sequence(tmp_path, "v_x"), d / "H_1_4", line, pattern)


def test_hpatches_missing_files(tmp_path):
    d = _write_seq(tmp_path, missing_image=3)
    _raises_at(lambda: hpatches.load_sequence(tmp_path, "v_x"), d, None, r"expected image 3\.<ext>")
    (d / "3.ppm").write_bytes(b"")
    (d / "H_1_5").unlink()
    _raises_at(lambda: hpatches.load_sequence(tmp_path, "v_x"), d / "H_1_5", None, "not found")


# --------------------------------------------------------------------------------------------- Aachen
def test_aachen_demo(demo_root):
    root = demo_root / "aachen"
    layout = aachen.AachenLayout.detect(root)
    assert layout.version == "1.1" and layout.has_ground_truth()
    queries = aachen.load_queries(root)
    assert [q.condition for q in queries] == ["day", "day", "night"]
    for q in queries:
        assert q.name.startswith(f"query/{q.condition}/") and (layout.image_dir / q.name).is_file()
        cam = q.to_pycolmap()
        assert (cam.width, cam.height) == (q.width, q.height) and cam.model.name == q.model
    rec = aachen.load_reference(root)
    names = sorted(im.name for im in rec.images.values())
    assert len(names) == 8 and all(n.startswith("db/") for n in names)
    intr = aachen.read_database_intrinsics(layout.database_intrinsics, layout.image_dir)
    assert sorted(intr) == names
    for im in rec.images.values():
        model, w, h, params = intr[im.name]
        cam = rec.cameras[im.camera_id]
        assert (cam.model.name, cam.width, cam.height) == (model, w, h)
        np.testing.assert_allclose(cam.params, params, rtol=1e-6)
    gt = aachen.read_ground_truth(layout.ground_truth)
    assert sorted(gt) == sorted(q.name for q in queries)
    for q, t in gt.values():
        assert abs(np.linalg.norm(q) - 1) < 1e-12 and t.shape == (3,)
    pairs = aachen.read_pairs(layout.pairs, known=set(names) | set(gt))
    assert len(pairs) > 0


def _aachen_v10(tmp_path: Path) -> Path:
    """A tiny Aachen v1.0 layout: NVM poses + database_intrinsics.txt + a night query list."""
    root = tmp_path / "aachen10"
    img = root / "images" / "images_upright"
    (img / "db").mkdir(parents=True)
    (img / "query" / "night" / "nexus5x").mkdir(parents=True)
    models = root / "3D-models"
    models.mkdir()
    rng = np.random.default_rng(0)
    nvm = ["NVM_V3", "", "2"]
    intr = []
    for i in range(2):
        name = f"db/{i + 10}.jpg"
        (img / name).write_bytes(b"")
        q = Rotation.random(random_state=i).as_quat()[[3, 0, 1, 2]]  # (w, x, y, z)
        c = rng.normal(size=3)
        nvm.append(f"{name} 800 " + " ".join(f"{v:.15g}" for v in (*q, *c)) + " 0.01 0")
        intr.append(f"{name} SIMPLE_RADIAL 1600 1200 800 800 600 -0.01")
    nvm += ["", "0", ""]
    (models / "aachen_cvpr2018_db.nvm").write_text("\n".join(nvm))
    (models / "database_intrinsics.txt").write_text("\n".join(intr) + "\n")
    (root / "queries").mkdir()
    (img / "query/night/nexus5x/q.jpg").write_bytes(b"")
    (root / "queries" / "night_time_queries_with_intrinsics.txt").write_text(
        "query/night/nexus5x/q.jpg SIMPLE_RADIAL 1600 1200 1400 800 600 0.02\n"
    )
    return root


def test_aachen_v10_layout(tmp_path):
    root = _aachen_v10(tmp_path)
    layout = aachen.AachenLayout.detect(root)
    assert layout.version == "1.0"
    assert (
        layout.pairs.name == "image_pairs_to_match.txt" and layout.database_intrinsics.name == "database_intrinsics.txt"
    )
    rec = aachen.load_reference(root)
    lines = (root / "3D-models" / "aachen_cvpr2018_db.nvm").read_text().splitlines()[3:5]
    for line in lines:
        f = line.split()
        R = Rotation.from_quat([float(f[3]), float(f[4]), float(f[5]), float(f[2])]).as_matrix()
        c = np.array(f[6:9], float)
        im = next(i for i in rec.images.values() if i.name == f[0])
        np.testing.assert_allclose(im.cam_from_world().rotation.matrix(), R, atol=1e-9)
        np.testing.assert_allclose(im.cam_from_world().translation, -R @ c, atol=1e-9)
        np.testing.assert_allclose(im.projection_center(), c, atol=1e-9)
    queries = aachen.load_queries(root)
    assert [(q.name, q.condition) for q in queries] == [("query/night/nexus5x/q.jpg", "night")]


@pytest.mark.parametrize(
    "line, pattern",
    [
        (
            "query/day/a.jpg SIMPLE_RADIAL 1600 1200 1400 800 600",
            r"expected 4 parameters for camera model SIMPLE_RADIAL",
        ),
        ("query/day/a.jpg WEIRD 1600 1200 1400 800 600 0", r"expected a COLMAP camera model"),
        ("query/day/a.jpg PINHOLE 1600 1200 -1 1400 800 600", r"expected a focal length > 0"),
        ("query/day/a.jpg PINHOLE 1600 1200.5 1400 1400 800 600", r"expected height to be an integer"),
        ("query/day/a.jpg PINHOLE", r"expected at least 5 fields"),
        ("query/day/missing.jpg PINHOLE 1600 1200 1400 1400 800 600", r"expected image 'query/day/missing.jpg'"),
    ],
)
def test_aachen_bad_query_line(tmp_path, line, pattern):
    (tmp_path / "img" / "query" / "day").mkdir(parents=True)
    (tmp_path / "img" / "query/day/a.jpg").write_bytes(b"")
    path = tmp_path / "day_time_queries_with_intrinsics.txt"
    path.write_text("query/day/a.jpg PINHOLE 1600 1200 1400 1400 800 600\n" + line + "\n")
    _raises_at(lambda: aachen.read_query_list(path, "day", tmp_path / "img"), path, 2, pattern)


def test_aachen_missing_query_image_through_layout(tmp_path, demo_root):
    root = tmp_path / "aachen"
    shutil.copytree(demo_root / "aachen", root)
    night = root / "queries" / "night_time_queries_with_intrinsics_v1_1.txt"
    name = night.read_text().split()[0]
    (root / "images" / "images_upright" / name).unlink()
    _raises_at(lambda: aachen.load_queries(root), night, 1, re.escape(f"expected image '{name}'"))
    assert len(aachen.load_queries(root, check_images=False)) == 3
    db = sorted((root / "images/images_upright/db").iterdir())[0]
    db.unlink()
    _raises_at(lambda: aachen.load_reference(root), root / "3D-models" / "aachen_v_1_1", None, "1 missing")


@pytest.mark.parametrize(
    "line, pattern",
    [
        ("q.jpg 1 0 0 0 0 0", r"expected 8 fields"),
        ("q.jpg 0.9 0 0 0 0 0 0", r"expected a unit quaternion"),
        ("q.jpg 1 0 0 0 0 0 inf", r"expected tz to be a finite number"),
        ("p.jpg 1 0 0 0 0 0 0", r"unique names.*first on line 1"),
    ],
)
def test_aachen_bad_ground_truth(tmp_path, line, pattern):
    path = tmp_path / "ground_truth_queries.txt"
    path.write_text("p.jpg 1 0 0 0 1 2 3\n" + line + "\n")
    _raises_at(lambda: aachen.read_ground_truth(path), path, 2, pattern)


def test_aachen_ground_truth_rotation_is_world_to_camera(tmp_path):
    q = Rotation.from_euler("zyx", [30, 10, -5], degrees=True).as_quat()[[3, 0, 1, 2]]
    path = tmp_path / "gt.txt"
    path.write_text("q.jpg " + " ".join(f"{v:.15g}" for v in (*q, 1, 2, 3)) + "\n")
    ((qv, t),) = aachen.read_ground_truth(path).values()
    np.testing.assert_allclose(qv, q, atol=1e-12)
    np.testing.assert_allclose(t, [1, 2, 3])


@pytest.mark.parametrize(
    "body, line, pattern",
    [
        (["NVM_V2", "1", "a.jpg 1 1 0 0 0 0 0 0 0 0"], 1, r"expected the header NVM_V3"),
        (["NVM_V3", "2", "a.jpg 1 1 0 0 0 0 0 0 0 0"], None, r"expected 2 camera lines, found 1"),
        (["NVM_V3", "1", "a.jpg 1 1 0 0 0 0 0 0 0"], 3, r"expected 11 fields"),
        (["NVM_V3", "1", "a.jpg 1 2 0 0 0 0 0 0 0 0"], 3, r"expected a unit quaternion"),
        (["NVM_V3", "1", "a.jpg -5 1 0 0 0 0 0 0 0 0"], 3, r"expected focal length f > 0"),
        (["NVM_V3", "1", "z.jpg 1 1 0 0 0 0 0 0 0 0"], 3, r"listed in the database intrinsics.*'z.jpg'"),
    ],
)
def test_aachen_bad_nvm(tmp_path, body, line, pattern):
    path = tmp_path / "model.nvm"
    path.write_text("\n".join(body) + "\n")
    intr = {"a.jpg": ("PINHOLE", 10, 10, np.ones(4))}
    _raises_at(lambda: aachen.read_nvm(path, intr), path, line, pattern)


def test_aachen_bad_pairs_and_root(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("db/1.jpg db/2.jpg\ndb/1.jpg db/3.jpg extra\n")
    _raises_at(lambda: aachen.read_pairs(path), path, 2, r"expected 2 fields")
    path.write_text("db/1.jpg db/2.jpg\ndb/1.jpg db/9.jpg\n")
    _raises_at(lambda: aachen.read_pairs(path, known={"db/1.jpg", "db/2.jpg"}), path, 2, r"unknown 'db/9.jpg'")
    (tmp_path / "empty_root").mkdir()
    _raises_at(
        lambda: aachen.AachenLayout.detect(tmp_path / "empty_root"), tmp_path / "empty_root", None, "found neither"
    )


# ------------------------------------------------------------------------------------------------ ETH
def test_eth_demo(demo_root):
    root = demo_root / "eth"
    assert eth.list_scenes(root) == ["Plaza"]
    images = eth.list_scene_images(root / "Plaza")
    assert len(images) == 6 and all(n.startswith("images/") for n in images)
    cams = eth.read_gt_cameras(root / "Plaza")
    assert sorted(cams) == sorted(n[len("images/") :] for n in images)
    raw = _independent_img_cam(root / "Plaza" / "gt_cameras.txt")
    for name, v in raw.items():
        np.testing.assert_allclose(cams[name].R, v[6:15].reshape(3, 3))
        np.testing.assert_allclose(cams[name].t, v[15:18])


def test_eth_without_gt_and_bad_gt(tmp_path):
    scene = tmp_path / "Scene"
    (scene / "images").mkdir(parents=True)
    with pytest.raises(DataError, match="expected images"):
        eth.list_scene_images(scene)
    (scene / "images" / "a.jpg").write_bytes(b"")
    (scene / "images" / "b.jpg").write_bytes(b"")
    assert eth.read_gt_cameras(scene) is None
    gt = scene / "gt_cameras.txt"
    R = Rotation.from_euler("xyz", [5, 10, 15], degrees=True).as_matrix()
    gt.write_text(_rot_line("images/a.jpg", R) + "\n" + _rot_line("b.jpg", R * 1.1) + "\n")
    _raises_at(lambda: eth.read_gt_cameras(scene), gt, 2, r"expected R11..R33 to form a rotation")
    gt.write_text(_rot_line("images/a.jpg", R) + "\n" + _rot_line("c.jpg", R) + "\n")
    _raises_at(lambda: eth.read_gt_cameras(scene), gt, 2, r"expected image 'c.jpg'")
    gt.write_text(_rot_line("images/a.jpg", R) + "\n" + _rot_line("a.jpg", R) + "\n")
    _raises_at(lambda: eth.read_gt_cameras(scene), gt, 2, r"unique image names")
    gt.write_text(_rot_line("images/a.jpg", R) + "\n" + _rot_line("b.jpg", R) + "\n")
    cams = eth.read_gt_cameras(scene)
    assert sorted(cams) == ["a.jpg", "b.jpg"] and cams["a.jpg"].name == "a.jpg"


def test_the_one_pair_list_reader(tmp_path):
    """records.read_pair_list: every format's rules are options of one reader, each error names the file and line."""
    from posfeat.datasets.records import read_pair_list, write_pair_list

    path = tmp_path / "pairs.txt"
    write_pair_list(path, [("a.jpg", "b.jpg"), ("b.jpg", "c.jpg")])
    assert read_pair_list(path) == [("a.jpg", "b.jpg"), ("b.jpg", "c.jpg")]
    path.write_text("# comment\nimages/a.jpg b.jpg 0.9\n\nb.jpg a.jpg\n")
    with pytest.raises(DataError, match=r"pairs\.txt:2: expected 2 fields"):
        read_pair_list(path)
    names = {"a.jpg", "b.jpg"}
    assert read_pair_list(path, names, extra_fields=True, prefix="images/") == [("a.jpg", "b.jpg"), ("b.jpg", "a.jpg")]
    _raises_at(lambda: read_pair_list(path, names, extra_fields=True, prefix="images/", unique=True), path, 4, "once")
    _raises_at(lambda: read_pair_list(path, names, extra_fields=True, known_as="a scene image"), path, 2, "scene image")
    path.write_text("a.jpg a.jpg\n")
    _raises_at(lambda: read_pair_list(path), path, 1, "paired with itself")
    path.write_text("# nothing\n")
    assert read_pair_list(path) == []
    with pytest.raises(DataError, match="at least one pair"):
        read_pair_list(path, nonempty=True)
