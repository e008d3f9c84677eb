"""PoSFeat features of one batch over scales (fused or a pyramid) and in-plane rotated views.

A *view* is the batch as the network sees it once: upright, or rotated by one angle of ``cfg.rotations``
(:mod:`posfeat.rotations`: same canvas, reflected corners). Each view gives, per image, the detector's
:class:`Keypoints` and/or descriptors of given (SIFT) keypoints, from the same descriptor maps; the views of
one image are then pooled by score (:func:`pool`).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from posfeat import rotations
from posfeat.extraction.config import ExtractConfig
from posfeat.extraction.keypoints import describe, detect_keypoints
from posfeat.extraction.network import ScaleMaps, from_scale, fused_scales, scale_maps, to_scale


class Keypoints(NamedTuple):
    """Keypoints of one image: ``xy`` ``(N, 2)`` pixels, ``scores`` ``(N,)``, unit ``descriptors`` ``(N, D)``."""

    xy: torch.Tensor
    scores: torch.Tensor
    descriptors: torch.Tensor


class GivenKeypoints(NamedTuple):
    """Keypoints to describe (OpenCV SIFT's): ``xy`` pixels, ``scores``, and ``sizes`` (``KeyPoint.size``, CPU)."""

    xy: torch.Tensor
    scores: torch.Tensor
    sizes: torch.Tensor


class ViewFeatures(NamedTuple):
    """One view's features per image: the detector's keypoints (``None`` when not detecting) and the given
    keypoints described (``None`` when none were given)."""

    detected: list[Keypoints] | None
    described: list[Keypoints] | None


def _detect(score: torch.Tensor, cfg: ExtractConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`detect_keypoints` on one ``H×W`` score map with the settings of ``cfg``."""
    return detect_keypoints(
        score, cfg.nms_radius, cfg.threshold, cfg.threshold_mode, cfg.max_keypoints, cfg.border, cfg.subpixel
    )


def pyramid_keypoints(levels: Sequence[ScaleMaps], b: int, cfg: ExtractConfig) -> Keypoints:
    """Keypoints of image ``b`` detected and described at every scale, pooled, in image pixels; the
    ``cfg.max_keypoints`` best by score are kept (stable order)."""
    found = []
    for level in levels:
        xy, sc = _detect(level.score[b, 0], cfg)
        desc = describe(level.local_map[b], xy, level.padded)
        found.append(Keypoints(from_scale(xy, *level.ratio), sc, desc))
    return pool(found, cfg.max_keypoints)


def describe_by_size(
    levels: Sequence[ScaleMaps], b: int, xy: torch.Tensor, sizes: torch.Tensor, cfg: ExtractConfig
) -> torch.Tensor:
    """Unit descriptors of image ``b`` at ``xy``, each from the pyramid level nearest (in log) to
    ``cfg.pyramid_sift_size / size`` (SIFT keypoints with their sizes)."""
    scales = torch.tensor([level.ratio[0] for level in levels], dtype=torch.float64)
    want = torch.log(cfg.pyramid_sift_size / sizes.double().cpu().clamp_min(1e-6))
    nearest = (want[:, None] - torch.log(scales)[None]).abs().argmin(1).to(xy.device)
    desc = torch.zeros((len(xy), levels[0].local_map.shape[1]), dtype=torch.float32, device=xy.device)
    for i, level in enumerate(levels):
        sel = nearest == i
        if sel.any():
            desc[sel] = describe(level.local_map[b], to_scale(xy[sel], *level.ratio), level.padded)
    return desc


def describe_fused(levels: Sequence[ScaleMaps], b: int, xy: torch.Tensor) -> torch.Tensor:
    """Unit descriptors of image ``b`` at ``xy`` (image pixels): the normalised sum over the scales."""
    total = None
    for level in levels:
        d = describe(level.local_map[b], to_scale(xy, *level.ratio), level.padded)
        total = d if total is None else total + d
    return F.normalize(total, dim=1) if len(levels) > 1 and len(total) else total


def view_features(
    model,
    images: Sequence[np.ndarray],
    cfg: ExtractConfig,
    dev: torch.device,
    given: Sequence[GivenKeypoints] | None = None,
    detect: bool = True,
) -> ViewFeatures:
    """PoSFeat features of one network call per scale, in the images' pixels.

    Without ``detect`` only the backbone runs; ``given`` keypoints (per image) are described from the same
    descriptor maps as the detected ones, so one call serves PoSFeat and PoSFeat-on-SIFT-keypoints.
    """
    h, w = images[0].shape[:2]
    pyramid = cfg.pyramid and len(cfg.scales) > 1
    if pyramid:
        levels = scale_maps(model, images, cfg, dev, detect)
    else:
        score, levels = fused_scales(model, images, cfg, dev, detect)
    detected = [] if detect else None
    described = [] if given is not None else None
    for b in range(len(images)):
        if given is not None:
            xy, sc, sizes = given[b]
            desc = describe_by_size(levels, b, xy, sizes, cfg) if pyramid else describe_fused(levels, b, xy)
            described.append(Keypoints(xy, sc, desc))
        if not detect:
            continue
        if pyramid:
            detected.append(pyramid_keypoints(levels, b, cfg))
        else:
            xy, sc = _detect(score[b, 0, :h, :w], cfg)
            detected.append(Keypoints(xy, sc, describe_fused(levels, b, xy)))
    return ViewFeatures(detected, described)


def rotated_features(
    model,
    images: Sequence[np.ndarray],
    cfg: ExtractConfig,
    dev: torch.device,
    degrees: float,
    given: Sequence[GivenKeypoints] | None = None,
    detect: bool = True,
) -> ViewFeatures:
    """:func:`view_features` of the views rotated by ``degrees``, back in image pixels: detected keypoints
    within ``cfg.rotation_margin`` of the image edge are dropped, and so are given keypoints that the view
    does not hold."""
    h, w = images[0].shape[:2]
    to_view = rotations.rotation_matrix(w, h, degrees)
    from_view = rotations.invert(to_view)
    views = [rotations.rotate_image(im, to_view) for im in images]
    in_view, keeps = None, None
    if given is not None:
        in_view, keeps = [], []
        for xy, sc, sizes in given:
            vxy = rotations.apply(to_view, xy)
            keep = rotations.inside(vxy, w, h, cfg.rotation_margin)
            in_view.append(GivenKeypoints(vxy[keep], sc[keep], sizes[keep.cpu()]))
            keeps.append(keep)
    detected, described = view_features(model, views, cfg, dev, in_view, detect)
    if described is not None:
        described = [Keypoints(given[b].xy[keeps[b]], f.scores, f.descriptors) for b, f in enumerate(described)]
    if detected is not None:
        back = []
        for vxy, sc, desc in detected:
            xy = rotations.apply(from_view, vxy)
            keep = rotations.inside(xy, w, h, cfg.rotation_margin)
            back.append(Keypoints(xy[keep], sc[keep], desc[keep]))
        detected = back
    return ViewFeatures(detected, described)


def pool(found: Sequence[Keypoints], cap: int | None) -> Keypoints:
    """Keypoints of one image from several views or scales, concatenated, by decreasing score (stable: the
    first first on ties), the best ``cap`` kept (``None``/``<= 0``: all)."""
    xy, sc, desc = (torch.cat(parts) for parts in zip(*found))
    order = torch.sort(sc, descending=True, stable=True).indices
    if cap is not None and cap > 0:
        order = order[:cap]
    return Keypoints(xy[order], sc[order], desc[order])
