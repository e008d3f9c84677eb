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

import torch
import torch.nn as nn

from .epipolar_search import (
    draw_jitter,
    sample_grid_points,
    search_direction,
)
from .params import WindowSearch


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
    search: WindowSearch = WindowSearch(),
    impl: str = "fast",
) -> dict:
    """The stage-1 loss for given random draws, as additive parts (both directions).

    Args:
        fmap1, fmap2: raw ``local_map`` ``B×D×Hf×Wf`` of images 1 and 2 (gradients flow to both).
        F12, F21: ``B×3×3`` fundamental matrices in image pixels (``F12`` maps image-1 points to lines in 2).
        image_size: ``(W, H)`` of both images.
        points1, points2: ``B×n×2`` query pixels (:func:`sample_grid_points`).
        jitter1, jitter2: ``B×n×2`` centre jitter in normalised units (:func:`draw_jitter`).
        search: the loss's settings (:class:`~posfeat.losses.params.WindowSearch`).
        impl: ``"fast"`` (correlation GEMM, scalar sampling) or ``"reference"`` (direct descriptor sampling).

    Returns:
        The parts of the module docstring's API (``loss = num1/den1 + num2/den2``, pooled over parts as
        ``Σ num1 / Σ den1 + Σ num2 / Σ den2``), ``corloc*`` (the predicted correspondences, pixels) and
        ``mask*``.
    """
    _check_inputs(
        impl, fmap1, fmap2, F12=F12, F21=F21, points1=points1, points2=points2, jitter1=jitter1, jitter2=jitter2
    )
    width, height = int(image_size[0]), int(image_size[1])
    if fmap1.dtype in (torch.float16, torch.bfloat16):  # the loss always runs in float32
        fmap1, fmap2 = fmap1.float(), fmap2.float()
    dt = fmap1.dtype
    with torch.autocast(device_type=fmap1.device.type, enabled=False):
        thr = search.win_cost_thr * min(width, height)
        # direction 1 then 2, each reduced before the next (the order the backward pass accumulates in)
        d1 = search_direction(fmap1, fmap2, points1.to(dt), F12.to(dt), (width, height), jitter1, search, impl)
        num1, den1, mask1, sums1 = weighted_cost_parts(d1["cost"], d1["sigma"], d1["valid"], thr)
        d2 = search_direction(fmap2, fmap1, points2.to(dt), F21.to(dt), (width, height), jitter2, search, impl)
        num2, den2, mask2, sums2 = weighted_cost_parts(d2["cost"], d2["sigma"], d2["valid"], thr)
    loss_w1, loss_w2 = num1 / den1, num2 / den2
    loss = loss_w1 + loss_w2
    stats = _statistics(loss, loss_w1, loss_w2, d1, d2, mask1, mask2)
    parts = {"loss": loss, "num1": num1, "den1": den1, "num2": num2, "den2": den2, "stats": stats}
    corloc = {"corloc1": d1["corloc"].detach(), "corloc2": d2["corloc"].detach()}
    return {**parts, **corloc, "mask1": mask1, "mask2": mask2, "sums1": sums1, "sums2": sums2}


def _check_inputs(impl: str, fmap1: torch.Tensor, fmap2: torch.Tensor, **per_pair: torch.Tensor) -> None:
    """A ``ValueError`` naming the input of :func:`line2window_parts` whose shape does not fit the others."""
    if impl not in ("fast", "reference"):
        raise ValueError(f"impl must be 'fast' or 'reference', got {impl!r}")
    if fmap1.ndim != 4 or fmap1.shape != fmap2.shape:
        raise ValueError(
            f"fmap1 and fmap2 must be B×D×Hf×Wf of the same shape, got {tuple(fmap1.shape)} and {tuple(fmap2.shape)}"
        )
    bsz = fmap1.shape[0]
    for name in ("F12", "F21"):
        if tuple(per_pair[name].shape) != (bsz, 3, 3):
            raise ValueError(f"{name} must be {bsz}×3×3, got {tuple(per_pair[name].shape)}")
    for name in ("points1", "points2", "jitter1", "jitter2"):
        pt = per_pair[name]
        if pt.ndim != 3 or pt.shape[0] != bsz or pt.shape[2] != 2:
            raise ValueError(f"{name} must be {bsz}×n×2, got {tuple(pt.shape)}")


@torch.no_grad()
def _statistics(loss, loss_w1, loss_w2, d1: dict, d2: dict, mask1, mask2) -> dict[str, torch.Tensor]:
    """The detached statistics of both directions (see the module docstring's API)."""
    n_mask = mask1.sum() + mask2.sum()
    masked_cost = (d1["cost"] * mask1).sum() + (d2["cost"] * mask2).sum()
    return {
        "loss": loss.detach(),
        "loss_w1": loss_w1.detach(),
        "loss_w2": loss_w2.detach(),
        "percent_w": (mask1.float().mean() + mask2.float().mean()) / 2,
        "percent_valid": (d1["valid"].float().mean() + d2["valid"].float().mean()) / 2,
        "n_valid": d1["valid"].sum() + d2["valid"].sum(),
        "n_masked": n_mask,
        "n_points": torch.tensor(d1["valid"].numel() + d2["valid"].numel()),
        "cost_mean": masked_cost / n_mask.clamp_min(1),
        "sigma_mean": (d1["sigma"].mean() + d2["sigma"].mean()) / 2,
    }


def line2window_terms(*args, **kwargs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(loss_w1 + loss_w2, stats)`` for given random draws: :func:`line2window_parts` (same arguments),
    reduced to its loss and statistics."""
    res = line2window_parts(*args, **kwargs)
    return res["loss"], res["stats"]


class Line2WindowLoss(nn.Module):
    """Stage-1 loss (fast formulation); draws the grid points and the jitter from ``generator``.

    ``grid_size``: one query point per ``grid_size``² pixel cell; the keywords ``settings`` are
    :class:`~posfeat.losses.params.WindowSearch`'s (``line_step``, ``window_size``, ``temperature``,
    ``win_cost_thr``, ``stable_sigma``), held as ``self.search``. The loss always runs in float32 (or float64
    for float64 inputs), autocast off.
    """

    def __init__(self, grid_size: int = 16, **settings):
        super().__init__()
        self.grid_size = int(grid_size)
        self.search = WindowSearch(**settings)

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
            jitter1 = draw_jitter(bsz, points1.shape[1], self.search.window_size, generator, dev)
        if jitter2 is None:
            jitter2 = draw_jitter(bsz, points2.shape[1], self.search.window_size, generator, dev)
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
            search=self.search,
            impl=impl,
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
