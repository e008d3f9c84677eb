"""The training loop of both stages: data, loss reduction, learning, resume, stage modules (CPU, fast)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from posfeat.data.pairs import (PairDataset, StepBatchSampler, color_jitter, global_batch, scale_intrinsics,
                                view_augmentation, warp_image)
from posfeat.data.prepare import prepare_megadepth
from posfeat.io import DataError, write_json
from posfeat.training import (
    DistInfo,
    StageForward,
    TrainingInterrupted,
    build_loss,
    check_stage_config,
    compute_objective,
    sample_generator,
    train,
)

#: a narrow detector head so that stage 2 is cheap on a CPU
TINY_MODEL = {"encoder": "small", "det_conv1": 16, "det_img": 8, "det_mid": 8}
SIZE = (128, 96)
STEPS, LR = 60, 1e-2


def tiny_cfg(stage: str, **kw) -> dict:
    cfg = dict(image_size=list(SIZE), batch_size=2, epochs=1, steps_per_epoch=4, lr_decay_step=9, lr_gamma=0.1,
               log_every=1, vis_every=100, checkpoint_every=2, num_workers=0, color_jitter=[0.5, 0.5, 0.5, 0.1],
               vis_pairs=1, vis_keypoints=128)
    if stage == "desc":
        cfg.update(grid_size=16, line_step=50, window_size=0.1, temperature=60.0, win_cost_thr=0.1)
    else:
        cfg.update(grid_size=8, temperature=60.0, reward_thr=2.0, good_reward=1.0, bad_reward=-0.25, kp_penalty=1e-3)
    cfg.update(kw)
    return cfg


@pytest.fixture(scope="module")
def index(demo_root) -> dict:
    idx, _ = prepare_megadepth(demo_root / "megadepth", seed=0)
    assert idx["train"], "the demo world has no training pairs"
    return idx


def _batch(index, n=2, size=SIZE, step=0, seed=0):
    ds = PairDataset(index, "train", size, None, seed)
    items = [ds[it] for it in global_batch(len(ds), n, step, seed)]
    return {k: (torch.stack([s[k] for s in items]) if isinstance(items[0][k], torch.Tensor) else [s[k] for s in items])
            for k in items[0]}


# ------------------------------------------------------------------------------------------ data
def test_scale_intrinsics_follows_cv2_resize():
    K = np.array([[500.0, 0, 319.5], [0, 510.0, 239.5], [0, 0, 1]])
    X = np.array([[0.3, -0.2, 4.0], [-1.0, 0.5, 7.0]])
    sx, sy = 320 / 640, 256 / 480
    p = (K @ X.T).T
    p = p[:, :2] / p[:, 2:]
    expected = np.stack([(p[:, 0] + 0.5) * sx - 0.5, (p[:, 1] + 0.5) * sy - 0.5], 1)
    q = (scale_intrinsics(K, sx, sy) @ X.T).T
    np.testing.assert_allclose(q[:, :2] / q[:, 2:], expected, atol=1e-9)


def test_global_batch_is_split_exactly_over_ranks():
    full = global_batch(7, 4, 5, seed=3)
    assert full == global_batch(7, 4, 5, seed=3)  # pure function
    parts = [list(StepBatchSampler(7, 4, 3, num_steps=6, start_step=5, rank=r, world_size=2))[0] for r in (0, 1)]
    assert parts[0] + parts[1] == full
    # every pair once per pass
    seen = [i for s in range(7) for i, _ in global_batch(7, 1, s, seed=3)]
    assert sorted(seen) == list(range(7))
    with pytest.raises(ValueError):
        StepBatchSampler(7, 3, 0, 1, world_size=2)


def test_color_jitter_is_reproducible_and_bounded():
    img = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    a = color_jitter(img.clone(), (1, 1, 1, 0.4), torch.Generator().manual_seed(5))
    b = color_jitter(img.clone(), (1, 1, 1, 0.4), torch.Generator().manual_seed(5))
    c = color_jitter(img.clone(), (1, 1, 1, 0.4), torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    with pytest.raises(ValueError):
        color_jitter(img, (0, 0, 0, 0.7), torch.Generator())


def test_pair_dataset_geometry_and_bad_image(index, tmp_path):
    s = PairDataset(index, "train", SIZE, None, 0)[0]
    assert s["image1"].shape == (3, SIZE[1], SIZE[0]) and s["skipped"] == 0
    # F12 from the resized intrinsics: x2ᵀ F12 x1 = 0 for a projected 3D point
    meta1, meta2 = index["images"][s["name1"]], index["images"][s["name2"]]
    R1, t1 = np.array(meta1["R"]), np.array(meta1["t"])
    R2, t2 = np.array(meta2["R"]), np.array(meta2["t"])
    Xc1 = np.array([0.1, -0.05, 1.0]) * 5.0
    Xw = R1.T @ (Xc1 - t1)
    x1 = s["K1"].double().numpy() @ Xc1
    x2 = s["K2"].double().numpy() @ (R2 @ Xw + t2)
    x1, x2 = x1 / x1[2], x2 / x2[2]
    line = s["F12"].double().numpy() @ x1
    assert abs(x2 @ line) / np.linalg.norm(line[:2]) < 1e-2
    # a corrupt image is replaced by another pair, counted, never returned as None
    bad = json.loads(json.dumps(index))
    root = tmp_path / "root"
    for key in {k for p in bad["train"] for k in p}:
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).symlink_to(Path(index["root"]) / key)
    broken = bad["train"][0][0]
    (root / broken).unlink()
    (root / broken).write_bytes(b"not a jpeg")
    bad["root"] = str(root)
    ds = PairDataset(bad, "train", SIZE, None, 0)
    first = next(i for i, p in enumerate(ds.pairs) if broken in p)
    out = ds[first]
    assert out["skipped"] >= 1 and broken not in (out["name1"], out["name2"])
    with pytest.raises(DataError, match="lacks"):
        PairDataset({"root": ".", "images": {}}, "train")


def test_view_augmentation_is_an_exact_camera_change():
    """Rotating a camera about its axis and zooming: the warp maps each old projection onto the new one."""
    rng = np.random.default_rng(3)
    K = np.array([[300.0, 0, 130.2], [0, 310.0, 94.7], [0, 0, 1]])
    Hw, K2, Rz = view_augmentation(K, (256, 192), 25.0, 1.3)
    assert np.allclose(Rz @ Rz.T, np.eye(3)) and np.isclose(np.linalg.det(Rz), 1.0)
    X = rng.uniform([-2, -2, 3], [2, 2, 9], size=(50, 3))  # camera-frame points at many depths
    x_old = (K @ X.T).T
    x_new = (K2 @ (Rz @ X.T)).T
    x_warp = (Hw @ x_old.T).T
    assert np.allclose(x_warp[:, :2] / x_warp[:, 2:], x_new[:, :2] / x_new[:, 2:], atol=1e-8)
    # the image centre stays put under a pure zoom, and a zoom scales distances from it
    Hz, _, _ = view_augmentation(K, (256, 192), 0.0, 2.0)
    c = Hz @ np.array([127.5, 95.5, 1.0])
    assert np.allclose(c[:2] / c[2], [127.5, 95.5])
    # warp_image moves a bright dot where Hw says
    img = np.zeros((192, 256, 3), np.uint8)
    img[100, 140] = 255
    out = warp_image(img, Hw)
    p = Hw @ np.array([140.0, 100.0, 1.0])
    yy, xx = np.nonzero(out[:, :, 0] > 0)
    assert abs(np.average(xx, weights=out[yy, xx, 0]) - p[0] / p[2]) < 1.0
    assert abs(np.average(yy, weights=out[yy, xx, 0]) - p[1] / p[2]) < 1.0


def test_augmented_pairs_keep_the_epipolar_geometry(index):
    """With rotation and zoom on, x2ᵀ F12 x1 = 0 still holds for the returned K1, K2, R, t and F12."""
    ds = PairDataset(index, "train", SIZE, None, 0, rotation=40.0, scale=(0.6, 1.6))
    for i in range(3):
        s = ds[(i % len(ds), 77 + i)]
        K1, K2 = s["K1"].double().numpy(), s["K2"].double().numpy()
        R, t = s["R"].double().numpy(), s["t"].double().numpy()
        Xc1 = np.array([0.2, -0.1, 1.0]) * 4.0
        x1, x2 = K1 @ Xc1, K2 @ (R @ Xc1 + t)
        x1, x2 = x1 / x1[2], x2 / x2[2]
        line = s["F12"].double().numpy() @ x1
        assert abs(x2 @ line) / np.linalg.norm(line[:2]) < 1e-2
    plain = PairDataset(index, "train", SIZE, None, 0)[(0, 5)]
    rotated = PairDataset(index, "train", SIZE, None, 0, rotation=40.0)[(0, 5)]
    assert torch.equal(plain["image1"], rotated["image1"]) and not torch.equal(plain["image2"], rotated["image2"])
    with pytest.raises(ValueError, match="rotation"):
        PairDataset(index, "train", SIZE, None, 0, scale=(1.5, 1.0))


def test_stage_config_is_checked():
    with pytest.raises(ValueError, match="lacks"):
        check_stage_config("desc", {"image_size": [64, 64]})
    with pytest.raises(ValueError, match="multiples of 16"):
        check_stage_config("desc", tiny_cfg("desc", image_size=[100, 96]))
    with pytest.raises(ValueError, match="stage"):
        check_stage_config("detector", tiny_cfg("desc"))


# ----------------------------------------------------------------------------- loss reduction
def _outputs(stage, batch, seed=0):
    from posfeat.models import build_model

    torch.manual_seed(seed)
    model = build_model(TINY_MODEL)
    model.train()
    return StageForward(model, stage)(batch["image1"], batch["image2"])


def test_desc_objective_pools_over_the_batch_like_the_loss(index):
    """Per-sample draws, pooled reduction == Line2WindowLoss on the whole batch with the same draws."""
    from posfeat.losses.line2window import draw_jitter, sample_grid_points

    batch = _batch(index, 3)
    cfg = tiny_cfg("desc")
    loss_fn = build_loss("desc", cfg)
    out = _outputs("desc", batch)
    obj, loss, stats = compute_objective("desc", loss_fn, out, batch, SIZE, 7, 2, 0, 3, DistInfo())
    g1 = torch.autograd.grad(obj, out[0], retain_graph=True)[0]
    draws = [[], [], [], []]
    for i in range(3):
        gen = sample_generator(7, 2, i, torch.device("cpu"))
        p1 = sample_grid_points(1, SIZE[1], SIZE[0], 16, gen)
        p2 = sample_grid_points(1, SIZE[1], SIZE[0], 16, gen)
        draws[0].append(p1), draws[1].append(p2)
        draws[2].append(draw_jitter(1, p1.shape[1], 0.1, gen)), draws[3].append(draw_jitter(1, p2.shape[1], 0.1, gen))
    p1, p2, j1, j2 = (torch.cat(d) for d in draws)
    ref, ref_stats = loss_fn(out[0], out[1], batch["F12"], batch["F21"], SIZE, points1=p1, points2=p2, jitter1=j1, jitter2=j2)
    g2 = torch.autograd.grad(ref, out[0])[0]
    assert loss == pytest.approx(float(ref.detach()), rel=1e-5)
    assert stats["loss_w1"] == pytest.approx(float(ref_stats["loss_w1"]), rel=1e-5)
    assert stats["percent_w"] == pytest.approx(float(ref_stats["percent_w"]), rel=1e-6)
    assert torch.allclose(g1, g2, rtol=1e-4, atol=1e-7)
    assert 0 < loss < 0.2 * min(SIZE)


def test_kp_objective_is_the_sum_over_pairs(index):
    batch = _batch(index, 2)
    cfg = tiny_cfg("kp")
    loss_fn = build_loss("kp", cfg)
    out = _outputs("kp", batch)
    obj, loss, stats = compute_objective("kp", loss_fn, out, batch, SIZE, 1, 0, 0, 2, DistInfo())
    ref = 0.0
    for i in range(2):
        sl = slice(i, i + 1)
        r = loss_fn.terms(out[2][sl], out[3][sl], out[0][sl], out[1][sl], batch["F12"][sl], batch["F21"][sl],
                          image_size=SIZE, generator=sample_generator(1, 0, i, torch.device("cpu")))
        ref += float(r["loss"].detach())
    assert loss == pytest.approx(ref, rel=1e-5) and float(obj) == pytest.approx(ref, rel=1e-5)
    assert obj.requires_grad and "n_kps" in stats and "reinforce" in stats


# -------------------------------------------------------------------------------------- training
def _fixed_loss(model, index, cfg) -> float:
    """Stage-1 loss of a fixed batch with fixed draws (no update; BatchNorm as in training)."""
    batch = _batch(index, 4, step=99, seed=123)
    model.train()
    if cfg.get("freeze_bn"):
        model.eval()
    with torch.no_grad():
        out = StageForward(model, "desc")(batch["image1"], batch["image2"])
        _, loss, _ = compute_objective("desc", build_loss("desc", cfg), out, batch, SIZE, 5, 0, 0, 4, DistInfo())
    return loss


def test_short_training_lowers_the_epipolar_loss(index, tmp_path):
    """A few steps on one pair (tiny images) lower that pair's loss, measured with fixed random draws."""
    from posfeat.models import build_model, load_checkpoint

    one = {**index, "train": index["train"][:1]}
    cfg = tiny_cfg("desc", steps_per_epoch=STEPS, checkpoint_every=100, batch_size=2, color_jitter=None,
                   freeze_bn=True)
    torch.manual_seed(0)
    before = _fixed_loss(build_model(TINY_MODEL), one, cfg)
    m = train("desc", one, cfg, out_model=tmp_path / "desc.pt", ckpt_dir=tmp_path / "ckpt", model_config=TINY_MODEL,
              optimizer="sgd", lr=LR, seed=0, device="cpu", progress=False)
    model, extra = load_checkpoint(tmp_path / "desc.pt")
    after = _fixed_loss(model, one, cfg)
    assert extra["steps"] == STEPS and m["steps"] == STEPS
    assert after < 0.8 * before, (before, after)


def _state(path):
    from posfeat.models import load_checkpoint

    return load_checkpoint(path)[0].state_dict()


def test_resume_after_interruption_equals_uninterrupted(index, tmp_path):
    cfg = tiny_cfg("desc", steps_per_epoch=2, epochs=2, lr_decay_step=1, checkpoint_every=2, log_every=1)
    kw = dict(model_config=TINY_MODEL, optimizer="adam", lr=1e-3, seed=0, device="cpu", progress=False)
    a = tmp_path / "a"
    ma = train("desc", index, cfg, out_model=a / "m.pt", ckpt_dir=a / "ckpt", live_dir=a / "live", **kw)
    b = tmp_path / "b"
    with pytest.raises(TrainingInterrupted):
        train("desc", index, cfg, out_model=b / "m.pt", ckpt_dir=b / "ckpt", live_dir=b / "live", stop_after=3, **kw)
    assert not (b / "m.pt").exists() and (b / "ckpt" / "last.pt").is_file()
    mb = train("desc", index, cfg, out_model=b / "m.pt", ckpt_dir=b / "ckpt", live_dir=b / "live", **kw)
    sa, sb = _state(a / "m.pt"), _state(b / "m.pt")
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert ma["loss"] == mb["loss"] and ma["components"] == mb["components"]
    assert (a / "live/plots/metrics/loss.tsv").read_text() == (b / "live/plots/metrics/loss.tsv").read_text()
    # a checkpoint written under another configuration is ignored (training starts over)
    c = tmp_path / "c"
    train("desc", index, cfg, out_model=c / "m.pt", ckpt_dir=c / "ckpt", **{**kw, "lr": 5e-4})
    (c / "ckpt").rename(c / "other")
    (b / "ckpt").rename(c / "ckpt")
    mc = train("desc", index, cfg, out_model=c / "m2.pt", ckpt_dir=c / "ckpt", **{**kw, "lr": 5e-4})
    assert mc["loss"] == pytest.approx(json.loads(json.dumps(mc))["loss"])
    sc, sd = _state(c / "m.pt"), _state(c / "m2.pt")
    assert all(torch.equal(sc[k], sd[k]) for k in sc)


# ---------------------------------------------------------------------------------------- stages
def test_stage_mains_write_their_outputs(index, tmp_path):
    from posfeat.models import load_checkpoint
    from stages import train_desc, train_kp

    write_json(tmp_path / "data/prepared/megadepth.json", index)
    params = {
        "seed": 0, "device": "cpu", "optimizer": "sgd", "lr": {"adam": 1e-4, "sgd": 1e-3},
        "model": TINY_MODEL,
        "train_desc": tiny_cfg("desc", steps_per_epoch=2, vis_every=2),
        "train_kp": {**tiny_cfg("kp", steps_per_epoch=2, vis_every=2), "optimizer": "sgd", "lr": 1e-3},
    }
    m1 = train_desc.main(params, base_dir=tmp_path, progress=False)
    m2 = train_kp.main(params, base_dir=tmp_path, progress=False)
    for rel in ("models/desc.pt", "models/posfeat.pt", "models/ckpt_desc/last.pt", "models/ckpt_kp/last.pt",
                "metrics/train_desc.json", "metrics/train_kp.json",
                "dvclive/train_desc/plots/metrics/loss.tsv", "dvclive/train_kp/plots/metrics/loss.tsv"):
        assert (tmp_path / rel).is_file(), rel
    assert any((tmp_path / "dvclive/train_desc/plots/images").glob("*_matches.png"))
    assert any((tmp_path / "dvclive/train_kp/plots/images").glob("*_scores.png"))
    saved = json.loads((tmp_path / "metrics/train_desc.json").read_text())
    assert saved["steps"] == 2 and np.isfinite(saved["loss"]) and saved["seconds_per_iteration"] > 0
    assert {"loss_w1", "loss_w2", "percent_w"} <= set(saved["components"])
    assert m1["steps"] == m2["steps"] == 2 and {"reinforce", "kp_penalty", "n_kps"} <= set(m2["components"])
    # stage 2 trained the detector only
    d, _ = load_checkpoint(tmp_path / "models/desc.pt")
    p, _ = load_checkpoint(tmp_path / "models/posfeat.pt")
    sd, sp = d.state_dict(), p.state_dict()
    assert all(torch.equal(sd[k], sp[k]) for k in sd if k.startswith("backbone."))
    assert any(not torch.equal(sd[k], sp[k]) for k in sd if k.startswith("detector."))


def test_changed_training_code_does_not_resume_a_finished_run(index, tmp_path, monkeypatch):
    """DVC reruns train_* when their code changes: the old final checkpoint must not be 'resumed'."""
    import posfeat.training as T

    cfg = tiny_cfg("desc", steps_per_epoch=2, epochs=1, checkpoint_every=1, log_every=1)
    kw = dict(model_config=TINY_MODEL, optimizer="adam", lr=1e-3, seed=0, device="cpu", progress=False)
    first = train("desc", index, cfg, out_model=tmp_path / "m.pt", ckpt_dir=tmp_path / "ckpt", **kw)
    ckpt = tmp_path / "ckpt" / "last.pt"
    before = torch.load(ckpt, weights_only=True)["fingerprint"]
    # same code: the finished run is found and nothing is retrained (same fingerprint, same model)
    again = train("desc", index, cfg, out_model=tmp_path / "m.pt", ckpt_dir=tmp_path / "ckpt", **kw)
    assert again["loss"] == first["loss"]
    assert torch.load(ckpt, weights_only=True)["fingerprint"] == before
    # changed code: the checkpoint is ignored and the run starts over under a new fingerprint
    monkeypatch.setattr(T, "code_digest", lambda: "changed-code")
    train("desc", index, cfg, out_model=tmp_path / "m.pt", ckpt_dir=tmp_path / "ckpt", **kw)
    assert torch.load(ckpt, weights_only=True)["fingerprint"] != before
