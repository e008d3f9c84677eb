"""PoSFeat features of images in memory: one image, or a batch of images of one size.

One image → ``dict(keypoints N×2, scores N, descriptors N×D, image_size (w, h))`` of NumPy arrays, keypoints
sorted by decreasing score (:mod:`posfeat.extraction.keypoints`). Every rotation of ``cfg.rotations`` is one
view (:mod:`posfeat.extraction.views`), and the views of an image are pooled.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from posfeat.extraction.config import ExtractConfig
from posfeat.extraction.sift import extract_sift
from posfeat.extraction.views import GivenKeypoints, Keypoints, ViewFeatures, pool, rotated_features, view_features
from posfeat.io import DataError
from posfeat.utils import resolve_device

Results = list[dict[str, np.ndarray]]
"""One feature dict per image."""


def _check_images(images: Sequence[np.ndarray]) -> None:
    """Images of one network call: RGB uint8 ``(H, W, 3)``, all of one shape (else ``ValueError``)."""
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ValueError(f"PoSFeat extraction batches images of one size, got {sorted(shapes)}")
    for im in images:
        if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
            raise ValueError(f"expected RGB uint8 images (H, W, 3), got {im.dtype} {im.shape}")


def _as_results(per_view: list[list[Keypoints]], n: int, cap: int | None, w: int, h: int) -> Results:
    """Per-view keypoint lists → one NumPy feature dict per image (views pooled)."""
    results = []
    for b in range(n):
        xy, sc, desc = per_view[0][b] if len(per_view) == 1 else pool([view[b] for view in per_view], cap)
        results.append(
            {
                "keypoints": xy.float().cpu().numpy(),
                "scores": sc.float().cpu().numpy(),
                "descriptors": desc.float().cpu().numpy(),
                "image_size": np.array([w, h], np.int64),
            }
        )
    return results


def _sift_keypoints(images: Sequence[np.ndarray], cap: int | None, dev: torch.device) -> list[GivenKeypoints]:
    """OpenCV SIFT keypoints of each image, to be described by PoSFeat."""
    given = []
    for im in images:
        f = extract_sift(im, cap)
        xy, sc = torch.from_numpy(f["keypoints"]).to(dev), torch.from_numpy(f["scores"]).to(dev)
        given.append(GivenKeypoints(xy, sc, torch.from_numpy(f["scales"])))
    return given


def _features(
    model, images: Sequence[np.ndarray], cfg: ExtractConfig, dev: torch.device, detect: bool, on_sift: bool
) -> tuple[Results | None, Results | None]:
    """PoSFeat features of images of one size over every rotated view → ``(detected, on_sift)`` result lists
    (``None`` for the part not asked for); both parts share each view's network call."""
    _check_images(images)
    h, w = images[0].shape[:2]
    given = _sift_keypoints(images, cfg.max_keypoints, dev) if on_sift else None
    views: list[ViewFeatures] = []
    for deg in cfg.rotations:
        if deg == 0.0:
            views.append(view_features(model, images, cfg, dev, given, detect))
        else:
            views.append(rotated_features(model, images, cfg, dev, deg, given, detect))
    n = len(images)
    return (
        _as_results([v.detected for v in views], n, cfg.max_keypoints, w, h) if detect else None,
        _as_results([v.described for v in views], n, None, w, h) if on_sift else None,
    )


def extract_posfeat_batch(
    model, images: Sequence[np.ndarray], config: ExtractConfig | None = None, device: str | torch.device = "auto"
) -> Results:
    """PoSFeat features of several images of the same size in one network call (per rotation).

    Args:
        model: a PoSFeat model (``forward(normalised image) -> dict(local_map, score, …)``) on ``device``.
        images: RGB uint8 ``(H, W, 3)`` images, all of the same shape.
        config: detector settings (``sift_keypoints``: describe OpenCV SIFT keypoints instead of detecting).
        device: where to run.

    Returns:
        One ``dict(keypoints, scores, descriptors, image_size)`` of NumPy arrays per image.
    """
    cfg = config or ExtractConfig()
    detected, on_sift = _features(
        model, images, cfg, resolve_device(device), not cfg.sift_keypoints, cfg.sift_keypoints
    )
    return on_sift if cfg.sift_keypoints else detected


def extract_posfeat_and_sift_batch(
    model, images: Sequence[np.ndarray], config: ExtractConfig | None = None, device: str | torch.device = "auto"
) -> tuple[Results, Results]:
    """Both PoSFeat feature sets of images of one size from the same network calls: ``(detected, on_sift)``,
    equal to :func:`extract_posfeat_batch` without and with ``sift_keypoints`` (the backbone runs once, not
    twice). ``config.sift_keypoints`` is ignored."""
    return _features(model, images, config or ExtractConfig(), resolve_device(device), True, True)


def extract_posfeat(
    model, image: np.ndarray, config: ExtractConfig | None = None, device: str | torch.device = "auto"
) -> dict[str, np.ndarray]:
    """PoSFeat features of one RGB uint8 image: ``dict(keypoints, scores, descriptors, image_size)``."""
    return extract_posfeat_batch(model, [image], config, device)[0]


def load_model(weights: str | os.PathLike, device: str | torch.device = "auto"):
    """Load a PoSFeat checkpoint onto ``device`` in eval mode."""
    from posfeat.models import load_checkpoint

    dev = resolve_device(device)
    path = Path(weights)
    if not path.is_file():
        raise DataError(f"{path}: PoSFeat checkpoint not found")
    model, _ = load_checkpoint(path, map_location=dev)
    return model.to(dev).eval()
