"""PoSFeat keypoints from a dense score map, and descriptors sampled at them.

The rules follow the official extractor (docs/method.md#feature-extraction) with its pitfalls removed:

* **Border.** Only pixels at least ``border`` (default 1, the original's ``score[1:-1, 1:-1]``) from
  the image edge can be keypoints, so every keypoint has a full 3×3 neighbourhood for refinement.
* **NMS.** A pixel survives iff it is the arg-max of its ``(2r+1)²`` window, computed with
  ``max_pool2d(return_indices=True)``. On ties the first index in row-major window order wins (PyTorch's
  max-pool keeps the first maximum), so a plateau keeps one pixel, as in the original. Unlike the
  original (reflect padding, where a pixel near the border with ``r ≥ 2`` can be suppressed by its own
  mirror image), the window is padded with ``-inf``: a border pixel only competes with real pixels.
* **Threshold.** ``abs``: ``s > t``; ``max``: ``s > t·max(s)``; ``mean``: ``s > t·mean(s)`` (statistics of
  the admissible interior); ``None``/``"none"``: no threshold.
* **Sub-pixel.** ``subpixel: centroid`` (the original): the score-weighted centroid of the 3×3 neighbourhood of
  the peak (weights clamped at 0; the integer peak when all weights are 0). ``quadratic``: per axis, the vertex of
  the parabola through the peak and its two neighbours (:func:`refine_subpixel_quadratic`). The centroid pulls
  every offset towards the pixel centre when the peak is broad: a Gaussian peak of σ 1.5 px lying 0.3 px off the
  grid is found 0.22 px off by the centroid and 0.02 px off by the parabola (``tests/test_extraction.py``).
* **Count.** The ``max_keypoints`` best by peak score (stable order). When fewer pixels pass, fewer are
  returned: no padding to "at least 128" zero-score points (pitfall 7.4.6).

Keypoints are pixels (x right, y down, centre of the top-left pixel = (0, 0)), sorted by decreasing score;
descriptors are unit L2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from posfeat.extraction.config import SUBPIXEL_MODES, THRESHOLD_MODES
from posfeat.geometry import sample_feature_map


def _threshold_mask(s: torch.Tensor, threshold: float | None, mode: str | None) -> torch.Tensor | None:
    """The pixels of ``s`` that pass the threshold (``None``: no threshold applies)."""
    if mode in (None, "none", "None") or threshold is None:
        return None
    if mode == "abs":
        return s > threshold
    finite = s[torch.isfinite(s)]
    if finite.numel() == 0:
        return torch.zeros_like(s, dtype=torch.bool)
    if mode == "max":
        return s > threshold * finite.max()
    if mode == "mean":
        return s > threshold * finite.mean()
    raise ValueError(f"threshold_mode must be one of {THRESHOLD_MODES} or None, got {mode!r}")


def nms_mask(score: torch.Tensor, radius: int) -> torch.Tensor:
    """``(H, W)`` bool mask of pixels that are the (first) arg-max of their ``(2r+1)²`` window.

    Padding is ``-inf`` (max-pool's implicit padding); ties keep the first pixel in row-major order.
    """
    if radius <= 0:
        return torch.ones_like(score, dtype=torch.bool)
    h, w = score.shape
    _, idx = F.max_pool2d(score[None, None], 2 * radius + 1, stride=1, padding=radius, return_indices=True)
    own = torch.arange(h * w, device=score.device).view(h, w)
    return idx[0, 0] == own


def refine_subpixel(score: torch.Tensor, ij: torch.Tensor) -> torch.Tensor:
    """Score-weighted centroid of the 3×3 neighbourhood of integer peaks.

    Args:
        score: ``(H, W)`` score map.
        ij: ``(N, 2)`` integer peaks as (row, col).

    Returns:
        ``(N, 2)`` float ``(x, y)`` pixel coordinates. Weights are ``max(score, 0)``; pixels outside the
        map weigh 0; a peak whose neighbourhood weighs 0 in total keeps its integer position.
    """
    s = F.pad(score.clamp_min(0)[None, None], (1, 1, 1, 1))[0, 0]  # zeros outside the map
    off = torch.arange(-1, 2, device=score.device)
    dy, dx = torch.meshgrid(off, off, indexing="ij")
    dy, dx = dy.reshape(-1), dx.reshape(-1)
    rows = ij[:, 0:1] + 1 + dy  # (N, 9) in padded coordinates
    cols = ij[:, 1:2] + 1 + dx
    w = s[rows, cols].to(torch.float64)
    tot = w.sum(1)
    safe = torch.where(tot > 0, tot, torch.ones_like(tot))
    ox = torch.where(tot > 0, (w * dx).sum(1) / safe, torch.zeros_like(tot))
    oy = torch.where(tot > 0, (w * dy).sum(1) / safe, torch.zeros_like(tot))
    x = ij[:, 1].to(torch.float64) + ox
    y = ij[:, 0].to(torch.float64) + oy
    return torch.stack([x, y], 1).to(torch.float32)


def refine_subpixel_quadratic(score: torch.Tensor, ij: torch.Tensor) -> torch.Tensor:
    """Per axis, the vertex of the parabola through an integer peak and its two neighbours.

    Args:
        score: ``(H, W)`` score map.
        ij: ``(N, 2)`` integer peaks as (row, col).

    Returns:
        ``(N, 2)`` float ``(x, y)`` pixel coordinates. With ``l, c, r`` the scores left of, at and right of the
        peak, the x offset is ``(l − r) / (2 (l − 2c + r))``, clamped to ±0.5 px (likewise y). An axis keeps the
        integer position where the three scores are not concave (``l − 2c + r ≥ 0``: a plateau, or not a
        peak) or a neighbour lies outside the map.
    """
    s = score.to(torch.float64)
    h, w = s.shape
    r, c = ij[:, 0], ij[:, 1]

    def offset(lo: torch.Tensor, mid: torch.Tensor, hi: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        den = lo - 2.0 * mid + hi
        ok = inside & (den < 0)
        off = 0.5 * (lo - hi) / torch.where(ok, den, -torch.ones_like(den))
        return torch.where(ok, off.clamp(-0.5, 0.5), torch.zeros_like(off))

    rm, rp = (r - 1).clamp(0, h - 1), (r + 1).clamp(0, h - 1)
    cm, cp = (c - 1).clamp(0, w - 1), (c + 1).clamp(0, w - 1)
    mid = s[r, c]
    ox = offset(s[r, cm], mid, s[r, cp], (c >= 1) & (c <= w - 2))
    oy = offset(s[rm, c], mid, s[rp, c], (r >= 1) & (r <= h - 2))
    return torch.stack([c.to(torch.float64) + ox, r.to(torch.float64) + oy], 1).to(torch.float32)


SUBPIXEL_REFINERS = {"centroid": refine_subpixel, "quadratic": refine_subpixel_quadratic}
"""The ``subpixel`` modes of :func:`detect_keypoints` and :class:`~posfeat.extraction.ExtractConfig`."""


def detect_keypoints(
    score: torch.Tensor,
    nms_radius: int = 1,
    threshold: float | None = 0.9,
    threshold_mode: str | None = "abs",
    max_keypoints: int | None = 8192,
    border: int = 1,
    subpixel: str = "centroid",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keypoints from a dense score map (the rules: this module's docstring).

    Args:
        score: ``(H, W)`` (or ``(1, H, W)``, ``(1, 1, H, W)``) detector score map of the image.
        nms_radius: NMS radius ``r``; 0 disables NMS.
        threshold: score threshold; ``None`` disables it.
        threshold_mode: ``abs`` | ``max`` | ``mean`` | ``None``.
        max_keypoints: keep the best this many (``None``/``<= 0``: all that pass).
        border: minimum distance (pixels) of a peak from the image edge.
        subpixel: ``centroid`` (:func:`refine_subpixel`) | ``quadratic`` (:func:`refine_subpixel_quadratic`).

    Returns:
        ``xy`` ``(N, 2)`` float32 pixel coordinates (sub-pixel) and ``scores`` ``(N,)`` (the peak
        pixel's score), sorted by decreasing score. ``N`` may be smaller than ``max_keypoints``.
    """
    if subpixel not in SUBPIXEL_MODES:
        raise ValueError(f"subpixel must be one of {SUBPIXEL_MODES}, got {subpixel!r}")
    while score.dim() > 2:
        if score.shape[0] != 1:
            raise ValueError(f"detect_keypoints expects one H×W score map, got shape {tuple(score.shape)}")
        score = score[0]
    score = score.detach().float()
    score = torch.nan_to_num(score, nan=-float("inf"))
    h, w = score.shape
    b = max(int(border), 0)
    dev = score.device
    empty = (torch.zeros((0, 2), dtype=torch.float32, device=dev), torch.zeros(0, dtype=torch.float32, device=dev))
    if h - 2 * b <= 0 or w - 2 * b <= 0:
        return empty
    interior = score[b : h - b, b : w - b]
    keep = nms_mask(interior, nms_radius) & torch.isfinite(interior)
    thr = _threshold_mask(interior, threshold, threshold_mode)
    if thr is not None:
        keep &= thr
    ij = torch.nonzero(keep)  # row-major order
    if len(ij) == 0:
        return empty
    vals = interior[ij[:, 0], ij[:, 1]]
    order = torch.sort(vals, descending=True, stable=True).indices
    if max_keypoints is not None and max_keypoints > 0:
        order = order[:max_keypoints]
    ij = ij[order] + b
    return SUBPIXEL_REFINERS[subpixel](score, ij), vals[order]


def describe(local_map: torch.Tensor, xy: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Descriptors at keypoints: bilinear from the (stride-4) map, then L2-normalised.

    Args:
        local_map: ``(D, Hf, Wf)`` or ``(1, D, Hf, Wf)`` raw descriptor map of one image.
        xy: ``(N, 2)`` pixel coordinates in the image that produced ``local_map``.
        image_size: ``(W, H)`` of that (network input) image.

    Returns:
        ``(N, D)`` float32 unit descriptors.
    """
    if local_map.dim() == 3:
        local_map = local_map[None]
    if len(xy) == 0:
        return torch.zeros((0, local_map.shape[1]), dtype=torch.float32, device=local_map.device)
    xy = xy.to(device=local_map.device, dtype=torch.float32)
    out = sample_feature_map(local_map.float(), xy[None], image_size, normalize=True)
    return out[0]
