"""The two training losses: stage-1 line-to-window and stage-2 REINFORCE (docs/method.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from loss_oracles import _reference_endpoints, line2window_reference, reinforce_reference

from posfeat.geometry import fundamental_from_poses
from posfeat.losses.epipolar_search import draw_jitter, epipolar_endpoints, sample_grid_points, window_offsets
from posfeat.losses.keypoint_sampling import KeypointSamples, sample_keypoints
from posfeat.losses.line2window import Line2WindowLoss, line2window_parts
from posfeat.losses.params import RewardSettings, WindowSearch
from posfeat.losses.reinforce import ReinforceLoss, reinforce_dense_reference, reinforce_terms

# pure translations along x / y with identical cameras: horizontal (a = 0) / vertical (b = 0) epipolar lines
F_HORIZONTAL = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
F_VERTICAL = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [-1.0, 0.0, 0.0]], dtype=torch.float64)


def _rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _general_F(batch: int, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    K = np.array([[0.8 * width, 0.0, width / 2], [0.0, 0.8 * width, height / 2], [0.0, 0.0, 1.0]])
    F12, F21 = [], []
    for b in range(batch):
        R2, t2 = _rot_y(0.05 + 0.05 * b), np.array([1.0, 0.15, 0.1 * b])
        F12.append(fundamental_from_poses(K, np.eye(3), np.zeros(3), K, R2, t2))
        F21.append(fundamental_from_poses(K, R2, t2, K, np.eye(3), np.zeros(3)))
    return torch.tensor(np.stack(F12)), torch.tensor(np.stack(F21))


def _draws(batch, height, width, window_size=0.1, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    p1 = sample_grid_points(batch, height, width, 16, g)
    p2 = sample_grid_points(batch, height, width, 16, g)
    j1 = draw_jitter(batch, p1.shape[1], window_size, g, dtype=dtype)
    j2 = draw_jitter(batch, p2.shape[1], window_size, g, dtype=dtype)
    return p1, p2, j1, j2


# ============================================================================ stage 1: line2window
def test_grid_points_one_per_cell():
    g = torch.Generator().manual_seed(3)
    pts = sample_grid_points(2, 50, 70, 16, g)  # remainders dropped: 3 × 4 cells
    assert pts.shape == (2, 12, 2)
    assert torch.equal(pts, pts.round())
    cell = (pts // 16).long()
    expect = torch.stack(torch.meshgrid(torch.arange(3), torch.arange(4), indexing="ij")[::-1], -1).reshape(12, 2)
    assert torch.equal(cell, expect.expand(2, 12, 2))
    assert not torch.equal(pts[0], pts[1])
    with pytest.raises(ValueError):
        sample_grid_points(1, 8, 8, 16)


def test_window_offsets_follow_gen_grid():
    off = window_offsets(0.1, 120, 160)  # the paper's 12 × 16 = 192 samples
    assert off.shape == (192, 2)
    assert torch.allclose(off[:16, 1], torch.full((16,), -0.1))  # y is the outer loop
    assert torch.allclose(off[:16, 0], torch.linspace(-0.1, 0.1, 16))
    assert abs(float(off[1, 0] - off[0, 0]) - 0.2 / 15) < 1e-7
    with pytest.raises(ValueError, match="empty window"):
        window_offsets(0.1, 8, 8)


def test_endpoints_match_reference_including_axis_parallel():
    torch.manual_seed(0)
    W, H = 64, 48
    lines = torch.randn(1, 200, 3, dtype=torch.float64)
    lines[..., 2] *= 40
    lines[0, :20, 0] = 0.0  # horizontal
    lines[0, 20:40, 1] = 0.0  # vertical
    lines[0, 40:45, :2] = 0.0  # degenerate
    lines[0, 45] = torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64)  # through a corner and out the bottom
    e1, e2, valid = epipolar_endpoints(lines, W, H)
    assert torch.isfinite(e1).all() and torch.isfinite(e2).all()
    for i in range(200):
        r1, r2, ok = _reference_endpoints(tuple(lines[0, i].tolist()), W, H)
        assert bool(valid[0, i]) == ok, i
        if ok:
            assert np.allclose(e1[0, i].numpy(), r1) and np.allclose(e2[0, i].numpy(), r2), i
            a, b, c = lines[0, i].tolist()  # endpoints lie on the line
            for e in (e1[0, i], e2[0, i]):
                assert abs(a * float(e[0]) + b * float(e[1]) + c) < 1e-6 * (abs(a) + abs(b) + abs(c))
    assert valid[0, :20].any() and valid[0, 20:40].any() and not valid[0, 40:45].any()


@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_line2window_equals_independent_reference(impl):
    torch.manual_seed(0)
    B, H, W, D = 2, 96, 128, 8
    F12, F21 = _general_F(B, W, H)
    f1 = torch.randn(B, D, H // 4, W // 4, dtype=torch.float64, requires_grad=True)
    f2 = torch.randn(B, D, H // 4, W // 4, dtype=torch.float64, requires_grad=True)
    p1, p2, j1, j2 = _draws(B, H, W)
    kw = dict(line_step=20, window_size=0.1, temperature=60.0, win_cost_thr=0.5)
    res = line2window_parts(f1, f2, F12, F21, (W, H), p1, p2, j1, j2, impl=impl, search=WindowSearch(**kw))
    g_fast = torch.autograd.grad(res["loss"], (f1, f2))
    ref, ref_stats = line2window_reference(f1, f2, F12, F21, (W, H), p1, p2, j1, j2, **kw)
    g_ref = torch.autograd.grad(ref, (f1, f2))
    assert 0.2 < float(res["stats"]["percent_w"]) < 1.0  # both masked and unmasked points
    assert torch.allclose(res["loss"], ref, rtol=1e-10, atol=1e-12)
    assert torch.allclose(res["stats"]["percent_w"].double(), ref_stats["percent_w"].double())
    for a, b in zip(g_fast, g_ref):
        assert a.abs().max() > 0
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-12)


def test_line2window_float32_fast_close_to_reference():
    torch.manual_seed(1)
    B, H, W, D = 1, 64, 96, 16
    F12, F21 = _general_F(B, W, H)
    f1 = torch.randn(B, D, H // 4, W // 4, requires_grad=True)
    f2 = torch.randn(B, D, H // 4, W // 4, requires_grad=True)
    p1, p2, j1, j2 = _draws(B, H, W, dtype=torch.float32)
    loss = Line2WindowLoss(line_step=30, win_cost_thr=0.5)(
        f1, f2, F12.float(), F21.float(), (W, H), points1=p1, points2=p2, jitter1=j1, jitter2=j2
    )[0]
    ref = line2window_reference(
        f1, f2, F12.float(), F21.float(), (W, H), p1, p2, j1, j2, line_step=30, win_cost_thr=0.5
    )[0]
    assert torch.allclose(loss, ref, rtol=1e-4)


def test_line2window_parts_pool_over_samples():
    """Per-sample parts give the batch loss as Σnum/Σden (what the trainer all-reduces)."""
    torch.manual_seed(2)
    B, H, W = 3, 64, 96
    F12, F21 = _general_F(B, W, H)
    f1 = torch.randn(B, 8, H // 4, W // 4, dtype=torch.float64)
    f2 = torch.randn(B, 8, H // 4, W // 4, dtype=torch.float64)
    p1, p2, j1, j2 = _draws(B, H, W)
    kw = dict(search=WindowSearch(line_step=20, win_cost_thr=0.5))
    full = line2window_parts(f1, f2, F12, F21, (W, H), p1, p2, j1, j2, **kw)
    parts = [
        line2window_parts(
            f1[i : i + 1],
            f2[i : i + 1],
            F12[i : i + 1],
            F21[i : i + 1],
            (W, H),
            p1[i : i + 1],
            p2[i : i + 1],
            j1[i : i + 1],
            j2[i : i + 1],
            **kw,
        )
        for i in range(B)
    ]
    pooled = sum(p["num1"] for p in parts) / sum(p["den1"] for p in parts) + sum(p["num2"] for p in parts) / sum(
        p["den2"] for p in parts
    )
    assert torch.allclose(pooled, full["loss"], rtol=1e-10)
    assert not torch.allclose(sum(p["loss"] for p in parts) / B, full["loss"], rtol=1e-6)  # not a mean of means


def test_line2window_generator_reproducible_and_draw_order():
    torch.manual_seed(3)
    B, H, W = 1, 64, 96
    F12, F21 = _general_F(B, W, H)
    f1, f2 = torch.randn(B, 8, 16, 24), torch.randn(B, 8, 16, 24)
    loss_fn = Line2WindowLoss(line_step=20, win_cost_thr=0.5)
    a = loss_fn.terms(f1, f2, F12.float(), F21.float(), (W, H), generator=torch.Generator().manual_seed(5))
    b = loss_fn.terms(f1, f2, F12.float(), F21.float(), (W, H), generator=torch.Generator().manual_seed(5))
    assert torch.equal(a["loss"], b["loss"]) and torch.equal(a["points1"], b["points1"])
    p1, p2, j1, j2 = _draws(B, H, W, seed=5, dtype=torch.float32)
    assert torch.equal(a["points1"], p1) and torch.equal(a["points2"], p2)
    search = WindowSearch(line_step=20, win_cost_thr=0.5)
    c = line2window_parts(f1, f2, F12.float(), F21.float(), (W, H), p1, p2, j1, j2, search=search)
    assert torch.equal(a["loss"], c["loss"])


@pytest.mark.parametrize("Fm", [F_HORIZONTAL, F_VERTICAL], ids=["horizontal", "vertical"])
def test_line2window_axis_parallel_lines_no_nan(Fm):
    torch.manual_seed(4)
    B, H, W = 2, 64, 96
    F12 = Fm.float().expand(B, 3, 3).clone()
    f1 = torch.randn(B, 16, H // 4, W // 4, requires_grad=True)
    f2 = torch.randn(B, 16, H // 4, W // 4, requires_grad=True)
    res = Line2WindowLoss(line_step=30, win_cost_thr=0.5).terms(
        f1, f2, F12, F12.transpose(1, 2), (W, H), generator=torch.Generator().manual_seed(0)
    )
    res["loss"].backward()
    assert torch.isfinite(res["loss"]) and res["loss"] > 0
    assert res["stats"]["percent_valid"] > 0.5
    assert torch.isfinite(f1.grad).all() and torch.isfinite(f2.grad).all() and f1.grad.abs().sum() > 0
    for v in res["stats"].values():
        assert torch.isfinite(torch.as_tensor(v, dtype=torch.float64)).all()


@pytest.mark.parametrize("case", ["degenerate_F", "empty_mask"])
def test_line2window_empty_mask_is_zero_not_nan(case):
    torch.manual_seed(5)
    B, H, W = 1, 64, 96
    F12, F21 = _general_F(B, W, H)
    thr = 0.1
    if case == "degenerate_F":  # every line degenerate → every point invalid
        F12, F21 = torch.zeros(B, 3, 3), torch.zeros(B, 3, 3)
    else:  # a threshold no point can meet
        thr = 1e-12
    f1 = torch.randn(B, 8, H // 4, W // 4, requires_grad=True)
    f2 = torch.randn(B, 8, H // 4, W // 4, requires_grad=True)
    res = Line2WindowLoss(line_step=20, win_cost_thr=thr).terms(
        f1, f2, F12.float(), F21.float(), (W, H), generator=torch.Generator().manual_seed(0)
    )
    res["loss"].backward()
    assert float(res["loss"].detach()) == 0.0 and float(res["stats"]["percent_w"]) == 0.0
    assert torch.equal(f1.grad, torch.zeros_like(f1)) and torch.equal(f2.grad, torch.zeros_like(f2))


def test_line2window_finds_true_correspondences():
    """Identical descriptor maps under a horizontal translation: the soft-argmax lands near the query's row."""
    torch.manual_seed(6)
    B, H, W = 1, 96, 128
    f = F.avg_pool2d(torch.randn(B, 32, H // 4 + 2, W // 4 + 2), 3, 1)  # mildly smooth
    F12 = F_HORIZONTAL.float().expand(B, 3, 3).clone()
    loss_fn = Line2WindowLoss(line_step=50, win_cost_thr=0.5)
    same = loss_fn.terms(f, f, F12, F12.transpose(1, 2), (W, H), generator=torch.Generator().manual_seed(0))
    other = loss_fn.terms(
        f, torch.randn_like(f), F12, F12.transpose(1, 2), (W, H), generator=torch.Generator().manual_seed(0)
    )
    # the line search finds the query itself: the soft-argmax lands on it along the line (x), within the
    # window's few y samples across it (int(0.1·Hf) = 2 rows here), and the window distribution is sharp
    err_same = (same["corloc1"][..., 0] - same["points1"][..., 0]).abs().median()
    err_other = (other["corloc1"][..., 0] - other["points1"][..., 0]).abs().median()
    assert err_same < 3.0 and err_other > 10.0
    assert same["stats"]["sigma_mean"] < 0.5 * other["stats"]["sigma_mean"]
    assert same["stats"]["loss"] < other["stats"]["loss"]


def test_line2window_bad_shapes():
    f = torch.randn(1, 8, 16, 24)
    loss_fn = Line2WindowLoss()
    with pytest.raises(ValueError, match="F12"):
        loss_fn(f, f, torch.eye(3), torch.eye(3)[None], (96, 64))
    with pytest.raises(ValueError, match="same shape"):
        loss_fn(f, torch.randn(1, 8, 16, 20), torch.eye(3)[None], torch.eye(3)[None], (96, 64))


# ============================================================================ stage 2: reinforce
def _reinforce_inputs(B=2, H=48, W=64, D=16, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    raw1 = torch.randn(B, 1, H, W, dtype=dtype, requires_grad=True)
    raw2 = torch.randn(B, 1, H, W, dtype=dtype, requires_grad=True)
    f1 = torch.randn(B, D, H // 4, W // 4)
    f2 = f1 + 0.3 * torch.randn_like(f1)  # correlated: a spread of match probabilities
    return raw1, raw2, f1, f2


def test_sample_keypoints_cells_logp_and_acceptance():
    torch.manual_seed(0)
    B, H, W, g = 2, 20, 28, 8  # remainders dropped: 2 × 3 cells
    score = torch.randn(B, 1, H, W, dtype=torch.float64, requires_grad=True)
    s = sample_keypoints(score, g, torch.Generator().manual_seed(1))
    assert s.xy.shape == (B, 6, 2) and s.logp.shape == (B, 6) and s.accepted.dtype == torch.bool
    cells = (s.xy // g).long()
    expect = torch.stack(torch.meshgrid(torch.arange(2), torch.arange(3), indexing="ij")[::-1], -1).reshape(6, 2)
    assert torch.equal(cells, expect.expand(B, 6, 2))
    x, y = s.xy[..., 0].long(), s.xy[..., 1].long()
    assert torch.equal(s.index, y * W + x)
    for b in range(B):  # logp against an independent per-cell computation
        for k in range(6):
            cy, cx = divmod(k, 3)
            cell = score[b, 0, cy * g : (cy + 1) * g, cx * g : (cx + 1) * g].reshape(-1)
            j = (y[b, k] - cy * g) * g + (x[b, k] - cx * g)
            sj = score[b, 0, y[b, k], x[b, k]]
            acc = torch.sigmoid(sj) if s.accepted[b, k] else 1 - torch.sigmoid(sj)
            expect_lp = torch.log_softmax(cell, 0)[j] + torch.log(acc)
            assert torch.allclose(s.logp[b, k], expect_lp)
    s.logp.sum().backward()
    assert score.grad.abs().sum() > 0
    again = sample_keypoints(score, g, torch.Generator().manual_seed(1))
    assert torch.equal(again.xy, s.xy) and torch.equal(again.accepted, s.accepted)


def test_sample_keypoints_distribution():
    """A peaked cell always proposes its peak; acceptance follows σ(s)."""
    B, H, W = 1, 64, 64
    score = torch.zeros(B, 1, H, W)
    score[0, 0, 3::8, 5::8] = 30.0  # one peak per cell, σ ≈ 1
    s = sample_keypoints(score, 8, torch.Generator().manual_seed(0))
    assert torch.equal(s.xy[0, :, 0] % 8, torch.full((64,), 5.0)) and torch.equal(
        s.xy[0, :, 1] % 8, torch.full((64,), 3.0)
    )
    assert s.accepted.all()
    flat = torch.zeros(1, 1, 256, 256)  # uniform proposals, acceptance probability σ(0) = 0.5
    s = sample_keypoints(flat, 8, torch.Generator().manual_seed(0))
    assert abs(float(s.accepted.float().mean()) - 0.5) < 0.1
    assert abs(float((s.xy % 8).mean()) - 3.5) < 0.3


@pytest.mark.parametrize("impl", ["fast", "dense"])
def test_reinforce_equals_independent_reference(impl):
    raw1, raw2, f1, f2 = _reinforce_inputs(B=1, H=32, W=48)
    F12 = F_HORIZONTAL.expand(1, 3, 3).clone()
    g = torch.Generator().manual_seed(0)
    s1 = sample_keypoints(F.softplus(raw1), 8, g)
    s2 = sample_keypoints(F.softplus(raw2), 8, g)
    kw = dict(temperature=60.0, reward_thr=2.0, good_reward=1.0, bad_reward=-0.25, kp_penalty=1e-3)
    terms = reinforce_terms if impl == "fast" else reinforce_dense_reference
    loss, _ = terms(s1, s2, f1, f2, F12, F12.transpose(1, 2), (48, 32), reward=RewardSettings(**kw))
    literal = reinforce_reference(s1, s2, f1, f2, F12, F12.transpose(1, 2), (48, 32), **kw)
    assert abs(float(loss.detach()) - literal) < 1e-4 * max(1.0, abs(literal))


@pytest.mark.parametrize("Fname", ["general", "horizontal"])
def test_reinforce_fast_equals_dense_values_and_gradients(Fname):
    B, H, W = 2, 48, 64
    raw1, raw2, f1, f2 = _reinforce_inputs(B, H, W)
    if Fname == "general":
        F12, F21 = _general_F(B, W, H)
    else:
        F12 = F_HORIZONTAL.expand(B, 3, 3).clone()
        F21 = F12.transpose(1, 2).clone()
    loss_fn = ReinforceLoss(block_size=7)  # several row blocks
    results = {}
    for impl in ("fast", "dense"):
        res = loss_fn.terms(
            F.softplus(raw1),
            F.softplus(raw2),
            f1,
            f2,
            F12,
            F21,
            (W, H),
            generator=torch.Generator().manual_seed(3),
            impl=impl,
        )
        grads = torch.autograd.grad(res["loss"], (raw1, raw2))
        results[impl] = (res, grads)
    (fast, gf), (dense, gd) = results["fast"], results["dense"]
    assert torch.equal(fast["samples1"].xy, dense["samples1"].xy)
    assert torch.isfinite(fast["loss"]) and 0 < fast["stats"]["n_good"] < fast["stats"]["n_pairs"]
    assert torch.allclose(fast["loss"], dense["loss"], rtol=1e-5, atol=1e-6)
    for a, b in zip(gf, gd):
        assert a.abs().max() > 0
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6 * float(b.abs().max()))
    for k, v in dense["stats"].items():
        if k == "score_mean":
            continue
        assert torch.allclose(fast["stats"][k].double(), v.double(), rtol=1e-5, atol=1e-6), k


def test_reinforce_gradient_is_weighted_logp():
    """∂loss/∂logp1_i = −W1_i + penalty·a1_i with W1_i = a1_i Σ_j a2_j r_ij p_ij (checked against the dense tensors)."""
    B, H, W = 1, 32, 48
    raw1, raw2, f1, f2 = _reinforce_inputs(B, H, W, seed=1)
    F12 = F_HORIZONTAL.expand(B, 3, 3).clone()
    g = torch.Generator().manual_seed(0)
    s1 = sample_keypoints(F.softplus(raw1), 8, g)
    s2 = sample_keypoints(F.softplus(raw2), 8, g)
    lp1 = s1.logp.detach().clone().requires_grad_()
    lp2 = s2.logp.detach().clone().requires_grad_()
    s1l = KeypointSamples(s1.xy, lp1, s1.accepted, s1.index)
    s2l = KeypointSamples(s2.xy, lp2, s2.accepted, s2.index)
    loss, _ = reinforce_terms(s1l, s2l, f1, f2, F12, F12.transpose(1, 2), (W, H), block_size=5)
    g1, g2 = torch.autograd.grad(loss, (lp1, lp2))
    loss_d, _ = reinforce_dense_reference(s1l, s2l, f1, f2, F12, F12.transpose(1, 2), (W, H))
    d1, d2 = torch.autograd.grad(loss_d, (lp1, lp2))
    assert torch.allclose(g1, d1, atol=1e-6) and torch.allclose(g2, d2, atol=1e-6)
    rejected = ~s1.accepted
    assert rejected.any() and torch.equal(g1[rejected], torch.zeros_like(g1[rejected]))


def test_reinforce_no_quadratic_tensor_in_graph():
    """The fast loss saves only O(n) tensors for backward; the dense one saves n×n."""
    B, H, W = 1, 128, 128  # n = 256 proposals per image: n² = 4·H·W
    raw1, raw2, f1, f2 = _reinforce_inputs(B, H, W, dtype=torch.float32)
    n = (H // 8) * (W // 8)
    sizes = {}
    for impl in ("fast", "dense"):
        saved = []

        def pack(t, saved=saved):
            saved.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            ReinforceLoss().terms(
                F.softplus(raw1),
                F.softplus(raw2),
                f1,
                f2,
                torch.eye(3)[None],
                torch.eye(3)[None],
                (W, H),
                generator=torch.Generator().manual_seed(0),
                impl=impl,
            )
        sizes[impl] = max(saved)
    assert sizes["fast"] <= H * W  # the score maps themselves
    assert sizes["dense"] >= B * n * n
    assert sizes["fast"] < n * n


def test_reinforce_nothing_accepted_is_finite_zero():
    B, H, W = 1, 32, 32
    score = torch.full((B, 1, H, W), -40.0, requires_grad=True)  # σ(−40) ≈ 0: nothing accepted
    f = torch.randn(B, 8, 8, 8)
    loss, stats = ReinforceLoss()(
        score, score, f, f, torch.eye(3)[None], torch.eye(3)[None], (W, H), generator=torch.Generator().manual_seed(0)
    )
    loss.backward()
    assert float(loss.detach()) == 0.0 and float(stats["n_kps"]) == 0.0 and float(stats["precision"]) == 0.0
    assert torch.isfinite(score.grad).all() and score.grad.abs().sum() == 0


def test_reinforce_rewards_correct_matches():
    """Confident correct matches get a positive weight (descent raises their logp), confident wrong ones a
    negative weight. Descriptors depend on x only, so a keypoint moved 8 px down keeps its descriptor."""
    torch.manual_seed(2)
    B, H, W = 1, 64, 128
    g = torch.randn(1, 16, 1, W // 4)
    fmap = g.expand(B, 16, H // 4, W // 4).contiguous()  # constant along y
    xs = torch.arange(30, dtype=torch.float32) * 4 + 2  # distinct descriptor columns
    xy1 = torch.stack([xs, torch.full_like(xs, 20.0)], -1)[None]
    xy2 = xy1.clone()
    left = xs < W / 2
    xy2[0, left, 1] += 8.0  # same descriptor, but 8 px off the (horizontal) epipolar line
    lp1 = torch.full((B, 30), -1.0, requires_grad=True)
    lp2 = torch.full((B, 30), -1.0, requires_grad=True)
    acc = torch.ones(B, 30, dtype=torch.bool)
    s1 = KeypointSamples(xy1, lp1, acc, torch.zeros(B, 30, dtype=torch.long))
    s2 = KeypointSamples(xy2, lp2, acc, torch.zeros(B, 30, dtype=torch.long))
    F12 = F_HORIZONTAL.float().expand(B, 3, 3).clone()
    loss, stats = reinforce_terms(
        s1, s2, fmap, fmap, F12, F12.transpose(1, 2), (W, H), reward=RewardSettings(kp_penalty=0.0)
    )
    g1, g2 = torch.autograd.grad(loss, (lp1, lp2))
    assert (g1[0, ~left] < -0.5).all() and (g2[0, ~left] < -0.5).all()  # ∂loss/∂logp = −W ≈ −p ≈ −1
    assert (g1[0, left] > 0.1).all() and (g2[0, left] > 0.1).all()  # ≈ +0.25 p
    assert abs(float(stats["precision"]) - float((~left).float().mean())) < 0.05


def test_reinforce_input_checks():
    s = torch.rand(1, 1, 32, 32)
    f = torch.randn(1, 8, 8, 8)
    loss_fn = ReinforceLoss()
    with pytest.raises(ValueError, match="image_size"):
        loss_fn(s, s, f, f, torch.eye(3)[None], torch.eye(3)[None], (64, 32))
    with pytest.raises(ValueError, match="F21"):
        loss_fn(s, s, f, f, torch.eye(3)[None], torch.eye(3), (32, 32))
    with pytest.raises(ValueError, match="impl"):
        loss_fn.terms(s, s, f, f, torch.eye(3)[None], torch.eye(3)[None], (32, 32), impl="slow")
    with pytest.raises(ValueError, match="grid_size"):
        sample_keypoints(torch.rand(1, 1, 4, 4), 8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_losses_on_cuda():
    B, H, W = 1, 48, 64
    raw1, raw2, f1, f2 = _reinforce_inputs(B, H, W, dtype=torch.float32)
    F12, F21 = _general_F(B, W, H)
    args = (
        F.softplus(raw1.cuda()),
        F.softplus(raw2.cuda()),
        f1.cuda(),
        f2.cuda(),
        F12.float().cuda(),
        F21.float().cuda(),
        (W, H),
    )
    fast = ReinforceLoss(block_size=16).terms(*args, generator=torch.Generator(device="cuda").manual_seed(0))
    dense = ReinforceLoss().terms(*args, generator=torch.Generator(device="cuda").manual_seed(0), impl="dense")
    assert fast["loss"].device.type == "cuda" and torch.isfinite(fast["loss"])
    assert torch.allclose(fast["loss"], dense["loss"], rtol=1e-4, atol=1e-5)
    l2w = Line2WindowLoss(line_step=20, win_cost_thr=0.5)
    p1, p2, j1, j2 = _draws(B, H, W, dtype=torch.float32)
    a = l2w(
        f1.cuda(),
        f2.cuda(),
        F12.float().cuda(),
        F21.float().cuda(),
        (W, H),
        points1=p1.cuda(),
        points2=p2.cuda(),
        jitter1=j1.cuda(),
        jitter2=j2.cuda(),
    )[0]
    b = l2w(f1, f2, F12.float(), F21.float(), (W, H), points1=p1, points2=p2, jitter1=j1, jitter2=j2)[0]
    assert torch.allclose(a.cpu(), b, rtol=1e-3)
