"""HPatches MMA (D2-Net protocol): hand-computed cases, an independent recomputation, CLI, stage, real data."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import h5py
import numpy as np
import pandas as pd
import pytest

from posfeat.evaluation.hpatches import (
    evaluate_hpatches,
    match_errors,
    mma_score,
    pair_precision,
)
from posfeat.io import DataError, FeatureWriter, read_json

EYE = np.eye(3)


def _make_root(root: Path, seqs: dict[str, dict[int, np.ndarray]]) -> None:
    """Sequences with dummy image files (the evaluation never decodes them) and H_1_k files."""
    for name, homs in seqs.items():
        d = root / name
        d.mkdir(parents=True)
        for k in range(1, 7):
            (d / f"{k}.ppm").write_bytes(b"P6 1 1 255 \x00\x00\x00")
        for k in range(2, 7):
            np.savetxt(d / f"H_1_{k}", homs.get(k, EYE))


def _onehot(idx, dim: int = 8) -> np.ndarray:
    d = np.zeros((len(idx), dim), np.float32)
    d[np.arange(len(idx)), idx] = 1.0
    return d


K1 = np.array([[10.0, 10.0], [20.0, 30.0], [40.0, 15.0], [60.0, 50.0]], np.float32)


def _write_features(path: Path, plan: dict[str, dict[int, np.ndarray | None]]) -> None:
    """plan[seq][k] = per-keypoint offsets (4×2) added to H_1_k·K1 in image k, or None = no features."""
    with FeatureWriter(path) as w:
        for seq, ks in plan.items():
            w.add(f"{seq}/1.ppm", K1, np.ones(4), _onehot([0, 1, 2, 3]), (100, 80))
            for k in range(2, 7):
                off = ks.get(k)
                if off is None:
                    w.add(f"{seq}/{k}.ppm", np.zeros((0, 2)), np.zeros(0), np.zeros((0, 8)), (100, 80))
                    continue
                H = ks["H"].get(k, EYE) if "H" in ks else EYE
                pts = cv2.perspectiveTransform(K1[None].astype(np.float64), H)[0] + off
                # image k lists the points in reverse order plus a distractor that matches nothing
                kp = np.concatenate([pts[::-1], [[5.0, 5.0]]])
                desc = np.concatenate([_onehot([3, 2, 1, 0]), _onehot([7])])
                w.add(f"{seq}/{k}.ppm", kp, np.ones(5), desc, (100, 80))


def test_mma_hand_computed(tmp_path):
    shift = np.array([[1.0, 0, 5.0], [0, 1.0, -3.0], [0, 0, 1]])
    scale = np.array([[2.0, 0, 0], [0, 2.0, 0], [0, 0, 1]])
    v_homs = {2: shift, 3: scale, 4: shift, 5: scale, 6: shift}
    root = tmp_path / "hp"
    _make_root(root, {"i_a": {}, "v_b": v_homs, "v_talent": {}})  # v_talent: D2-Net excluded, no features
    (root / "notes").mkdir()  # not a sequence
    errs = np.array([[0.6, 0.0], [0.0, 1.5], [2.5, 0.0], [0.0, 20.0]])  # errors 0.6, 1.5, 2.5, 20 px
    exact = np.zeros((4, 2))
    plan = {
        "i_a": {2: exact, 3: errs, 4: errs, 5: exact, 6: None},  # pair (1,6): no features -> precision 0
        "v_b": {2: errs, 3: errs, 4: exact, 5: errs, 6: errs, "H": v_homs},
    }
    feats = tmp_path / "f.h5"
    _write_features(feats, plan)
    res = evaluate_hpatches(root, {"m": feats}, device="cpu", progress=False)["m"]

    p_exact = np.ones(15)
    p_errs = np.array([1 / 4] + [2 / 4] + [3 / 4] * 13)  # t=1: {0.6}; t=2: +1.5; t>=3: +2.5; 20 > 15
    p_none = np.zeros(15)
    i_mma = (2 * p_exact + 2 * p_errs + p_none) / 5
    v_mma = (1 * p_exact + 4 * p_errs) / 5
    all_mma = (i_mma * 5 + v_mma * 5) / 10
    for split, mma in (("illumination", i_mma), ("viewpoint", v_mma), ("overall", all_mma)):
        got = np.array([res[split][f"mma@{t}"] for t in range(1, 16)])
        np.testing.assert_allclose(got, mma, atol=1e-12, err_msg=split)
        w = np.arange(19, 9, -1) / 10.0  # 1.9 .. 1.0
        assert res[split]["mma_score"] == pytest.approx(float((w * mma[:10]).sum() / 14.5), abs=1e-12)
    # 12 images: 11 with 4 or 5 features, i_a/6 with none
    assert res["features_per_image"] == pytest.approx((2 * 4 + 9 * 5 + 0) / 12)
    assert res["matches_per_pair"] == pytest.approx((9 * 4 + 0) / 10)  # the distractor never matches

    # without the exclusion list v_talent is evaluated and has no features: a clear error naming it
    with pytest.raises(DataError, match="v_talent/1.ppm"):
        evaluate_hpatches(root, {"m": feats}, exclude=(), device="cpu", progress=False)


def test_helpers():
    H = np.array([[2.0, 0.1, 3.0], [0.0, 1.5, -2.0], [0.001, 0.0, 1.0]])
    kp_a = np.array([[10.0, 20.0], [30.0, 5.0]])
    proj = cv2.perspectiveTransform(kp_a[None], H)[0]
    kp_b = np.array([[0.0, 0.0], proj[1] + [3.0, 4.0], proj[0]])
    e = match_errors(kp_a, kp_b, np.array([[0, 2], [1, 1]]), H)
    np.testing.assert_allclose(e, [0.0, 5.0], atol=1e-9)
    assert match_errors(kp_a, kp_b, np.zeros((0, 2), np.int64), H).shape == (0,)
    np.testing.assert_allclose(pair_precision(np.array([0.5, 5.0]), 6), [0.5, 0.5, 0.5, 0.5, 1.0, 1.0])
    np.testing.assert_array_equal(pair_precision(np.zeros(0), 15), np.zeros(15))
    assert pair_precision(np.array([1.0]), 1)[0] == 1.0  # error <= t counts
    assert mma_score(np.ones(15)) == pytest.approx(1.0)
    assert mma_score(np.r_[np.ones(1), np.zeros(14)]) == pytest.approx(1.9 / 14.5)
    with pytest.raises(ValueError):
        mma_score(np.ones(9))


def _independent_mma(root: Path, feats: Path, thresholds=range(1, 16)) -> dict[str, np.ndarray]:
    """Recompute per-split MMA with h5py + NumPy arg-max MNN + cv2.perspectiveTransform."""
    per = {"i": [], "v": []}
    with h5py.File(feats, "r") as f:
        for seq in sorted(p.name for p in root.iterdir() if p.is_dir()):
            g1 = f[f"{seq}/1.ppm"]
            k1, d1 = g1["keypoints"][()], g1["descriptors"][()].T
            for k in range(2, 7):
                gk = f[f"{seq}/{k}.ppm"]
                kk, dk = gk["keypoints"][()], gk["descriptors"][()].T
                H = np.loadtxt(root / seq / f"H_1_{k}")
                if len(k1) == 0 or len(kk) == 0:
                    per[seq[0]].append(np.zeros(len(thresholds)))
                    continue
                sim = d1.astype(np.float64) @ dk.astype(np.float64).T
                nn12, nn21 = sim.argmax(1), sim.argmax(0)
                ids = np.nonzero(nn21[nn12] == np.arange(len(k1)))[0]
                if len(ids) == 0:
                    per[seq[0]].append(np.zeros(len(thresholds)))
                    continue
                proj = cv2.perspectiveTransform(k1[ids][None].astype(np.float64), H)[0]
                err = np.linalg.norm(proj - kk[nn12[ids]], axis=1)
                per[seq[0]].append(np.array([np.mean(err <= t) for t in thresholds]))
    return {
        "illumination": np.mean(per["i"], 0),
        "viewpoint": np.mean(per["v"], 0),
        "overall": np.mean(per["i"] + per["v"], 0),
    }


def test_stage_on_demo_agrees_with_independent_computation(demo_root, tmp_path):
    from stages.eval_hpatches import main as eval_main
    from stages.extract import main as extract_main
    from stages.report import main as report_main

    params = {
        "device": "cpu",
        "datasets": {"hpatches": str(demo_root / "hpatches")},
        "extract": {
            "methods": ["sift", "rootsift"],
            "hpatches": {"max_keypoints": 1024, "nms_radius": 1, "threshold": 0.9, "threshold_mode": "abs"},
        },
        "eval": {"hpatches": {"max_threshold": 15, "exclude": ["i_contruction", "v_talent"]}},
    }
    metrics = {}
    for m in params["extract"]["methods"]:
        extract_main("hpatches", m, params, base_dir=tmp_path)
        metrics[m] = eval_main(m, params, base_dir=tmp_path)
        assert read_json(tmp_path / "results" / "hpatches" / f"{m}.json") == json.loads(json.dumps(metrics[m]))
        headline = read_json(tmp_path / "metrics" / "hpatches" / f"{m}.json")
        assert headline == {k: round(metrics[m]["overall"][k], 4) for k in ("mma@1", "mma@3", "mma_score")}
    report_main(params, base_dir=tmp_path)
    curves = pd.read_csv(tmp_path / "plots" / "hpatches.csv")
    assert list(curves.columns) == ["method", "threshold", "overall", "illumination", "viewpoint"]
    for m, r in metrics.items():
        assert set(r) == {"overall", "illumination", "viewpoint", "features_per_image", "matches_per_pair"}
        assert set(r["overall"]) == {f"mma@{t}" for t in range(1, 16)} | {"mma_score"}
        ref = _independent_mma(demo_root / "hpatches", tmp_path / "features" / m / "hpatches.h5")
        for split, mma in ref.items():
            np.testing.assert_allclose([r[split][f"mma@{t}"] for t in range(1, 16)], mma, atol=1e-9)
        curve = curves[curves["method"] == m]
        assert curve["threshold"].tolist() == list(range(1, 16))
        np.testing.assert_allclose(curve["overall"], ref["overall"], atol=1e-6)
    # the demo's ground truth is exact: SIFT matches are mostly correct within 3 px
    assert metrics["sift"]["overall"]["mma@3"] > 0.5
    png = tmp_path / "plots" / "hpatches.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = cv2.imread(str(png))
    assert img.shape[1] > 2 * img.shape[0]  # three panels side by side


def test_cli_on_real_v_boat(shared_data, tmp_path, capsys):
    from posfeat.cli import main

    root = shared_data / "hpatches-oxford"
    if not (root / "v_boat").is_dir():
        pytest.skip("v_boat not in shared data")
    feats = tmp_path / "sift.h5"
    assert (
        main(["extract", "--method", "sift", "--images", str(root), "--out", str(feats), "--max-keypoints", "4096"])
        == 0
    )
    out = tmp_path / "m.json"
    assert (
        main(
            [
                "eval-hpatches",
                "--root",
                str(root),
                "--features",
                f"sift={feats}",
                "--out",
                str(out),
                "--plot",
                str(tmp_path / "p.png"),
                "--curves",
                str(tmp_path / "curves.csv"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    r = json.loads(out.read_text())["sift"]
    assert r["illumination"]["mma@3"] is None and r["illumination"]["mma_score"] is None  # no i_* sequence
    assert r["overall"] == r["viewpoint"]
    # v_boat (zoom + rotation) is hard for mutual-NN SIFT; a convention error would give ~0
    assert 0.25 < r["overall"]["mma@3"] < 0.8
    mma = [r["overall"][f"mma@{t}"] for t in range(1, 16)]
    assert all(a <= b for a, b in zip(mma, mma[1:]))
    assert (tmp_path / "p.png").is_file() and (tmp_path / "curves.csv").is_file()
    assert "| sift |" in capsys.readouterr().out


def test_mma_figure_is_print_ready(tmp_path):
    """PNG plus a reproducible SVG; methods spelled out, the dataset named, styles distinct without colour."""
    from posfeat.evaluation.plots import STYLES, plot_mma_curves

    curve = {f"mma@{t}": t / 10 for t in range(1, 11)}
    results = {
        m: {s: dict(curve) for s in ("overall", "illumination", "viewpoint")}
        for m in ("posfeat", "posfeat_sift", "sift")
    }
    out = tmp_path / "mma.png"
    plot_mma_curves(results, out, dataset="HPatches layout, demo world")
    svg = (tmp_path / "mma.svg").read_text()
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for text in ("PoSFeat descriptors on SIFT keypoints", "SIFT (OpenCV)", "HPatches layout, demo world"):
        assert text in svg
    first = (tmp_path / "mma.svg").read_bytes()
    plot_mma_curves(results, out, dataset="HPatches layout, demo world")
    assert (tmp_path / "mma.svg").read_bytes() == first
    assert len({(str(ls), mk) for ls, mk in STYLES}) == len(STYLES)
