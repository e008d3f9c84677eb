"""``posfeat eval-real`` and :mod:`posfeat.evaluation.real`: the derived test sets (viewpoint homographies, warped
sequences, ETH-layout scenes), the settings resolution, a run on a small demo data folder, and the SIFT figures
recorded in ``benchmarks/results/real.json`` reproduced on the shared real data."""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from posfeat.cli import build_parser
from posfeat.cli import main as cli_main
from posfeat.datasets.camera import Camera
from posfeat.datasets.eth import read_gt_cameras
from posfeat.datasets.hpatches import list_sequences, load_sequence
from posfeat.datasets.images import read_image
from posfeat.datasets.megadepth import write_img_cam
from posfeat.demo.files import write_image
from posfeat.evaluation.real.data import viewpoint_homography, warped_sequences, write_eth_scene
from posfeat.evaluation.real.run import (
    PARTS,
    RealCheck,
    eth_pipeline_config,
    extraction_settings,
    hpatches_summary,
)
from posfeat.extraction.config import ExtractConfig
from posfeat.io import DataError, FeatureReader
from posfeat.settings import ParamError

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = {"encoder": "small", "det_conv1": 16, "det_img": 8, "det_mid": 8}
"""An untrained model small enough for CPU tests."""


# ----------------------------------------------------------------------------------------------- helpers
def _texture(rng: np.random.Generator, w: int = 160, h: int = 120) -> np.ndarray:
    """A smooth random RGB texture (noise blurred at 2 px) in 30..225, uint8."""
    noise = cv2.GaussianBlur(rng.normal(size=(h, w, 3)).astype(np.float32), (0, 0), 2.0)
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    return (30 + 195 * noise + 0.5).astype(np.uint8)


def _megadepth_scene(root: Path, n: int = 3, seed: int = 0) -> list[Camera]:
    """A MegaDepth-layout scene ``root/dense0/aligned/{images/000k.jpg, img_cam.txt}`` of ``n`` textures."""
    rng = np.random.default_rng(seed)
    aligned = root / "dense0" / "aligned"
    cams = []
    for i in range(n):
        name = f"{i:04d}.jpg"
        write_image(aligned / "images" / name, _texture(rng), 98)
        R = cv2.Rodrigues(rng.uniform(-0.2, 0.2, 3))[0]
        K = np.array([[150.0 + i, 0, 79.5], [0, 151.0, 59.5], [0, 0, 1]])
        cams.append(Camera(name=name, width=160, height=120, K=K, R=R, t=rng.uniform(-1, 1, 3)))
    write_img_cam(aligned / "img_cam.txt", [(c.name, c) for c in cams])
    return cams


def _bilinear(img: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """``img`` (H×W×C, float) at the points ``xy`` (N×2, pixel centres at integers), bilinearly."""
    x0, y0 = np.floor(xy[:, 0]).astype(int), np.floor(xy[:, 1]).astype(int)
    fx, fy = (xy[:, 0] - x0)[:, None], (xy[:, 1] - y0)[:, None]
    return (
        img[y0, x0] * (1 - fx) * (1 - fy)
        + img[y0, x0 + 1] * fx * (1 - fy)
        + img[y0 + 1, x0] * (1 - fx) * fy
        + img[y0 + 1, x0 + 1] * fx * fy
    )


def _photometric_residual(ref: np.ndarray, target: np.ndarray, H: np.ndarray) -> tuple[float, float, float]:
    """Map interior target pixels into ``ref`` through ``H^-1``, fit ``target = g · ref^gamma`` (values in [0, 1])
    in the log domain, and return ``(g, gamma, 95th percentile of |residual| in grey levels)``."""
    h, w = target.shape[:2]
    ys, xs = np.mgrid[6 : h - 6 : 3, 6 : w - 6 : 3]
    pts = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)
    back = np.concatenate([pts, np.ones((len(pts), 1))], 1) @ np.linalg.inv(H).T
    back = back[:, :2] / back[:, 2:]
    r = _bilinear(ref.astype(np.float64) / 255.0, back).ravel()
    t = target[pts[:, 1].astype(int), pts[:, 0].astype(int)].astype(np.float64).ravel() / 255.0
    keep = (r > 0.08) & (t > 0.08) & (t < 0.97)
    gamma, log_g = np.polyfit(np.log(r[keep]), np.log(t[keep]), 1)
    g = math.exp(log_g)
    res = np.abs(t[keep] - g * r[keep] ** gamma) * 255.0
    return g, gamma, float(np.percentile(res, 95))


# ------------------------------------------------------------------------------------------ data: homography
@pytest.mark.parametrize("size", [(160, 120), (768, 512)])
def test_viewpoint_homography_is_a_bounded_camera_turn_and_zoom(size):
    """H = Kz R K^-1 (normalised): recovered R is a rotation within the pan/tilt/roll bounds, the zoom within
    1-1.8, the target's corners lie inside the reference, and the draw is a function of the seed."""
    w, h = size
    f = float(max(w, h))
    K = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]])
    corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64).reshape(-1, 1, 2)
    draws = []
    for seed in range(20):
        H = viewpoint_homography(w, h, np.random.default_rng(seed))
        assert H[2, 2] == 1.0
        np.testing.assert_array_equal(H, viewpoint_homography(w, h, np.random.default_rng(seed)))
        back = cv2.perspectiveTransform(corners, np.linalg.inv(H)).reshape(-1, 2)
        assert (back >= -1e-9).all() and (back[:, 0] <= w - 1 + 1e-9).all() and (back[:, 1] <= h - 1 + 1e-9).all()
        # H K = s Kz R with Kz = [[f z, 0, cx], [0, f z, cy], [0, 0, 1]]: undo it row by row
        A = H @ K
        s = np.linalg.norm(A[2])
        r2 = A[2] / s
        fz = np.linalg.norm(A[0] / s - K[0, 2] * r2)
        Kz = np.array([[fz, 0, K[0, 2]], [0, fz, K[1, 2]], [0, 0, 1]])
        R = np.linalg.inv(Kz) @ A / s
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
        assert np.linalg.det(R) > 0 and 1.0 - 1e-9 <= fz / f <= 1.8 + 1e-9
        tilt, pan, roll = np.rad2deg(cv2.Rodrigues(R)[0].ravel())
        assert abs(tilt) <= 35 + 1e-6 and abs(pan) <= 35 + 1e-6 and abs(roll) <= 10 + 1e-6
        draws.append(H)
    assert len({H.tobytes() for H in draws}) == len(draws)


def test_viewpoint_homography_gives_up_when_nothing_fits():
    with pytest.raises(RuntimeError, match="no homography"):
        viewpoint_homography(100, 80, np.random.default_rng(0), zoom=(0.2, 0.3), tries=20)


# --------------------------------------------------------------------------------------- data: test sets
def test_warped_sequences_hold_homographies_onto_their_targets(tmp_path):
    data = tmp_path / "data"
    _megadepth_scene(data / "megadepth-strecha" / "scene_a", n=3)
    out = warped_sequences(data, tmp_path / "warped", per_scene=2, seed=0)
    assert list_sequences(out, ()) == ["v_scene_a_0000", "v_scene_a_0001"]
    for name in list_sequences(out, ()):
        seq = load_sequence(out, name)
        ref = read_image(out / seq.images[0])
        src = read_image(data / "megadepth-strecha/scene_a/dense0/aligned/images" / f"{name[-4:]}.jpg")
        np.testing.assert_array_equal(ref, src)  # the reference is the photograph, losslessly
        for k, H in seq.homographies.items():
            target = read_image(out / seq.images[k - 1])
            assert target.shape == ref.shape and H[2, 2] == pytest.approx(1.0)
            g, gamma, err = _photometric_residual(ref, target, H)
            assert 0.75 <= g <= 1.3 and 0.75 <= gamma <= 1.3, (name, k, g, gamma)
            assert err < 2.0, (name, k, err)  # grey levels: rounding and interpolation alone
            shifted = np.array([[1, 0, 1.0], [0, 1, 0], [0, 0, 1]]) @ H  # 1 px off: the texture no longer agrees
            assert _photometric_residual(ref, target, shifted)[2] > 3 * err
    # deterministic for the seed; reused when present; another seed draws other warps
    again = warped_sequences(data, tmp_path / "again", per_scene=2, seed=0)
    other = warped_sequences(data, tmp_path / "other", per_scene=2, seed=1)
    for f in sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()):
        assert (again / f).read_bytes() == (out / f).read_bytes()
    assert (other / "v_scene_a_0000/H_1_2").read_bytes() != (out / "v_scene_a_0000/H_1_2").read_bytes()
    (out / "marker").write_text("kept")
    assert warped_sequences(data, out) == out and (out / "marker").is_file()


def test_warped_sequences_need_strecha_scenes(tmp_path):
    with pytest.raises(DataError, match="megadepth-strecha"):
        warped_sequences(tmp_path, tmp_path / "warped")


def test_write_eth_scene_keeps_images_and_cameras(tmp_path):
    cams = _megadepth_scene(tmp_path / "md" / "scene_b", n=3, seed=4)
    scene = write_eth_scene(tmp_path / "md" / "scene_b", tmp_path / "eth" / "scene_b")
    got = read_gt_cameras(scene)
    assert sorted(got) == [c.name for c in cams]
    for c in cams:
        g = got[c.name]
        assert (g.width, g.height) == (c.width, c.height)
        np.testing.assert_allclose(g.K, c.K, atol=1e-5)
        np.testing.assert_allclose(g.R, c.R, atol=1e-6)
        np.testing.assert_allclose(g.t, c.t, atol=1e-6)
        src = tmp_path / "md/scene_b/dense0/aligned/images" / c.name
        assert (scene / "images" / c.name).read_bytes() == src.read_bytes()


# ---------------------------------------------------------------------------------------------- settings
def _study_params(**extra) -> dict:
    """``extract.hpatches``/``extract.eth``, ``eval.eth`` and ``seed`` of the repository's ``params.yaml``."""
    study = yaml.safe_load((ROOT / "params.yaml").read_text())
    params = {
        "seed": 3,
        "extract": {"hpatches": dict(study["extract"]["hpatches"]), "eth": dict(study["extract"]["eth"])},
        "eval": {"eth": dict(study["eval"]["eth"])},
    }
    params["extract"]["hpatches"].update(extra)
    return params


def test_settings_overrides_replace_the_study_values():
    params = _study_params()
    complete = {f.name for f in fields(ExtractConfig)} - {"sift_keypoints"}
    plain = extraction_settings(params)
    for name in ("hpatches", "eth"):
        assert set(plain[name]) == complete
        study = params["extract"][name]
        assert plain[name]["max_keypoints"] == study["max_keypoints"]
        assert plain[name]["scales"] == tuple(float(s) for s in study["scales"])
        assert plain[name]["pyramid"] is study["pyramid"]
    s = extraction_settings(
        params,
        scales=[1.0, 0.5],
        pyramid="off",
        rotations=[0.0, 90.0],
        eth_scales=[0.8],
        eth_pyramid="on",
        pyramid_sift_size=3.5,
    )
    assert s["hpatches"]["scales"] == (1.0, 0.5) and s["hpatches"]["pyramid"] is False
    assert s["hpatches"]["rotations"] == (0.0, 90.0) and s["hpatches"]["pyramid_sift_size"] == 3.5
    assert s["eth"]["scales"] == (0.8,) and s["eth"]["pyramid"] is True and s["eth"]["pyramid_sift_size"] == 3.5
    assert s["eth"]["rotations"] == plain["eth"]["rotations"]  # --rotations is HPatches' alone
    for name in ("hpatches", "eth"):
        assert "sift_keypoints" not in s[name]
        rest = {k for k in complete if k not in ("scales", "pyramid", "rotations", "pyramid_sift_size")}
        assert {k: s[name][k] for k in rest} == {k: plain[name][k] for k in rest}
    assert extraction_settings(params, pyramid="on")["hpatches"]["pyramid"] is True


def test_settings_errors_name_the_file_and_the_setting():
    with pytest.raises(ParamError, match=r"my\.yaml: extract\.hpatches"):
        extraction_settings({**_study_params(), "extract": {"hpatches": [1, 2], "eth": {}}}, "my.yaml")
    with pytest.raises(ParamError, match=r"my\.yaml: extract\.hpatches.*\['nms'\]"):
        extraction_settings(_study_params(nms=1), "my.yaml")
    with pytest.raises(ParamError, match=r"my\.yaml: extract\.eth is missing"):
        extraction_settings({"extract": {"hpatches": {}}}, "my.yaml")
    with pytest.raises(ParamError, match=r"my\.yaml: extract\.hpatches.*scales"):
        extraction_settings(_study_params(), "my.yaml", scales=[9.0])
    with pytest.raises(ParamError, match="pyramid"):
        extraction_settings(_study_params(), pyramid="maybe")
    cfg = eth_pipeline_config(_study_params())
    assert cfg.seed == 3 and cfg.mutual is True
    with pytest.raises(ParamError, match=r"my\.yaml: eval\.eth"):
        eth_pipeline_config({"seed": 0, "eval": {"eth": {"mutal": True}}}, "my.yaml")


# --------------------------------------------------------------------------------------------- command line
def test_cli_flags_and_default_work_folder():
    from posfeat.cli.eval_real import work_folder

    a = build_parser().parse_args(["eval-real", "--weights", "w.pt", "--data", "d", "--out", "r/real.json"])
    assert (a.params, a.work, a.only, a.no_eth, a.module) == (
        "params.yaml",
        None,
        list(PARTS),
        False,
        "posfeat.cli.eval_real",
    )
    assert work_folder(a.out) == Path("r/real_work")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval-real", "--data", "d", "--out", "o.json"])  # --weights is required


def test_cli_missing_data_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_study_params()))
    argv = ["eval-real", "--weights", str(tmp_path / "none.pt"), "--data", str(tmp_path / "nowhere")]
    assert cli_main([*argv, "--out", str(tmp_path / "r.json"), "--params", str(tmp_path / "params.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("posfeat: error:") and "nowhere: real data folder not found" in err
    assert "megadepth-strecha" in err and not (tmp_path / "r.json").exists()


def _fundamental(ca: Camera, cb: Camera) -> np.ndarray:
    """F with ``x_b^T F x_a = 0`` for world→camera poses."""
    R = cb.R @ ca.R.T
    t = cb.t - R @ ca.t
    tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    return np.linalg.inv(cb.K).T @ tx @ R @ np.linalg.inv(ca.K)


def _sift_epipolar_precision(features: Path, cams: dict, threshold: float = 3.0) -> float:
    """Mean over consecutive pairs of the fraction of mutual nearest neighbours (float64 similarities) whose mean
    point-to-epipolar-line distance is within ``threshold`` px."""
    names = sorted(cams)
    fractions = []
    with FeatureReader(features) as r:
        for a, b in zip(names[:-1], names[1:]):
            fa, fb = r[a], r[b]
            sim = fa["descriptors"].astype(np.float64) @ fb["descriptors"].astype(np.float64).T
            ab, ba = sim.argmax(1), sim.argmax(0)
            i = np.flatnonzero(ba[ab] == np.arange(len(ab)))
            xa = np.c_[fa["keypoints"][i], np.ones(len(i))]
            xb = np.c_[fb["keypoints"][ab[i]], np.ones(len(i))]
            F = _fundamental(cams[a], cams[b])
            la, lb = xb @ F, xa @ F.T
            num = np.abs((xb * lb).sum(1))
            d = 0.5 * (num / np.hypot(la[:, 0], la[:, 1]) + num / np.hypot(lb[:, 0], lb[:, 1]))
            fractions.append((d <= threshold).mean() if len(d) else 0.0)
    return float(np.mean(fractions))


def test_eval_real_command_on_the_demo_world(demo_root, tmp_path, capsys):
    """``eval-real --only hpatches epipolar`` on one demo ``v_*`` sequence and one demo MegaDepth scene with an
    untrained checkpoint: every method scored, the settings echo the overrides, SIFT's epipolar precision agrees
    with a plain NumPy computation from the work folder's features."""
    import torch

    from posfeat.datasets.megadepth import read_img_cam
    from posfeat.models import build_model, save_checkpoint

    seq = next(s for s in list_sequences(demo_root / "hpatches", ()) if s.startswith("v_"))
    scene = sorted(p for p in (demo_root / "megadepth").iterdir() if (p / "dense0" / "aligned").is_dir())[0]
    data = tmp_path / "data"
    (data / "hpatches-oxford").mkdir(parents=True)
    (data / "megadepth-strecha").mkdir()
    (data / "hpatches-oxford" / seq).symlink_to(demo_root / "hpatches" / seq)
    (data / "megadepth-strecha" / scene.name).symlink_to(scene)
    params = _study_params(max_keypoints=512)
    params["extract"]["eth"]["max_keypoints"] = 512
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    torch.manual_seed(0)
    weights = tmp_path / "posfeat.pt"
    save_checkpoint(weights, build_model(TINY_MODEL))
    out = tmp_path / "results" / "real.json"
    argv = ["eval-real", "--weights", str(weights), "--data", str(data), "--out", str(out)]
    argv += ["--params", str(tmp_path / "params.yaml"), "--only", "hpatches", "epipolar"]
    argv += ["--scales", "1", "0.5", "--pyramid", "off", "--rotations", "0", "--pyramid-sift-size", "3"]
    assert cli_main(argv) == 0
    res = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == res
    assert list(res) == ["weights", "settings", "hpatches", "epipolar", "seconds"]
    assert res["weights"] == str(weights) and res["seconds"] >= 0
    hp = res["settings"]["hpatches"]
    assert (hp["scales"], hp["pyramid"], hp["rotations"], hp["pyramid_sift_size"]) == ([1.0, 0.5], False, [0.0], 3.0)
    assert hp["max_keypoints"] == 512 and "sift_keypoints" not in hp
    eth = res["settings"]["eth"]
    assert eth["scales"] == params["extract"]["eth"]["scales"] and eth["pyramid_sift_size"] == 3.0
    for method in ("posfeat", "posfeat_sift", "sift"):
        m = res["hpatches"][method]
        assert all(math.isfinite(m[k]) and 0 <= m[k] <= 1 for k in ("mma@1", "mma@3", "mma@10", "mma_score"))
        assert m["mma@1"] <= m["mma@3"] <= m["mma@10"] and len(m["mma@3_per_pair"]) == 5
        e = res["epipolar"][method][scene.name]
        assert set(e) == {"precision@1", "precision@3", "matches_per_pair"}
        assert 0 <= e["precision@1"] <= e["precision@3"] <= 1 and e["matches_per_pair"] > 0
    assert res["hpatches"]["sift"]["mma@3"] > 0.3  # SIFT on a rendered viewpoint sequence
    work = tmp_path / "results" / "real_work"  # the default: beside --out
    cams = read_img_cam(scene / "dense0" / "aligned" / "img_cam.txt")
    want = _sift_epipolar_precision(work / f"epi_{scene.name}_day_sift.h5", cams)
    assert res["epipolar"]["sift"][scene.name]["precision@3"] == pytest.approx(want, abs=0.01)
    with FeatureReader(work / "hp_posfeat.h5") as r:
        assert max(len(r[n]["keypoints"]) for n in r.names()) <= 512


# ------------------------------------------------------------------------------------------- the real data
def test_sift_figures_of_the_recorded_real_results(shared_data, tmp_path):
    """SIFT on ``v_boat`` and on the warped Strecha sequences, with the recorded settings, gives the MMA of
    ``benchmarks/results/real.json`` (the warped sequences drawn with the same seeds)."""
    recorded_path = ROOT / "benchmarks" / "results" / "real.json"
    if not recorded_path.is_file():
        pytest.skip(f"{recorded_path} not present")
    recorded = json.loads(recorded_path.read_text())
    check = RealCheck(None, tmp_path, recorded["settings"]["hpatches"], recorded["settings"]["eth"])
    roots = {"hpatches": shared_data / "hpatches-oxford", "warped": warped_sequences(shared_data, tmp_path / "w")}
    for part, root in roots.items():
        sequences = list_sequences(root, ())
        names = [im for s in sequences for im in load_sequence(root, s).images]
        features = check.sift_features(root, names, tmp_path / f"{part}_sift.h5", check.hpatches_cfg)
        got, want = hpatches_summary(root, features, sequences), recorded[part]["sift"]
        for key in ("mma@1", "mma@3", "mma@10", "mma_score"):
            assert got[key] == pytest.approx(want[key], abs=0.005), (part, key)
        np.testing.assert_allclose(got["mma@3_per_pair"], want["mma@3_per_pair"], atol=0.02, err_msg=part)
