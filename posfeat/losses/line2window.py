"""Stage-1 descriptor loss: epipolar line search, then a window soft-argmax
(docs/method.md#stage-1-line-to-window-loss).

For each grid point ``x1`` of image 1 (one random pixel per ``grid_size``² cell) and each direction:

1. **line search** (no gradient): the epipolar line ``F12·x1`` is clipped to image 2 (its two border
   intersections), ``line_step`` points are placed on it, and the one whose descriptor is most similar
   to ``x1``'s (``60·cos``, ``border`` padding; the *first* maximum on ties) becomes the centre;
2. **jitter**: the centre moves by ``0.707·window_size·U(−1, 1)`` per axis (normalised units); a point
   is valid iff its line crosses exactly two borders and the jittered centre lies inside ``[−1, 1]²``;
3. **window soft-argmax** (differentiable): ``softmax(60·cos)`` over a ``int(ws·Hf)×int(ws·Wf)`` grid
   of offsets in ``[−ws, ws]²`` around the centre (``zeros`` padding) gives the expected location ``ĉ``
   and a spread ``σ = √var_x + √var_y`` (``var = Σp·c² − ĉ²`` as the original, or the centred
   ``Σp·(c − ĉ)²`` with ``stable_sigma``);
4. **loss**: the epipolar distance ``c`` (pixels) of ``ĉ`` from ``F12·x1``, masked by ``c < thr·min(H, W)``
   and validity, weighted by ``s = 1/σ`` (detached): ``Σ m·s·c / (Σ m·s + 1e-8·Σ s)`` — exactly the
   original's ``mean(w·c)`` with ``w = (s/mean(s))·m / (mean((s/mean(s))·m) + 1e-8)`` (pooled over the batch).
   Total = both directions; the weight-0 grid term of the original is not computed.

Two implementations share every step except how similarities are sampled:

* :class:`Line2WindowLoss` (fast): one correlation GEMM per image and direction between the
  ``n`` query descriptors and the whole normalised target map, then bilinear sampling of *scalars* from
  each query's own correlation map (bilinear sampling is linear, padding rules kept);
* ``impl="reference"`` of :func:`line2window_parts`: the same steps, but ``D``-dim descriptors are sampled
  at the line and window points and dotted with the query (the original's direct formulation);
* ``tests/loss_oracles.py``: an independent, step-by-step implementation of the specified loss
  (per-point border intersections in Python, the original's weighting formulas), the tests' oracle.

The random draws (grid points, jitter) can be passed in, so both see identical inputs.

API (what the trainer calls)::

    loss_fn = Line2WindowLoss(grid_size=16, line_step=100, window_size=0.1, temperature=60, win_cost_thr=0.1)
    res = loss_fn.terms(fmap1, fmap2, F12, F21, image_size=(W, H), generator=gen)  # or points1=…, jitter1=…
    res["loss"]                       # = num1/den1 + num2/den2, differentiable
    res["num1"], res["den1"], ...     # additive parts: pooled over samples/ranks as Σnum1/Σden1 + Σnum2/Σden2
    res["sums1"], res["sums2"]        # detached counts and sums that add up over ranks (the trainer's statistics)
    res["stats"]                      # detached scalars: loss, loss_w1, loss_w2, percent_w, percent_valid, …
    loss, stats = loss_fn(fmap1, fmap2, F12, F21, image_size=(W, H), generator=gen)

Fixed bugs of the original (docs/method.md#official-code-paper-and-this-code): axis-parallel and degenerate
epipolar lines no longer produce inf/NaN (invalid points get finite endpoints and are masked); arg-max
ties take the first maximum instead of summing the tied coordinates.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..geometry import denormalize_coords, epipolar_distance, normalize_coords, sample_feature_map

JITTER_SCALE = 0.707  # the original's jitter amplitude, in units of window_size


# ------------------------------------------------------------------------------------- random draws
def _draw_device(generator: torch.Generator | None, device) -> torch.device:
    if generator is not None:
        return generator.device
    return torch.device(device) if device is not None else torch.device("cpu")


def sample_grid_points(
    batch: int,
    height: int,
    width: int,
    grid_size: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """One uniformly random pixel per ``grid_size×grid_size`` cell of an ``height×width`` image.

    Cells are in image space; a remainder that does not fill a cell is dropped (as ``unfold`` does).
    Returns ``B×n×2`` float32 pixel coordinates ``(x, y)`` with integer values, cells in row-major order,
    ``n = (height // grid_size) · (width // grid_size)``. Draws on the generator's device.
    """
    if grid_size < 1 or height // grid_size < 1 or width // grid_size < 1:
        raise ValueError(f"grid_size {grid_size} does not fit an image of {width}x{height} pixels")
    nh, nw = height // grid_size, width // grid_size
    dev = _draw_device(generator, device)
    off = torch.randint(0, grid_size, (batch, nh, nw, 2), generator=generator, device=dev)
    x = torch.arange(nw, device=dev).view(1, 1, nw) * grid_size + off[..., 0]
    y = torch.arange(nh, device=dev).view(1, nh, 1) * grid_size + off[..., 1]
    pts = torch.stack([x, y], dim=-1).reshape(batch, nh * nw, 2).to(torch.float32)
    return pts.to(device) if device is not None else pts


def draw_jitter(
    batch: int,
    n: int,
    window_size: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The line-search centre jitter ``0.707·window_size·U(−1, 1)``, ``B×n×2`` in normalised units."""
    dev = _draw_device(generator, device)
    u = torch.rand(batch, n, 2, generator=generator, device=dev, dtype=dtype)
    jit = JITTER_SCALE * window_size * (2.0 * u - 1.0)
    return jit.to(device) if device is not None else jit


# ---------------------------------------------------------------------------------------- geometry
def epipolar_lines(F12: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """``l = F12 · x̃`` for ``B×n×2`` pixel points → ``B×n×3`` (a, b, c) with ``a·x + b·y + c = 0``."""
    ones = torch.ones_like(xy[..., :1])
    return torch.einsum("bij,bnj->bni", F12.to(xy.dtype), torch.cat([xy, ones], dim=-1))


@torch.no_grad()
def epipolar_endpoints(lines: torch.Tensor, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clip epipolar lines to the image: ``(e1, e2, valid)``, endpoints ``B×n×2`` in pixels.

    The line is intersected with the borders ``x = 0``, ``x = W−1``, ``y = H−1``, ``y = 0`` (this order);
    a line is valid iff exactly two intersections lie in ``[0, W−1]×[0, H−1]`` (inclusive), and its
    endpoints are those two, in border order. Invalid lines get the ``x = 0`` / ``x = W−1``
    intersections as the original, made finite (a border parallel to the line has no intersection:
    ``torch.where`` instead of a division by zero; huge values are clamped to ±1e6 px).
    """
    a, b, c = lines.unbind(-1)
    w1, h1 = float(width - 1), float(height - 1)
    a_ok, b_ok = a != 0, b != 0
    a_s = torch.where(a_ok, a, torch.ones_like(a))
    b_s = torch.where(b_ok, b, torch.ones_like(b))
    y_l = -c / b_s
    y_r = -(a * w1 + c) / b_s
    x_u = -(b * h1 + c) / a_s
    x_b = -c / a_s
    zeros = torch.zeros_like(a)
    pts = torch.stack(
        [
            torch.stack([zeros, y_l], -1),
            torch.stack([zeros + w1, y_r], -1),
            torch.stack([x_u, zeros + h1], -1),
            torch.stack([x_b, zeros], -1),
        ],
        dim=-2,
    )  # B×n×4×2
    inside = torch.stack(
        [
            b_ok & (y_l >= 0) & (y_l <= h1),
            b_ok & (y_r >= 0) & (y_r <= h1),
            a_ok & (x_u >= 0) & (x_u <= w1),
            a_ok & (x_b >= 0) & (x_b <= w1),
        ],
        dim=-1,
    )  # B×n×4
    valid = inside.sum(-1) == 2
    idx = torch.arange(4, device=lines.device)
    first = torch.where(inside, idx, 4).amin(-1)
    last = torch.where(inside, idx, -1).amax(-1)
    i1 = torch.where(valid, first, 0)
    i2 = torch.where(valid, last, 1)
    e1 = pts.gather(-2, i1[..., None, None].expand(*i1.shape, 1, 2)).squeeze(-2)
    e2 = pts.gather(-2, i2[..., None, None].expand(*i2.shape, 1, 2)).squeeze(-2)
    fix = lambda e: torch.nan_to_num(e, nan=0.0, posinf=1e6, neginf=-1e6).clamp(-1e6, 1e6)  # noqa: E731
    e1 = torch.where(valid[..., None], e1, fix(e1))
    e2 = torch.where(valid[..., None], e2, fix(e2))
    return e1, e2, valid


def line_grid(e1: torch.Tensor, e2: torch.Tensor, line_step: int, width: int, height: int) -> torch.Tensor:
    """``line_step`` points from ``e1`` to ``e2`` (both included), normalised: ``B×n×L×2``."""
    e1n = normalize_coords(e1, width, height)
    e2n = normalize_coords(e2, width, height)
    t = torch.linspace(0.0, 1.0, line_step, device=e1.device, dtype=e1.dtype).view(1, 1, -1, 1)
    return (e2n - e1n)[:, :, None, :] * t + e1n[:, :, None, :]


def window_offsets(window_size: float, hf: int, wf: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``gen_grid(−ws, ws, −ws, ws, int(ws·hf), int(ws·wf))``: ``K×2`` offsets ``[x, y]``, y outer loop."""
    len_h, len_w = int(window_size * hf), int(window_size * wf)
    if len_h < 1 or len_w < 1:
        raise ValueError(
            f"window_size {window_size} gives an empty window on a {wf}x{hf} feature map "
            f"(int(ws*Hf)={len_h}, int(ws*Wf)={len_w}); use larger images or a larger window"
        )
    xs = torch.linspace(-window_size, window_size, len_w, device=device, dtype=dtype)
    ys = torch.linspace(-window_size, window_size, len_h, device=device, dtype=dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1).reshape(-1, 2)


# -------------------------------------------------------------------------------- similarity samplers
class _CorrelationSampler:
    """Fast: ``C = T·q·F̂ᵀ`` (one GEMM, ``B×n×Hf·Wf``), then scalars sampled from each query's own map."""

    def __init__(self, q: torch.Tensor, target: torch.Tensor, temperature: float):
        b, d, hf, wf = target.shape
        self.shape = (b, q.shape[1], hf, wf)
        # the temperature scales the n×D queries, not the n×Hf·Wf product: one small multiply instead of
        # two large ones (forward and backward) per direction
        corr = torch.bmm(q * temperature, F.normalize(target, dim=1).reshape(b, d, hf * wf))
        self.corr = corr.reshape(b * q.shape[1], 1, hf, wf)

    def __call__(self, grid: torch.Tensor, padding_mode: str, grad: bool) -> torch.Tensor:
        b, n, _, _ = self.shape
        k = grid.shape[2]
        corr = self.corr if grad else self.corr.detach()
        out = F.grid_sample(
            corr, grid.reshape(b * n, 1, k, 2), mode="bilinear", padding_mode=padding_mode, align_corners=False
        )
        return out.reshape(b, n, k)


class _DirectSampler:
    """Reference: sample ``D``-dim vectors of ``T·F̂`` at the points (as the original), dot with ``q``."""

    def __init__(self, q: torch.Tensor, target: torch.Tensor, temperature: float):
        self.q = q
        self.tmap = temperature * F.normalize(target, dim=1)

    def __call__(self, grid: torch.Tensor, padding_mode: str, grad: bool) -> torch.Tensor:
        ctx = contextlib.nullcontext() if grad else torch.no_grad()
        with ctx:
            feats = F.grid_sample(self.tmap, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
            return torch.einsum("bnd,bdnk->bnk", self.q, feats)  # feats: B×D×n×K


@torch.no_grad()
def window_sigma(prob: torch.Tensor, grid: torch.Tensor, c_hat: torch.Tensor, stable: bool = False) -> torch.Tensor:
    """Spread ``σ = √var_x + √var_y`` of the window distribution (detached), ``B×n``.

    ``prob``: ``B×n×K`` softmax weights, ``grid``: ``B×n×K×2`` window points (normalised units), ``c_hat``:
    ``B×n×2`` their expectation. ``stable=False`` is the official code's ``var = Σp·c² − ĉ²`` (cancellation:
    in float32 the variance of a peaked window, ≲ 1e-7 in normalised units, is of the order of the rounding
    error of ``Σp·c² ≈ ĉ²``, so ``1/σ`` of such windows is noise); ``stable=True`` the centred
    ``var = Σp·(c − ĉ)²``, the same value in exact arithmetic. Both clamp ``var`` at ``1e-10``.
    """
    prob, c_hat = prob.detach(), c_hat.detach()
    if stable:
        var = (prob[..., None] * (grid - c_hat[:, :, None, :]) ** 2).sum(2)
    else:
        var = (prob[..., None] * grid**2).sum(2) - c_hat**2
    return var.clamp_min(1e-10).sqrt().sum(-1)


def _search_direction(
    fmap_q: torch.Tensor,
    fmap_t: torch.Tensor,
    points: torch.Tensor,
    F_qt: torch.Tensor,
    image_size: tuple[int, int],
    jitter: torch.Tensor,
    line_step: int,
    window_size: float,
    temperature: float,
    impl: str,
    stable_sigma: bool = False,
) -> dict[str, torch.Tensor]:
    """One direction (query map → target map): line search, jitter, window soft-argmax, epipolar cost."""
    width, height = image_size
    _, _, hf, wf = fmap_t.shape
    q = sample_feature_map(fmap_q, points, (width, height), normalize=True)  # B×n×D, gradient → fmap_q
    sampler = (_CorrelationSampler if impl == "fast" else _DirectSampler)(q, fmap_t, temperature)

    with torch.no_grad():
        e1, e2, valid = epipolar_endpoints(epipolar_lines(F_qt, points), width, height)
        grid_l = line_grid(e1, e2, line_step, width, height)  # B×n×L×2
        best = sampler(grid_l, "border", grad=False).argmax(-1)  # first maximum on ties
        centre = grid_l.gather(2, best[:, :, None, None].expand(-1, -1, 1, 2)).squeeze(2)
        centre = centre + jitter.to(centre.dtype)
        valid = valid & (centre.abs() <= 1).all(-1)
        grid_w = centre[:, :, None, :] + window_offsets(window_size, hf, wf, centre.device, centre.dtype)  # B×n×K×2

    prob = torch.softmax(sampler(grid_w, "zeros", grad=True), dim=-1)  # B×n×K
    c_hat = (prob[..., None] * grid_w).sum(2)  # normalised, differentiable
    sigma = window_sigma(prob, grid_w, c_hat, stable=stable_sigma)
    c_hat_px = denormalize_coords(c_hat, width, height)
    cost = epipolar_distance(points, c_hat_px, F_qt)
    return {"cost": cost, "sigma": sigma, "valid": valid, "corloc": c_hat_px, "centre": centre}


def weighted_epipolar_cost(
    cost: torch.Tensor, sigma: torch.Tensor, valid: torch.Tensor, thr_px: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``Σ m·s·c / (Σ m·s + 1e-8·Σ s)`` with ``s = 1/max(σ, 1e-10)`` (detached), ``m = (c < thr) ∧ valid``.

    This is the original's ``mean(w·c)`` with ``w = (s/mean s)·m / (mean((s/mean s)·m) + 1e-8)``, pooled
    over all entries; an empty mask gives exactly 0 (and zero gradients). Returns ``(loss, mask)``.
    """
    num, den, mask = weighted_cost_parts(cost, sigma, valid, thr_px)
    return num / den, mask


def weighted_cost_parts(
    cost: torch.Tensor, sigma: torch.Tensor, valid: torch.Tensor, thr_px: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Numerator ``Σ m·s·c`` (differentiable), denominator ``Σ m·s + 1e-8·Σ s`` (constant), mask and sums.

    ``m``: the cost is finite, below ``thr_px`` and the point valid; ``s = 1/σ`` (a NaN σ counts as 1). A
    non-finite cost enters neither the numerator nor its gradient. Sums over any set of samples add up, so a
    batch split over processes (or per-sample calls) gives the pooled loss as ``Σ num / Σ den``; the detached
    ``sums`` (masked and valid points, points, masked cost, σ) add up the same way, for the statistics.
    """
    finite = torch.isfinite(cost.detach())
    clean = torch.nan_to_num(cost, nan=0.0, posinf=0.0, neginf=0.0)
    mask = (cost.detach() < thr_px) & valid & finite
    s = 1.0 / torch.nan_to_num(sigma.detach(), nan=1.0).clamp_min(1e-10)
    ms = s * mask
    num = (ms * torch.where(mask, clean, torch.zeros_like(clean))).sum()
    sums = {
        "masked": mask.sum(),
        "valid": valid.sum(),
        "points": float(mask.numel()),
        "masked_cost": (clean.detach() * mask).sum(),
        "sigma": sigma.detach().sum(),
    }
    return num, (ms.sum() + 1e-8 * s.sum()).detach(), mask, sums


def line2window_parts(
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
    impl: str = "fast",
    stable_sigma: bool = False,
) -> dict:
    """The stage-1 loss for given random draws, as additive parts (both directions).

    Args:
        fmap1, fmap2: raw ``local_map`` ``B×D×Hf×Wf`` of images 1 and 2 (gradients flow to both).
        F12, F21: ``B×3×3`` fundamental matrices in image pixels (``F12`` maps image-1 points to lines in 2).
        image_size: ``(W, H)`` of both images.
        points1, points2: ``B×n×2`` query pixels (:func:`sample_grid_points`).
        jitter1, jitter2: ``B×n×2`` centre jitter in normalised units (:func:`draw_jitter`).
        impl: ``"fast"`` (correlation GEMM, scalar sampling) or ``"reference"`` (direct descriptor sampling).
        stable_sigma: centred variance for ``σ`` (:func:`window_sigma`); ``False`` = the official formula.

    Returns:
        ``{"loss", "num1", "den1", "num2", "den2", "stats", "corloc1", "corloc2", "mask1", "mask2", "sums1",
        "sums2"}`` (``sums*``: :func:`weighted_cost_parts`'s detached sums, which add up over processes):
        ``loss = num1/den1 + num2/den2``; ``num*`` are differentiable sums, ``den*`` constants, so the
        loss of a batch split into parts is ``Σ num1 / Σ den1 + Σ num2 / Σ den2`` (pooled, as the
        original). ``stats`` are detached scalars; ``corloc*`` the predicted correspondences (pixels).
    """
    if impl not in ("fast", "reference"):
        raise ValueError(f"impl must be 'fast' or 'reference', got {impl!r}")
    if fmap1.ndim != 4 or fmap1.shape != fmap2.shape:
        raise ValueError(
            f"fmap1 and fmap2 must be B×D×Hf×Wf of the same shape, got {tuple(fmap1.shape)} and {tuple(fmap2.shape)}"
        )
    bsz = fmap1.shape[0]
    for name, fm in (("F12", F12), ("F21", F21)):
        if tuple(fm.shape) != (bsz, 3, 3):
            raise ValueError(f"{name} must be {bsz}×3×3, got {tuple(fm.shape)}")
    for name, pt in (("points1", points1), ("points2", points2), ("jitter1", jitter1), ("jitter2", jitter2)):
        if pt.ndim != 3 or pt.shape[0] != bsz or pt.shape[2] != 2:
            raise ValueError(f"{name} must be {bsz}×n×2, got {tuple(pt.shape)}")
    width, height = int(image_size[0]), int(image_size[1])
    if fmap1.dtype in (torch.float16, torch.bfloat16):  # the loss always runs in float32
        fmap1, fmap2 = fmap1.float(), fmap2.float()
    dt = fmap1.dtype
    kw = dict(
        line_step=line_step, window_size=window_size, temperature=temperature, impl=impl, stable_sigma=stable_sigma
    )
    with torch.autocast(device_type=fmap1.device.type, enabled=False):
        thr = win_cost_thr * min(width, height)
        # direction 1 then 2, each reduced before the next (the order the backward pass accumulates in)
        d1 = _search_direction(fmap1, fmap2, points1.to(dt), F12.to(dt), (width, height), jitter1, **kw)
        num1, den1, mask1, sums1 = weighted_cost_parts(d1["cost"], d1["sigma"], d1["valid"], thr)
        d2 = _search_direction(fmap2, fmap1, points2.to(dt), F21.to(dt), (width, height), jitter2, **kw)
        num2, den2, mask2, sums2 = weighted_cost_parts(d2["cost"], d2["sigma"], d2["valid"], thr)
    loss_w1, loss_w2 = num1 / den1, num2 / den2
    loss = loss_w1 + loss_w2
    with torch.no_grad():
        n_mask = mask1.sum() + mask2.sum()
        masked_cost = (d1["cost"] * mask1).sum() + (d2["cost"] * mask2).sum()
        stats = {
            "loss": loss.detach(),
            "loss_w1": loss_w1.detach(),
            "loss_w2": loss_w2.detach(),
            "percent_w": (mask1.float().mean() + mask2.float().mean()) / 2,
            "percent_valid": (d1["valid"].float().mean() + d2["valid"].float().mean()) / 2,
            "n_valid": d1["valid"].sum(),
            "n_masked": n_mask,
            "n_points": torch.tensor(d1["valid"].numel() + d2["valid"].numel()),
            "cost_mean": masked_cost / n_mask.clamp_min(1),
            "sigma_mean": (d1["sigma"].mean() + d2["sigma"].mean()) / 2,
        }
        stats["n_valid"] = stats["n_valid"] + d2["valid"].sum()
    return {
        "loss": loss,
        "num1": num1,
        "den1": den1,
        "num2": num2,
        "den2": den2,
        "stats": stats,
        "corloc1": d1["corloc"].detach(),
        "corloc2": d2["corloc"].detach(),
        "mask1": mask1,
        "mask2": mask2,
        "sums1": sums1,
        "sums2": sums2,
    }


def line2window_terms(*args, **kwargs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(loss_w1 + loss_w2, stats)`` for given random draws: :func:`line2window_parts` (same arguments),
    reduced to its loss and statistics."""
    res = line2window_parts(*args, **kwargs)
    return res["loss"], res["stats"]


class Line2WindowLoss(nn.Module):
    """Stage-1 loss (fast formulation); draws the grid points and the jitter from ``generator``.

    ``stable_sigma``: compute ``σ`` with the centred variance (:func:`window_sigma`); off by default
    (the official formula). The loss always runs in float32 (or float64 for float64 inputs), autocast off.
    """

    def __init__(
        self,
        grid_size: int = 16,
        line_step: int = 100,
        window_size: float = 0.1,
        temperature: float = 60.0,
        win_cost_thr: float = 0.1,
        stable_sigma: bool = False,
    ):
        super().__init__()
        self.stable_sigma = bool(stable_sigma)
        self.grid_size = int(grid_size)
        self.line_step = int(line_step)
        self.window_size = float(window_size)
        self.temperature = float(temperature)
        self.win_cost_thr = float(win_cost_thr)

    def terms(
        self,
        fmap1: torch.Tensor,
        fmap2: torch.Tensor,
        F12: torch.Tensor,
        F21: torch.Tensor,
        image_size: tuple[int, int],
        generator: torch.Generator | None = None,
        points1: torch.Tensor | None = None,
        points2: torch.Tensor | None = None,
        jitter1: torch.Tensor | None = None,
        jitter2: torch.Tensor | None = None,
        impl: str = "fast",
    ) -> dict:
        """Additive parts of the loss for one batch (:func:`line2window_parts`) plus ``points1/2``.

        ``image_size`` is ``(W, H)`` of the input images. Draw order from ``generator``: points of
        image 1, points of image 2, jitter 1→2, jitter 2→1 (each only when not given).
        """
        width, height = int(image_size[0]), int(image_size[1])
        bsz, dev = fmap1.shape[0], fmap1.device
        if points1 is None:
            points1 = sample_grid_points(bsz, height, width, self.grid_size, generator, dev)
        if points2 is None:
            points2 = sample_grid_points(bsz, height, width, self.grid_size, generator, dev)
        if jitter1 is None:
            jitter1 = draw_jitter(bsz, points1.shape[1], self.window_size, generator, dev)
        if jitter2 is None:
            jitter2 = draw_jitter(bsz, points2.shape[1], self.window_size, generator, dev)
        res = line2window_parts(
            fmap1,
            fmap2,
            F12,
            F21,
            (width, height),
            points1,
            points2,
            jitter1,
            jitter2,
            line_step=self.line_step,
            window_size=self.window_size,
            temperature=self.temperature,
            win_cost_thr=self.win_cost_thr,
            impl=impl,
            stable_sigma=self.stable_sigma,
        )
        res["points1"], res["points2"] = points1, points2
        return res

    def forward(
        self,
        fmap1: torch.Tensor,
        fmap2: torch.Tensor,
        F12: torch.Tensor,
        F21: torch.Tensor,
        image_size: tuple[int, int],
        generator: torch.Generator | None = None,
        points1: torch.Tensor | None = None,
        points2: torch.Tensor | None = None,
        jitter1: torch.Tensor | None = None,
        jitter2: torch.Tensor | None = None,
        impl: str = "fast",
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(loss, stats)`` for one batch of pairs; same arguments as :meth:`terms`."""
        res = self.terms(fmap1, fmap2, F12, F21, image_size, generator, points1, points2, jitter1, jitter2, impl)
        return res["loss"], res["stats"]
