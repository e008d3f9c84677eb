"""The per-stage objectives and their reduction over the batch (posfeat.training.objectives)."""

from __future__ import annotations

import pytest
import torch
from training_setup import SIZE, TINY_MODEL, index, tiny_cfg  # noqa: F401 (a fixture)
from training_setup import batch_of as _batch

from posfeat.training import DistInfo, StageForward, build_loss, compute_objective, sample_generator


def _outputs(stage, batch, seed=0):
    from posfeat.models import build_model

    torch.manual_seed(seed)
    model = build_model(TINY_MODEL)
    model.train()
    return StageForward(model, stage)(batch["image1"], batch["image2"])


def test_desc_objective_pools_over_the_batch_like_the_loss(index):
    """Per-sample draws, pooled reduction == Line2WindowLoss on the whole batch with the same draws."""
    from posfeat.losses.epipolar_search import draw_jitter, sample_grid_points

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
    ref, ref_stats = loss_fn(
        out[0], out[1], batch["F12"], batch["F21"], SIZE, points1=p1, points2=p2, jitter1=j1, jitter2=j2
    )
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
        r = loss_fn.terms(
            out[2][sl],
            out[3][sl],
            out[0][sl],
            out[1][sl],
            batch["F12"][sl],
            batch["F21"][sl],
            image_size=SIZE,
            generator=sample_generator(1, 0, i, torch.device("cpu")),
        )
        ref += float(r["loss"].detach())
    assert loss == pytest.approx(ref, rel=1e-5) and float(obj) == pytest.approx(ref, rel=1e-5)
    assert obj.requires_grad and "n_kps" in stats and "reinforce" in stats
