"""Aachen Day-Night localization (posfeat.evaluation.aachen.evaluate) on the demo world's Aachen set with SIFT."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from posfeat.datasets.aachen import load_queries, load_reference, read_ground_truth
from posfeat.datasets.images import list_images, read_image
from posfeat.evaluation.aachen.evaluate import AachenConfig, evaluate_aachen
from posfeat.evaluation.aachen.localize import QueryResult
from posfeat.evaluation.aachen.results import localization_recall, read_submission, write_submission
from posfeat.evaluation.poses import pose_error
from posfeat.extraction import extract_sift
from posfeat.io import DataError, FeatureReader, FeatureWriter

#: fewer two-view RANSAC trials than COLMAP's 10000 keep the tests fast; the rest is the protocol.
FAST = AachenConfig(verification_max_trials=1000)
NIGHT_QUERY = "query/night/nexus5x/IMG_night_0002.jpg"


def _write_sift(root: Path, out: Path, empty: tuple[str, ...] = ()) -> Path:
    """SIFT features of every image under images/images_upright; ``empty`` images get no keypoints."""
    image_dir = root / "images" / "images_upright"
    with FeatureWriter(out) as w:
        for name in list_images(image_dir):
            f = extract_sift(read_image(image_dir / name), 2048)
            if name in empty:
                f = {**f, "keypoints": np.zeros((0, 2)), "scores": np.zeros(0), "descriptors": np.zeros((0, 128))}
            w.add(name, f["keypoints"], f["scores"], f["descriptors"], f["image_size"])
    return out


@pytest.fixture(scope="module")
def aachen(demo_root) -> Path:
    return demo_root / "aachen"


@pytest.fixture(scope="module")
def features(aachen, tmp_path_factory) -> Path:
    """SIFT features; the night query has none (it can match nothing)."""
    assert NIGHT_QUERY in [q.name for q in load_queries(aachen)]
    return _write_sift(aachen, tmp_path_factory.mktemp("aachen_feats") / "sift.h5", empty=(NIGHT_QUERY,))


@pytest.fixture(scope="module")
def run(aachen, features, tmp_path_factory):
    work = tmp_path_factory.mktemp("aachen_run")
    result = evaluate_aachen(aachen, features, work / "work", FAST, device="cpu", progress=False)
    write_submission(work / "sift.txt", result.queries)
    return result, work


# ------------------------------------------------------------------------------------ pose errors
def test_pose_error_against_scipy():
    rng = np.random.default_rng(0)
    R_gt = Rotation.random(random_state=1)
    c_gt = rng.normal(size=3)
    delta = Rotation.from_rotvec(np.deg2rad(3.0) * np.array([0.0, 0.6, 0.8]))
    R_est = delta * R_gt
    c_est = c_gt + np.array([0.3, 0.0, -0.4])  # 0.5 m away

    def qt(R, c):
        x, y, z, w = R.as_quat()
        return np.array([w, x, y, z]), -R.as_matrix() @ c

    dt, dr = pose_error(*qt(R_est, c_est), *qt(R_gt, c_gt))
    assert dt == pytest.approx(0.5, abs=1e-9)
    assert dr == pytest.approx(3.0, abs=1e-6)
    # the sign of a quaternion does not matter
    q, t = qt(R_gt, c_gt)
    assert pose_error(-q, t, q, t) == pytest.approx((0.0, 0.0), abs=1e-6)


def test_recall_thresholds_and_counts():
    ident = np.array([1.0, 0.0, 0.0, 0.0])
    rot = Rotation.from_euler("z", 4.0, degrees=True).as_quat()  # (x, y, z, w)
    q4 = np.array([rot[3], *rot[:3]])
    gt = {f"q/{i}.jpg": (ident, np.zeros(3)) for i in range(4)}
    results = [
        QueryResult("q/0.jpg", "day", True, ident, np.array([0.1, 0.0, 0.0])),  # all three
        QueryResult("q/1.jpg", "day", True, q4, np.zeros(3)),  # 4°: only 5°/10° thresholds
        QueryResult("q/2.jpg", "day", False, ident, np.array([0.0, 7.0, 0.0])),  # 7 m: none
        QueryResult("q/3.jpg", "night", True, ident, np.array([0.0, 0.0, 0.3])),  # 0.5 m and 5 m only
    ]
    m = localization_recall(results, gt)
    assert m["day"]["0.25m_2deg"] == pytest.approx(100 / 3, abs=1e-2)
    assert m["day"]["0.5m_5deg"] == pytest.approx(200 / 3, abs=1e-2)
    assert m["day"]["5m_10deg"] == pytest.approx(200 / 3, abs=1e-2)
    assert (m["day"]["localized"], m["day"]["queries"]) == (2, 3)
    assert m["night"] == {"0.25m_2deg": 0.0, "0.5m_5deg": 100.0, "5m_10deg": 100.0, "localized": 1, "queries": 1}
    assert (m["localized"], m["queries"]) == (3, 4)
    # without ground truth: counts only; a query without a ground-truth pose is an error
    assert localization_recall(results, None)["day"] == {"localized": 2, "queries": 3}
    with pytest.raises(DataError, match="q/3.jpg"):
        localization_recall(results, {k: v for k, v in gt.items() if k != "q/3.jpg"})


def test_config_validation():
    assert AachenConfig.from_dict({"min_matches": 20}).min_matches == 20
    with pytest.raises(ValueError, match="unknown"):
        AachenConfig.from_dict({"min_matchs": 20})
    with pytest.raises(ValueError):
        AachenConfig(query_matches="all")
    with pytest.raises(ValueError):
        AachenConfig(min_matches=2)


# ------------------------------------------------------------------------------------ the pipeline
def test_day_queries_localize(run, aachen):
    result, _ = run
    m = result.metrics
    assert m["day"]["queries"] == 2 and m["day"]["localized"] == 2
    assert m["day"]["0.25m_2deg"] == 100.0
    # independent check of the returned poses against the ground truth
    gt = read_ground_truth(aachen / "queries" / "ground_truth_queries.txt")
    for r in result.queries:
        if r.condition != "day":
            continue
        R = Rotation.from_quat([*r.qvec[1:], r.qvec[0]]).as_matrix()
        R_gt = Rotation.from_quat([*gt[r.name][0][1:], gt[r.name][0][0]]).as_matrix()
        c, c_gt = -R.T @ r.tvec, -R_gt.T @ gt[r.name][1]
        assert np.linalg.norm(c - c_gt) < 0.25
        assert Rotation.from_matrix(R @ R_gt.T).magnitude() < np.deg2rad(2.0)
        assert r.num_inliers >= FAST.min_inliers and r.num_correspondences >= FAST.min_matches
    assert result.stats["points3D"] > 50
    assert set(result.timings) >= {"matching_db", "matching_query", "verification", "triangulation", "localization"}


def test_zero_match_query_gets_fallback(run):
    result, _ = run
    night = [r for r in result.queries if r.condition == "night"]
    assert [r.name for r in night] == [NIGHT_QUERY]
    r = night[0]
    assert not r.localized and r.num_correspondences == 0
    np.testing.assert_array_equal(r.qvec, [1.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(r.tvec, [0.0, 0.0, 0.0])
    assert result.metrics["night"]["localized"] == 0 and result.metrics["night"]["0.25m_2deg"] == 0.0


def test_submission_format(run, aachen):
    result, work = run
    lines = (work / "sift.txt").read_text().splitlines()
    queries = load_queries(aachen)
    assert len(lines) == len(queries) == 3  # every query, day and night
    names = [Path(q.name).name for q in queries]
    assert [ln.split()[0] for ln in lines] == names  # basenames, in list order
    for ln in lines:
        fields = ln.split()
        assert len(fields) == 8 and "/" not in fields[0]
        q = np.array([float(v) for v in fields[1:5]])
        assert abs(np.linalg.norm(q) - 1.0) < 1e-8
    sub = read_submission(work / "sift.txt")
    night = sub[Path(NIGHT_QUERY).name]
    np.testing.assert_allclose(night[0], [1, 0, 0, 0])
    np.testing.assert_allclose(night[1], [0, 0, 0])
    for r in result.queries:
        np.testing.assert_allclose(sub[Path(r.name).name][1], r.tvec, rtol=1e-8, atol=1e-8)


def test_duplicate_basenames_rejected(tmp_path):
    ident, zero = np.array([1.0, 0, 0, 0]), np.zeros(3)
    rs = [
        QueryResult("query/day/a/x.jpg", "day", False, ident, zero),
        QueryResult("query/night/b/x.jpg", "night", False, ident, zero),
    ]
    with pytest.raises(DataError, match="basename"):
        write_submission(tmp_path / "s.txt", rs)
    assert not (tmp_path / "s.txt").exists()


# ------------------------------------------------------------------------------------ bad input
def test_missing_features_named(aachen, features, tmp_path):
    feats = tmp_path / "f.h5"
    with h5py.File(features, "r") as src, h5py.File(feats, "w") as dst:
        for name in FeatureReader(features).names():
            if name != "db/1003.jpg":
                src.copy(src[name], dst, name)
    with pytest.raises(DataError, match=r"f\.h5.*db/1003\.jpg"):
        evaluate_aachen(aachen, feats, tmp_path / "work", FAST, progress=False)


def test_unknown_image_in_pair_list(aachen, features, tmp_path):
    root = tmp_path / "aachen"
    shutil.copytree(aachen, root)
    pairs = root / "others" / "image_pairs_to_match_v1_1.txt"
    n = len(pairs.read_text().splitlines())
    with open(pairs, "a") as f:
        f.write("db/1000.jpg db/9999.jpg\n")
    with pytest.raises(DataError, match=rf"image_pairs_to_match_v1_1\.txt:{n + 1}.*db/9999\.jpg"):
        evaluate_aachen(root, features, tmp_path / "work", FAST, progress=False)


def test_foreign_work_folder_is_not_deleted(aachen, features, tmp_path):
    (tmp_path / "mine.txt").write_text("not an Aachen work folder")
    with pytest.raises(DataError, match="refusing"):
        evaluate_aachen(aachen, features, tmp_path, FAST, progress=False)
    assert (tmp_path / "mine.txt").read_text() == "not an Aachen work folder"


# ------------------------------------------------------------------------------------ v1.0 layout, CLI
def _to_v1_0(src: Path, dst: Path) -> None:
    """Rewrite the demo's v1.1 root with Aachen v1.0 file names (NVM model, v1.0 lists)."""
    shutil.copytree(src / "images", dst / "images")
    shutil.copytree(src / "queries", dst / "queries")
    (dst / "queries" / "night_time_queries_with_intrinsics_v1_1.txt").rename(
        dst / "queries" / "night_time_queries_with_intrinsics.txt"
    )
    (dst / "others").mkdir()
    shutil.copy(src / "others" / "image_pairs_to_match_v1_1.txt", dst / "others" / "image_pairs_to_match.txt")
    model = dst / "3D-models"
    model.mkdir()
    shutil.copy(src / "3D-models" / "aachen_v_1_1" / "database_intrinsics_v1_1.txt", model / "database_intrinsics.txt")
    rec = load_reference(src)
    lines = ["NVM_V3", "", str(rec.num_images())]
    for im in rec.images.values():
        x, y, z, w = im.cam_from_world().rotation.quat
        c = im.projection_center()
        lines.append(
            f"{im.name} {im.camera.focal_length:.6f} {w:.12f} {x:.12f} {y:.12f} {z:.12f} "
            f"{c[0]:.9f} {c[1]:.9f} {c[2]:.9f} 0 0"
        )
    (model / "aachen_cvpr2018_db.nvm").write_text("\n".join(lines) + "\n")


def test_stage_on_aachen_v1_0_layout(aachen, features, tmp_path):
    """The DVC stage on a root with Aachen v1.0 file names (NVM reference, v1.0 query and pair lists)."""
    from stages.common import load_params
    from stages.eval_aachen import main

    root = tmp_path / "aachen_v1"
    _to_v1_0(aachen, root)
    base = tmp_path / "study"
    (base / "features" / "sift").mkdir(parents=True)
    shutil.copy(features, base / "features" / "sift" / "aachen.h5")
    params = load_params()
    params["datasets"]["aachen"] = str(root)
    params["device"] = "cpu"
    params["eval"]["aachen"] = {**params["eval"]["aachen"], "verification_max_trials": FAST.verification_max_trials}
    metrics = main("sift", params, base_dir=base)
    headline = json.loads((base / "metrics" / "aachen" / "sift.json").read_text())
    assert headline == {
        "day": {"0.25m_2deg": metrics["day"]["0.25m_2deg"], "0.5m_5deg": 100.0, "5m_10deg": 100.0},
        "night": {"0.25m_2deg": 0.0, "0.5m_5deg": 0.0, "5m_10deg": 0.0},
    }
    assert metrics["day"]["0.25m_2deg"] == 100.0
    assert metrics["night"] == {
        "0.25m_2deg": 0.0,
        "0.5m_5deg": 0.0,
        "5m_10deg": 0.0,
        "localized": 0,
        "queries": 1,
    }
    lines = (base / "results" / "aachen" / "sift.txt").read_text().splitlines()
    assert sorted(ln.split()[0] for ln in lines) == sorted(Path(q.name).name for q in load_queries(root))
    details = json.loads((base / "results" / "aachen" / "sift.json").read_text())
    assert details["metrics"] == metrics
    assert len(details["queries"]) == 3 and details["stats"]["points3D"] > 50
    assert (base / "results" / "aachen" / "work" / "sift" / "database.db").is_file()


def test_cli_rerun_over_old_work_is_deterministic(run, aachen, features, tmp_path):
    """The CLI writes the submission and metrics; a leftover work folder does not disturb a rerun, and
    the same inputs (the settings as flags) give the same poses as the first run."""
    from posfeat.cli import main

    out = tmp_path / "out"
    (out / "sift_work" / "database.db").parent.mkdir(parents=True)
    (out / "sift_work" / "database.db").write_text("a stale, corrupt database of an earlier run")
    (out / "sift_work" / "stale.txt").write_text("from an earlier run")
    assert (
        main(
            [
                "eval-aachen",
                "--root",
                str(aachen),
                "--features",
                str(features),
                "--out",
                str(out),
                "--method-name",
                "sift",
                "--device",
                "cpu",
                "--verification-max-trials",
                str(FAST.verification_max_trials),
            ]
        )
        == 0
    )
    assert not (out / "sift_work" / "stale.txt").exists()
    result, work = run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == {"sift": result.metrics}
    assert set(metrics["sift"]["day"]) == {"0.25m_2deg", "0.5m_5deg", "5m_10deg", "localized", "queries"}
    details = json.loads((out / "sift.json").read_text())  # the stage's result file, from the same writer
    assert details["metrics"] == metrics["sift"] and set(details) == {"metrics", "timings_s", "stats", "queries"}
    assert sorted(q["name"] for q in details["queries"]) == sorted(q.name for q in result.queries)
    first, second = read_submission(work / "sift.txt"), read_submission(out / "sift.txt")
    assert first.keys() == second.keys()
    for k in first:
        np.testing.assert_allclose(first[k][0], second[k][0], atol=1e-6)
        np.testing.assert_allclose(first[k][1], second[k][1], atol=1e-6)
