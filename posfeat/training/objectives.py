"""The per-stage objectives and their reduction across ranks
(docs/method.md#stage-1-optimisation, #stage-2-optimisation).

The losses are computed per sample, each with its own generator seeded by ``(seed, step, position in the
global batch)`` (:func:`sample_generator`), and reduced so that loss and gradient equal those of one process
on the global batch: the stage-1 loss is a weighted mean pooled over the batch (``Σ m·s·c / Σ m·s`` per
direction), so numerators and the (constant) denominators are all-reduced; the stage-2 loss is a plain sum
over pairs. :func:`compute_objective` is the entry point.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from posfeat.training.distributed import DistInfo, all_reduce
from posfeat.trainset.batch_order import derive_seed


def _to_float(v) -> float | None:
    """A statistic as a float (a tensor: its mean); ``None`` for anything else (empty tensors, flags)."""
    if isinstance(v, torch.Tensor):
        return float(v.detach().float().mean()) if v.numel() else None
    if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool):
        return float(v)
    return None


def sample_generator(seed: int, step: int, position: int, device: torch.device) -> torch.Generator:
    """The loss's random source for the sample at ``position`` of global batch ``step``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, step, position, 0x1055))
    return gen


def _desc_draws(loss_fn, n: int, image_size, seed: int, step: int, first_position: int, device: torch.device):
    """Stage 1's random draws for ``n`` samples: grid points and window jitter of both images, per sample from
    its own generator, in the draw order of ``Line2WindowLoss.forward`` with B = 1 → ``(pts1, pts2, jit1, jit2)``."""
    from posfeat.losses.epipolar_search import draw_jitter, sample_grid_points

    width, height = image_size
    draws = [[], [], [], []]
    for i in range(n):
        gen = sample_generator(seed, step, first_position + i, device)
        p1 = sample_grid_points(1, height, width, loss_fn.grid_size, gen, device)
        p2 = sample_grid_points(1, height, width, loss_fn.grid_size, gen, device)
        draws[0].append(p1)
        draws[1].append(p2)
        draws[2].append(draw_jitter(1, p1.shape[1], loss_fn.search.window_size, gen, device))
        draws[3].append(draw_jitter(1, p2.shape[1], loss_fn.search.window_size, gen, device))
    return tuple(torch.cat(d, 0) for d in draws)


def _desc_objective(loss_fn, outputs, F12, F21, image_size, seed, step, first_position, info):
    """Stage 1: per-sample draws, then :meth:`Line2WindowLoss.terms` on the batch, pooled per direction.

    The loss's additive parts (``num``, ``den`` and the detached sums of
    :func:`~posfeat.losses.line2window.weighted_cost_parts`) are all-reduced, so each rank back-propagates
    ``num_r / den_global``: summed over ranks this is exactly the single-process loss.
    """
    fmap1, fmap2 = outputs[0].float(), outputs[1].float()
    device = fmap1.device
    pts1, pts2, jit1, jit2 = _desc_draws(loss_fn, fmap1.shape[0], image_size, seed, step, first_position, device)
    res = loss_fn.terms(fmap1, fmap2, F12, F21, image_size, points1=pts1, points2=pts2, jitter1=jit1, jitter2=jit2)
    local = []
    for k in (1, 2):
        sums = res[f"sums{k}"]
        local += [res[f"den{k}"], res[f"num{k}"].detach(), sums["masked"], sums["valid"], sums["points"],
                  sums["masked_cost"], sums["sigma"]]  # fmt: skip
    sums = torch.stack([torch.as_tensor(v, device=device, dtype=torch.float64) for v in local])
    sums = all_reduce(sums, info)
    (den1, num1, m1, v1, n1, c1, s1), (den2, num2, m2, v2, n2, c2, s2) = sums[:7], sums[7:]
    objective = (res["num1"] / den1.float() + res["num2"] / den2.float()) * info.world_size
    loss_w1, loss_w2 = float(num1 / den1), float(num2 / den2)
    stats = {
        "loss_w1": loss_w1,
        "loss_w2": loss_w2,
        "percent_w": float((m1 + m2) / (n1 + n2)),
        "percent_valid": float((v1 + v2) / (n1 + n2)),
        "cost_mean": float((c1 + c2) / (m1 + m2).clamp_min(1)),
        "sigma_mean": float((s1 + s2) / (n1 + n2)),
    }
    return objective, loss_w1 + loss_w2, stats


def _kp_objective(loss_fn, outputs, F12, F21, image_size, seed, step, first_position, global_batch_size, info):
    """Stage 2: per-sample REINFORCE losses summed over the global batch (no normalisation, as the original)."""
    device = outputs[0].device
    total = outputs[0].new_zeros((), dtype=torch.float32)
    names: list[str] = []
    local: list[float] = []
    for i in range(outputs[0].shape[0]):
        gen = sample_generator(seed, step, first_position + i, device)
        sl = slice(i, i + 1)
        res = loss_fn.terms(
            outputs[2][sl].float(),
            outputs[3][sl].float(),
            outputs[0][sl].float(),
            outputs[1][sl].float(),
            F12[sl],
            F21[sl],
            image_size=image_size,
            generator=gen,
        )
        total = total + res["loss"]
        vals = {k: _to_float(v) for k, v in res["stats"].items()}
        vals = {k: v for k, v in vals.items() if v is not None}
        if not names:
            names = sorted(vals)
        local.append([vals.get(k, float("nan")) for k in names])
    sums = torch.tensor(local, dtype=torch.float64, device=device).sum(0)
    sums = all_reduce(torch.cat([sums, total.detach().double().reshape(1)]), info)
    stats = {k: float(v) / global_batch_size for k, v in zip(names, sums[:-1].tolist())}
    stats.pop("loss", None)
    return total * info.world_size, float(sums[-1]), stats


def compute_objective(
    stage: str,
    loss_fn: nn.Module,
    outputs: tuple[torch.Tensor, ...],
    batch: dict,
    image_size: tuple[int, int],
    seed: int,
    step: int,
    first_position: int,
    global_batch_size: int,
    info: DistInfo,
) -> tuple[torch.Tensor, float, dict[str, float]]:
    """Loss of this rank's slice, reduced so that DDP's gradient averaging gives the global gradient.

    Each sample gets its own loss generator seeded by ``(seed, step, global position)``
    (:func:`sample_generator`), so the numbers do not depend on how the global batch is split.

    Returns:
        ``(objective, loss, stats)``: ``objective`` is what this rank back-propagates (already
        multiplied by the world size to undo DDP's gradient averaging); ``loss`` is the global loss value
        (identical on every rank); ``stats`` are global statistics (stage 1: pooled over the batch as the
        loss; stage 2: means over the pairs).
    """
    device = outputs[0].device
    F12 = batch["F12"].to(device=device, dtype=torch.float32)
    F21 = batch["F21"].to(device=device, dtype=torch.float32)
    if stage == "desc":
        return _desc_objective(loss_fn, outputs, F12, F21, image_size, seed, step, first_position, info)
    return _kp_objective(loss_fn, outputs, F12, F21, image_size, seed, step, first_position, global_batch_size, info)
