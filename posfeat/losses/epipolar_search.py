"""The stage-1 search for one direction, query image → target image: random query points and centre jitter, the
epipolar line clipped to the target image, the line search for the most similar descriptor, and the window
soft-argmax around it (steps 1–3 of :mod:`posfeat.losses.line2window`).

Two samplers share every step except how similarities are read: :class:`_CorrelationSampler` (one correlation
GEMM, then bilinear sampling of scalars) and :class:`_DirectSampler` (``D``-dim descriptors sampled at each point
and dotted with the query, the original's formulation).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from ..geometry import denormalize_coords, epipolar_distance, normalize_coords, sample_feature_map
from .params import WindowSearch

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


def search_direction(
    fmap_q: torch.Tensor,
    fmap_t: torch.Tensor,
    points: torch.Tensor,
    F_qt: torch.Tensor,
    image_size: tuple[int, int],
    jitter: torch.Tensor,
    search: WindowSearch,
    impl: str,
) -> dict[str, torch.Tensor]:
    """One direction (query map → target map): line search, jitter, window soft-argmax, epipolar cost."""
    width, height = image_size
    _, _, hf, wf = fmap_t.shape
    q = sample_feature_map(fmap_q, points, (width, height), normalize=True)  # B×n×D, gradient → fmap_q
    sampler = (_CorrelationSampler if impl == "fast" else _DirectSampler)(q, fmap_t, search.temperature)

    with torch.no_grad():
        e1, e2, valid = epipolar_endpoints(epipolar_lines(F_qt, points), width, height)
        grid_l = line_grid(e1, e2, search.line_step, width, height)  # B×n×L×2
        best = sampler(grid_l, "border", grad=False).argmax(-1)  # first maximum on ties
        centre = grid_l.gather(2, best[:, :, None, None].expand(-1, -1, 1, 2)).squeeze(2)
        centre = centre + jitter.to(centre.dtype)
        valid = valid & (centre.abs() <= 1).all(-1)
        offsets = window_offsets(search.window_size, hf, wf, centre.device, centre.dtype)
        grid_w = centre[:, :, None, :] + offsets  # B×n×K×2

    prob = torch.softmax(sampler(grid_w, "zeros", grad=True), dim=-1)  # B×n×K
    c_hat = (prob[..., None] * grid_w).sum(2)  # normalised, differentiable
    sigma = window_sigma(prob, grid_w, c_hat, stable=search.stable_sigma)
    c_hat_px = denormalize_coords(c_hat, width, height)
    cost = epipolar_distance(points, c_hat_px, F_qt)
    return {"cost": cost, "sigma": sigma, "valid": valid, "corloc": c_hat_px, "centre": centre}
