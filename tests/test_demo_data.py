"""The demo world: layout, determinism, the ``demo_data`` stage, and an independent check of its ground truth.

The ground-truth check does not use the renderer: it matches OpenCV SIFT features between written images
(ratio test 0.8) and measures them against the geometry *as read back from the written files* with the
project's readers (``img_cam.txt``, the Aachen query lists / ``ground_truth_queries.txt`` / pycolmap
reference model, ``H_1_k``, ``gt_cameras.txt``). Correct matches land within a fraction of a pixel, so the
median over all ratio-test matches (outliers included) stays below 1 px only if the ground truth is right.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pycolmap
import pytest

from posfeat import demo
from posfeat.datasets.aachen import load_queries, load_reference, read_ground_truth
from posfeat.datasets.aachen import read_pairs as read_pairs_aachen
from posfeat.datasets.camera import qvec_to_rotmat
from posfeat.datasets.eth import list_scenes, read_gt_cameras
from posfeat.datasets.hpatches import list_sequences, load_sequence
from posfeat.datasets.megadepth import find_scenes, read_img_cam, read_pairs
from posfeat.geometry import (
    apply_homography_np,
    fundamental_from_poses,
    rotation_angle_deg,
    symmetric_epipolar_distance_np,
)
from posfeat.trainset.manifest import check_metadata_manifest

BANNED = {"0008", "0021", "0024", "0063", "1589"}
TINY = dict(
    megadepth_scenes=1,
    megadepth_images=3,
    hpatches_sequences=1,
    eth_scenes=1,
    eth_images=2,
    aachen_db_images=3,
    aachen_day_queries=1,
    aachen_night_queries=1,
    megadepth_size=(160, 120),
    hpatches_size=(160, 120),
    eth_size=(160, 120),
    aachen_size=(160, 120),
)
MAX_ROT_DEG = 45.0  # SIFT is not expected to match wider MegaDepth pairs (the demo has them on purpose)


# ------------------------------------------------------------------------------------------ helpers
_SIFT_CACHE: dict[Path, tuple[np.ndarray, np.ndarray]] = {}


def _sift(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV SIFT keypoints (pixels, centre of the top-left pixel = (0, 0)) and descriptors of an image."""
    if path not in _SIFT_CACHE:
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        assert img is not None, path
        kps, desc = cv2.SIFT_create().detectAndCompute(img, None)
        _SIFT_CACHE[path] = (np.array([k.pt for k in kps], np.float64).reshape(-1, 2), desc)
    return _SIFT_CACHE[path]


def _ratio_matches(path_a: Path, path_b: Path, ratio: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Matched points ``(x_a, x_b)`` of Lowe's ratio test between the SIFT features of two images."""
    (xa, da), (xb, db) = _sift(path_a), _sift(path_b)
    if da is None or db is None or len(da) < 2 or len(db) < 2:  # e.g. a very dark image: no features
        return np.zeros((0, 2)), np.zeros((0, 2))
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(da, db, k=2)
    m = np.array([[p[0].queryIdx, p[0].trainIdx] for p in knn if len(p) == 2 and p[0].distance < ratio * p[1].distance])
    m = m.reshape(-1, 2)
    return xa[m[:, 0]], xb[m[:, 1]]


def _generate(tmp_path: Path, name: str, seed: int, workers: int = 1) -> Path:
    root = tmp_path / name
    demo.generate_demo(root, seed=seed, workers=workers, **TINY)
    return root


# ------------------------------------------------------------------------------------------ layout
def test_layout(demo_root):
    """Every dataset is present in the real layouts, readable by the project's readers."""
    scenes = find_scenes(demo_root / "megadepth")
    ids = {s.key.split("/")[0] for s in scenes}
    assert len(ids) == 3 and ids & BANNED and ids - BANNED  # banned and kept ids, so the filter is exercised
    for s in scenes:
        cams = read_img_cam(s.path / "img_cam.txt")
        assert len(cams) == 6 and all((s.path / "images" / n).is_file() for n in cams)
        assert all((c.width, c.height) == (640, 480) for c in cams.values())
        pairs = read_pairs(s.path / "pairs.txt", known=cams)
        assert len(pairs) >= 3 and all(a < b for a, b in pairs)
        img = cv2.imread(str(s.path / "images" / next(iter(cams))))
        assert img.shape == (480, 640, 3)
    check_metadata_manifest(demo_root / "megadepth", demo_root / "megadepth_metadata.json")

    seqs = list_sequences(demo_root / "hpatches", exclude=())
    assert sum(n.startswith("i_") for n in seqs) == 2 and sum(n.startswith("v_") for n in seqs) == 2
    for n in seqs:
        seq = load_sequence(demo_root / "hpatches", n)
        assert len(seq.images) == 6
        if n.startswith("i_"):
            assert all(np.allclose(H, np.eye(3)) for H in seq.homographies.values())
        else:
            assert not any(np.allclose(H, np.eye(3), atol=1e-3) for H in seq.homographies.values())

    assert list_scenes(demo_root / "eth") == ["Plaza"]
    gt = read_gt_cameras(demo_root / "eth" / "Plaza")
    assert gt is not None and len(gt) == 6

    aachen = demo_root / "aachen"
    rec = load_reference(aachen)  # pycolmap.Reconstruction of the binary v1.1 model, images checked
    assert rec.num_images() == 8 and rec.num_points3D() > 0
    assert all(name.startswith("db/") for name in (im.name for im in rec.images.values()))
    queries = load_queries(aachen)
    assert [q.condition for q in queries] == ["day", "day", "night"]
    basenames = [Path(q.name).name for q in queries]
    assert len(set(basenames)) == len(basenames)
    truth = read_ground_truth(aachen / "queries" / "ground_truth_queries.txt")
    assert set(truth) == {q.name for q in queries}
    pairs = read_pairs_aachen(aachen / "others" / "image_pairs_to_match_v1_1.txt")
    assert {a for a, _ in pairs} >= {q.name for q in queries}
    assert (aachen / "3D-models" / "aachen_v_1_1" / "database_intrinsics_v1_1.txt").is_file()


def test_aachen_model_points_reproject(demo_root):
    """The reference model's 3D points project onto their recorded observations (COLMAP's pixel convention)."""
    rec = pycolmap.Reconstruction(str(demo_root / "aachen" / "3D-models" / "aachen_v_1_1"))
    errs = []
    for p in rec.points3D.values():
        for el in p.track.elements:
            im = rec.images[el.image_id]
            xy = rec.cameras[im.camera_id].img_from_cam(im.cam_from_world() * p.xyz)
            errs.append(np.linalg.norm(np.asarray(xy).ravel()[:2] - im.points2D[el.point2D_idx].xy))
    assert len(errs) > 50 and max(errs) < 1e-3


def test_texture_pools_disjoint():
    """Training scenes and evaluation scenes draw from disjoint photographs."""
    assert not set(demo.TRAIN_PHOTOS) & set(demo.EVAL_PHOTOS)
    train = {n for n, _ in demo.photo_pool("train")}
    evals = {n for n, _ in demo.photo_pool("eval")}
    assert train and evals and not train & evals
    world = demo.build_world(
        np.random.default_rng(0), demo.photo_pool("eval"), n_objects=(1, 1), n_buildings=(2, 2), texture_scale=0.2
    )
    assert world.sources and world.sources <= evals


# ----------------------------------------------------------------------------------- determinism
def test_determinism(tmp_path):
    """Same seed → the same bytes (in one process or two); another seed → another world; a non-empty
    output folder is refused."""
    a = _generate(tmp_path, "a", 3, workers=1)
    b = _generate(tmp_path, "b", 3, workers=2)
    assert demo.tree_digest(a) == demo.tree_digest(b)
    c = tmp_path / "c"
    demo.generate_demo(c, seed=4, workers=1, **{**TINY, "hpatches_sequences": 0, "eth_scenes": 0})
    # a different seed changes the MegaDepth scene (compare the same files)
    cam_a = (a / "megadepth" / "0008" / "dense0" / "aligned" / "img_cam.txt").read_bytes()
    cam_c = (c / "megadepth" / "0008" / "dense0" / "aligned" / "img_cam.txt").read_bytes()
    assert cam_a != cam_c
    with pytest.raises(FileExistsError):
        demo.generate_demo(a, seed=3, **TINY)
    with pytest.raises(ValueError, match="unknown demo parameters"):
        demo.generate_demo(tmp_path / "d", seed=3, megadepth_scene=2)


#: tree_digest of the TINY world, seed 3, with the pinned numpy / OpenCV / scikit-image of requirements.txt
TINY_SEED3_DIGEST = "45f6a1bccd15c04d5bb4587e49191bd30c8d754be5a6cf2feab9262958c5db20"
#: numpy's dispatch switch set as a CPU without AVX-512 (or with AVX-512 off) would leave it, for the parent
OTHER_CPU_ENV = {"NPY_DISABLE_CPU_FEATURES": "AVX512_ICL AVX512_SPR", "OMP_NUM_THREADS": "1"}


def test_world_is_the_committed_one(tmp_path):
    """The TINY world hashes to the committed digest, rendered here and in a process whose numpy dispatches
    differently (its parent's CPU switches do not reach the renderer: the workers run on the baseline paths)."""
    import json
    import os
    import subprocess
    import sys

    import cv2
    import skimage

    versions = f"numpy {np.__version__}, opencv {cv2.__version__}, scikit-image {skimage.__version__}"
    a = tmp_path / "here"
    summary = demo.generate_demo(a, seed=3, workers=2, **TINY)
    assert summary["code_paths"] == {"numpy_dispatch": [], "opencv_optimized": False}
    assert demo.tree_digest(a) == TINY_SEED3_DIGEST, f"a different demo world with {versions}"
    b = tmp_path / "other"
    code = (
        "import json, sys\nfrom posfeat import demo\n"
        "demo.generate_demo(sys.argv[1], seed=3, workers=1, **json.loads(sys.argv[2]))\n"
        "print(demo.tree_digest(sys.argv[1]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(b), json.dumps(TINY)],
        env={**os.environ, **OTHER_CPU_ENV},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-1] == TINY_SEED3_DIGEST


# ------------------------------------------------------------------------------------------ stage
def test_stage_main(tmp_path):
    """The stage renders into data/demo with its manifest, replaces an old world, and refuses unknown keys."""
    from stages.demo_data import main

    old = tmp_path / "data" / "demo"
    old.mkdir(parents=True)
    (old / "stale.txt").write_text("from an older run")
    params = {"demo": {"seed": 1, **{k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()}}}
    summary = main(params, base_dir=tmp_path, workers=1)
    out = tmp_path / "data" / "demo"
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in out.iterdir()) == [
        "aachen",
        "eth",
        "hpatches",
        "megadepth",
        "megadepth_metadata.json",
    ]
    manifest = check_metadata_manifest(out / "megadepth", out / "megadepth_metadata.json")
    assert summary["manifest_files"] == len(manifest["files"]) == 2
    assert summary["bytes"] > 0 and summary["seed"] == 1
    assert not [p for p in (tmp_path / "data").iterdir() if p.name != "demo"]  # no temporary left behind

    digest = demo.tree_digest(out)
    with pytest.raises(ValueError, match="unknown keys"):
        main({"demo": {"seed": 1, "megadepth_scens": 2}}, base_dir=tmp_path, workers=1)
    assert demo.tree_digest(out) == digest  # the failed run left the world untouched


# ------------------------------------------------------------------------- ground truth vs. SIFT
def test_megadepth_ground_truth_agrees_with_sift(demo_root):
    """Median symmetric epipolar error of SIFT ratio-test matches < 1 px (pairs up to 45° apart)."""
    errs, n_pairs, swapped = [], 0, []
    for scene in find_scenes(demo_root / "megadepth"):
        cams = read_img_cam(scene.path / "img_cam.txt")
        for a, b in read_pairs(scene.path / "pairs.txt", known=cams):
            ca, cb = cams[a], cams[b]
            if rotation_angle_deg(cb.R @ ca.R.T) > MAX_ROT_DEG:
                continue
            xa, xb = _ratio_matches(scene.path / "images" / a, scene.path / "images" / b)
            F = fundamental_from_poses(ca.K, ca.R, ca.t, cb.K, cb.R, cb.t)
            errs.append(symmetric_epipolar_distance_np(xa, xb, F))
            swapped.append(symmetric_epipolar_distance_np(xb, xa, F))  # wrong direction: must be far off
            n_pairs += 1
    e = np.concatenate(errs)
    assert n_pairs >= 10 and len(e) >= 1000
    assert np.median(e) < 1.0, np.median(e)
    assert np.median(np.concatenate(swapped)) > 5.0


def test_aachen_ground_truth_agrees_with_sift(demo_root):
    """Query–db pairs, day and night: the GT query poses and the reference model agree with SIFT (< 1 px)."""
    root = demo_root / "aachen"
    images = root / "images" / "images_upright"
    rec = pycolmap.Reconstruction(str(root / "3D-models" / "aachen_v_1_1"))
    db = {}
    for im in rec.images.values():
        P = im.cam_from_world().matrix()
        db[im.name] = (rec.cameras[im.camera_id].calibration_matrix(), P[:, :3], P[:, 3])
    queries = {q.name: q for q in load_queries(root)}
    truth = read_ground_truth(root / "queries" / "ground_truth_queries.txt")
    errs = {"day": [], "night": []}
    for a, b in read_pairs_aachen(root / "others" / "image_pairs_to_match_v1_1.txt"):
        if a not in queries:
            continue
        q = queries[a]
        Kq = q.to_pycolmap().calibration_matrix()
        F = fundamental_from_poses(Kq, qvec_to_rotmat(truth[a][0]), truth[a][1], *db[b])
        xa, xb = _ratio_matches(images / a, images / b)
        # COLMAP files put the centre of the top-left pixel at (0.5, 0.5): shift OpenCV's keypoints
        errs[q.condition].append(symmetric_epipolar_distance_np(xa + 0.5, xb + 0.5, F))
    for cond, e in errs.items():
        e = np.concatenate(e)
        assert len(e) >= 200, cond
        assert np.median(e) < 1.0, (cond, np.median(e))


def test_hpatches_ground_truth_agrees_with_sift(demo_root):
    """Median homography transfer error < 1 px for the v_* sequences (and the i_* identity)."""
    root = demo_root / "hpatches"
    for kind in ("v_", "i_"):
        errs, wrong = [], []
        for name in [n for n in list_sequences(root, exclude=()) if n.startswith(kind)]:
            seq = load_sequence(root, name)
            for k, (im1, imk, H) in enumerate(seq.pairs(), start=2):
                x1, xk = _ratio_matches(root / im1, root / imk)
                errs.append(np.linalg.norm(apply_homography_np(H, x1) - xk, axis=1))
                if kind == "v_":
                    other = seq.homographies[2 if k != 2 else 3]
                    wrong.append(np.linalg.norm(apply_homography_np(other, x1) - xk, axis=1))
        e = np.concatenate(errs)
        assert len(e) >= 500 and np.median(e) < 1.0, (kind, np.median(e))
        if wrong:
            assert np.median(np.concatenate(wrong)) > 5.0


def test_eth_ground_truth_agrees_with_sift(demo_root):
    """gt_cameras.txt of the ETH scene agrees with SIFT between neighbouring views (< 1 px)."""
    scene = demo_root / "eth" / "Plaza"
    cams = read_gt_cameras(scene)
    names = sorted(cams)
    errs = []
    for a, b in zip(names[:-1], names[1:]):
        ca, cb = cams[a], cams[b]
        xa, xb = _ratio_matches(scene / "images" / a, scene / "images" / b)
        errs.append(symmetric_epipolar_distance_np(xa, xb, fundamental_from_poses(ca.K, ca.R, ca.t, cb.K, cb.R, cb.t)))
    e = np.concatenate(errs)
    assert len(e) >= 200 and np.median(e) < 1.0, np.median(e)


def test_default_params_meet_the_demo_contract():
    """params.yaml's ``demo`` section is accepted by the stage and asks for the world the docs describe."""
    from stages.common import load_params
    from stages.demo_data import demo_config

    seed, sizes = demo_config(load_params()["demo"])
    cfg = {**demo.DEFAULT_SIZES, **sizes}
    assert cfg["megadepth_scenes"] >= 8 and cfg["megadepth_images"] >= 10 and tuple(cfg["megadepth_size"]) == (640, 480)
    assert BANNED & set(demo.megadepth_scene_ids(cfg["megadepth_scenes"]))
    assert cfg["hpatches_sequences"] >= 6 and cfg["eth_scenes"] == 2  # 6 + 6 since sweep 8 (8 + 8 before: 50 s more)
    assert cfg["aachen_day_queries"] > 0 and cfg["aachen_night_queries"] > 0
    with pytest.raises(ValueError, match="unknown keys"):
        demo_config({"seed": 0, "megadepth_scene": 3})
