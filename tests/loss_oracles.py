"""Independent implementations of both losses, the oracles of tests/test_losses.py (not a test module).

:func:`line2window_reference` follows the original stage-1 code step by step; :func:`reinforce_reference`
evaluates the stage-2 objective element by element. Neither shares computation with :mod:`posfeat.losses`
(beyond the one feature-sampling convention): slow, for small inputs only. The library keeps the original's
dense stage-2 formulation as ``ReinforceLoss(impl="dense")``, which the benchmarks measure; both of its
formulations are checked against :func:`reinforce_reference`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _reference_endpoints(line: tuple[float, float, float], width: int, height: int) -> tuple[tuple, tuple, bool]:
    """One line, plain Python: intersections with ``x=0, x=W−1, y=H−1, y=0`` (this order), kept when
    inside the image; valid iff exactly two; otherwise the ``x=0`` / ``x=W−1`` intersections (finite)."""
    a, b, c = line
    w1, h1 = width - 1.0, height - 1.0
    cands = [
        (0.0, -c / b) if b != 0 else None,
        (w1, -(a * w1 + c) / b) if b != 0 else None,
        (-(b * h1 + c) / a, h1) if a != 0 else None,
        (-c / a, 0.0) if a != 0 else None,
    ]
    inside = [p for p in cands if p is not None and 0.0 <= p[0] <= w1 and 0.0 <= p[1] <= h1]
    if len(inside) == 2:
        return inside[0], inside[1], True
    clamp = lambda v: min(max(v, -1e6), 1e6)  # noqa: E731
    left = (0.0, clamp(-c / b)) if b != 0 else (0.0, 0.0)
    right = (w1, clamp(-(a * w1 + c) / b)) if b != 0 else (w1, 0.0)
    return left, right, False


def _reference_direction(fq, ft, pts, Fm, jit, width, height, line_step, window_size, temperature):
    """One direction of :func:`line2window_reference`: ``(c, σ, valid)`` per point, ``B×n``."""
    bsz, _, hf, wf = ft.shape
    n = pts.shape[1]
    scale = pts.new_tensor([(width - 1) / 2.0, (height - 1) / 2.0])
    q = F.grid_sample(
        fq, (pts / scale - 1.0)[:, :, None, :], mode="bilinear", padding_mode="zeros", align_corners=False
    )
    q = F.normalize(q[..., 0].transpose(1, 2), dim=-1)  # B×n×D
    tmap = temperature * F.normalize(ft, dim=1)
    with torch.no_grad():
        lines = torch.einsum("bij,bnj->bni", Fm, torch.cat([pts, torch.ones_like(pts[..., :1])], -1))
        e1 = torch.zeros(bsz, n, 2, dtype=pts.dtype)
        e2 = torch.zeros(bsz, n, 2, dtype=pts.dtype)
        valid = torch.zeros(bsz, n, dtype=torch.bool)
        for bi in range(bsz):
            for i in range(n):
                p1, p2, ok = _reference_endpoints(tuple(float(v) for v in lines[bi, i]), width, height)
                e1[bi, i] = torch.tensor(p1, dtype=pts.dtype)
                e2[bi, i] = torch.tensor(p2, dtype=pts.dtype)
                valid[bi, i] = ok
        e1, e2, valid = e1.to(pts.device), e2.to(pts.device), valid.to(pts.device)
        t = torch.linspace(0, 1, line_step, dtype=pts.dtype, device=pts.device)
        e1n, e2n = e1 / scale - 1.0, e2 / scale - 1.0
        line_pts = e1n[:, :, None, :] + t[None, None, :, None] * (e2n - e1n)[:, :, None, :]  # B×n×L×2
        line_feat = F.grid_sample(tmap, line_pts, mode="bilinear", padding_mode="border", align_corners=False)
        prob = torch.softmax(torch.einsum("bnd,bdnl->bnl", q, line_feat), dim=-1)
        best = prob.argmax(-1)
        centre = torch.stack([line_pts[bi, torch.arange(n), best[bi]] for bi in range(bsz)]) + jit
        valid = valid & (centre[..., 0].abs() <= 1) & (centre[..., 1].abs() <= 1)
        len_h, len_w = int(window_size * hf), int(window_size * wf)
        ys = torch.linspace(-window_size, window_size, len_h, dtype=pts.dtype, device=pts.device)
        xs = torch.linspace(-window_size, window_size, len_w, dtype=pts.dtype, device=pts.device)
        offs = torch.stack([xs.repeat(len_h), ys.repeat_interleave(len_w)], -1)  # y outer loop
        win = centre[:, :, None, :] + offs  # B×n×K×2
    win_feat = F.grid_sample(tmap, win, mode="bilinear", padding_mode="zeros", align_corners=False)  # B×D×n×K
    p = torch.softmax(torch.einsum("bnd,bdnk->bnk", q, win_feat), dim=-1)
    mu = (p[..., None] * win).sum(2)
    with torch.no_grad():
        var = (p[..., None] * win**2).sum(2) - mu**2
        sigma = var[..., 0].clamp(min=1e-10).sqrt() + var[..., 1].clamp(min=1e-10).sqrt()
    corr_px = (mu + 1.0) * scale
    l2 = torch.einsum("bij,bnj->bni", Fm, torch.cat([pts, torch.ones_like(pts[..., :1])], -1))
    cost = (l2[..., 0] * corr_px[..., 0] + l2[..., 1] * corr_px[..., 1] + l2[..., 2]).abs()
    cost = cost / l2[..., :2].norm(dim=-1).clamp(min=1e-8)
    return cost, sigma, valid


def line2window_reference(
    fmap1: torch.Tensor,
    fmap2: torch.Tensor,
    F12: torch.Tensor,
    F21: torch.Tensor,
    image_size: tuple[int, int],
    points1: torch.Tensor,
    points2: torch.Tensor,
    jitter1: torch.Tensor,
    jitter2: torch.Tensor,
    *,
    line_step: int = 100,
    window_size: float = 0.1,
    temperature: float = 60.0,
    win_cost_thr: float = 0.1,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A direct, independent implementation of the specified loss, for tests: ``(loss, stats)``.

    It follows the original step by step and shares no helper with :class:`Line2WindowLoss`: border
    intersections per point in plain Python, ``D``-dim descriptors sampled at every line and window point
    of ``T·normalize(fmap)`` (``border`` / ``zeros`` padding) and dotted with the query, and the original's
    weighting ``w = (s/mean s)·m``, ``w ← w/(mean w + 1e-8)``, ``loss = mean(w·c)`` per direction. Slow
    (a Python loop over points): use small inputs.
    """
    width, height = int(image_size[0]), int(image_size[1])
    thr = win_cost_thr * min(width, height)
    out, stats = [], {}
    for k, (fq, ft, pts, Fm, jit) in enumerate(
        ((fmap1, fmap2, points1, F12, jitter1), (fmap2, fmap1, points2, F21, jitter2)), start=1
    ):
        dt = fq.dtype
        cost, sigma, valid = _reference_direction(
            fq, ft, pts.to(dt), Fm.to(dt), jit.to(dt), width, height, line_step, window_size, temperature
        )
        with torch.no_grad():
            mask = ((cost < thr) & valid).to(dt)
            s = 1.0 / sigma.clamp(min=1e-10)
            w = (s / s.mean()) * mask
            w = w / (w.mean() + 1e-8)
        loss_k = (w * torch.where(mask.bool(), cost, torch.zeros_like(cost))).mean()
        out.append(loss_k)
        stats[f"loss_w{k}"] = loss_k.detach()
        stats[f"percent_w{k}"] = mask.mean()
    loss = out[0] + out[1]
    stats["loss"] = loss.detach()
    stats["percent_w"] = (stats.pop("percent_w1") + stats.pop("percent_w2")) / 2
    return loss, stats


def reinforce_reference(
    s1, s2, f1, f2, F12, F21, size, *, temperature, reward_thr, good_reward, bad_reward, kp_penalty
) -> float:
    """Literal per-element evaluation of the stage-2 objective for one pair (value only): for every accepted
    pair ``(i, j)``, reward × dual-softmax probability × (its log-probability + the samples' log-probabilities),
    less the keypoint penalty."""
    T, thr, good, bad, pen = temperature, reward_thr, good_reward, bad_reward, kp_penalty
    from posfeat.geometry import sample_feature_map

    d1 = sample_feature_map(f1, s1.xy.float(), size)[0].double()
    d2 = sample_feature_map(f2, s2.xy.float(), size)[0].double()
    aff = -T * (1 - d1 @ d2.T)
    P_row, P_col = torch.softmax(aff, 1), torch.softmax(aff, 0)
    x1, x2 = s1.xy[0].double(), s2.xy[0].double()
    total = 0.0
    for i in range(x1.shape[0]):
        for j in range(x2.shape[0]):
            if not (s1.accepted[0, i] and s2.accepted[0, j]):
                continue
            l2 = F12[0].double() @ torch.tensor([x1[i, 0], x1[i, 1], 1.0], dtype=torch.float64)
            l1 = F21[0].double() @ torch.tensor([x2[j, 0], x2[j, 1], 1.0], dtype=torch.float64)
            dd2 = abs(l2[0] * x2[j, 0] + l2[1] * x2[j, 1] + l2[2]) / l2[:2].norm()
            dd1 = abs(l1[0] * x1[i, 0] + l1[1] * x1[i, 1] + l1[2]) / l1[:2].norm()
            r = good if (dd1 < thr and dd2 < thr) else bad
            p = P_row[i, j] * P_col[i, j]
            lp = float(s1.logp[0, i].detach() + s2.logp[0, j].detach())
            total += float(r * p) * (math.log(P_row[i, j]) + math.log(P_col[i, j]) + lp)
    penalty = pen * float((s1.logp[0] * s1.accepted[0]).sum().detach() + (s2.logp[0] * s2.accepted[0]).sum().detach())
    return penalty - total
