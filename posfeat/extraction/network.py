"""The PoSFeat network over image scales: padding, the model call, and the per-scale score and descriptor maps.

**Image size.** The network needs H, W multiples of 16. The original crops the right/bottom remainder (those
pixels are lost). We **pad** right/bottom by reflection instead, run the network, and cut the score map back to
the image before NMS, so no keypoint lies in the padding and coordinates are unchanged. Descriptors are sampled
from the padded image's map with the padded size (the convention of :func:`posfeat.geometry.sample_feature_map`).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from posfeat.extraction.config import ExtractConfig
from posfeat.utils import autocast_dtype


class ScaleMaps(NamedTuple):
    """The network's output for a batch at one image scale."""

    score: torch.Tensor | None
    """``B×1×hs×ws`` score map cut to the scaled image (``None`` when the detector head did not run)."""
    local_map: torch.Tensor
    """``B×D×Hf×Wf`` raw descriptor map."""
    padded: tuple[int, int]
    """``(W, H)`` of the network input: the descriptor map's image size."""
    ratio: tuple[float, float]
    """``(sx, sy)``: image pixels to this scale's pixels."""


class FusedScales(NamedTuple):
    """Every scale's maps with the score maps fused into one (``pyramid: false``)."""

    score: torch.Tensor | None
    """``B×1×H×W``: the mean of the per-scale score maps resized to the image (``None`` without detection)."""
    levels: list[ScaleMaps]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad a ``(B, C, H, W)`` batch at the right/bottom to multiples of ``multiple`` (reflection)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if (ph < h and pw < w) else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def run_network(model, x: torch.Tensor, detect: bool = True, amp: bool = False) -> dict[str, torch.Tensor]:
    """The model on a ``[0, 1]`` batch in eval mode. Without ``detect`` only the backbone runs (a model with
    ``describe``), for descriptors on given keypoints: the full-resolution detector head is not needed.
    ``amp``: under autocast (:func:`autocast_dtype`), the outputs cast back to float32."""
    from posfeat.models import normalize_image

    dtype = autocast_dtype(amp, x.device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
            if not detect and hasattr(model, "describe"):
                out = dict(model.describe(normalize_image(x)))
            else:
                out = model(normalize_image(x))
        return {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in out.items()}
    finally:
        model.train(was_training)


def resize_image(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` resized by ``scale`` (area averaging when shrinking, bilinear when enlarging)."""
    if scale == 1.0:
        return image
    h, w = image.shape[:2]
    size = (max(int(round(w * scale)), 1), max(int(round(h * scale)), 1))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def scale_maps(
    model, images: Sequence[np.ndarray], cfg: ExtractConfig, dev: torch.device, detect: bool = True
) -> list[ScaleMaps]:
    """The network on the batch at every scale of ``cfg.scales``, one :class:`ScaleMaps` per scale."""
    h, w = images[0].shape[:2]
    outs = []
    for s in cfg.scales:
        scaled = [resize_image(im, s) for im in images]
        hs, ws = scaled[0].shape[:2]
        x = torch.from_numpy(np.stack(scaled)).to(dev).permute(0, 3, 1, 2).float().div_(255.0)
        x = pad_to_multiple(x, cfg.pad_multiple)
        hp, wp = x.shape[-2:]
        out = run_network(model, x, detect=detect, amp=cfg.amp)
        score = out.get("score")
        if score is not None:
            if tuple(score.shape[-2:]) != (hp, wp):
                raise RuntimeError(f"model score map {tuple(score.shape)} does not match its input {hp}×{wp}")
            score = score[:, :, :hs, :ws].float()
        outs.append(ScaleMaps(score, out["local_map"], (wp, hp), (ws / w, hs / h)))
    return outs


def fused_scales(
    model, images: Sequence[np.ndarray], cfg: ExtractConfig, dev: torch.device, detect: bool = True
) -> FusedScales:
    """:func:`scale_maps` with the score maps resized to the image (bilinear, pixel centres aligned) and
    averaged."""
    h, w = images[0].shape[:2]
    total, levels = None, []
    for level in scale_maps(model, images, cfg, dev, detect):
        score = level.score
        if score is not None:
            if tuple(score.shape[-2:]) != (h, w):
                score = F.interpolate(score, size=(h, w), mode="bilinear", align_corners=False)
            total = score if total is None else total + score
        levels.append(level)
    return FusedScales(None if total is None else total / len(cfg.scales), levels)


def to_scale(xy: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    """Image pixels → the pixels of an image resized by ``(sx, sy)`` (pixel centres: ``(x + 0.5)·s − 0.5``)."""
    if (sx, sy) == (1.0, 1.0):
        return xy
    scale = torch.tensor([sx, sy], dtype=torch.float32, device=xy.device)
    return (xy.float() + 0.5) * scale - 0.5


def from_scale(xy: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    """The inverse of :func:`to_scale`."""
    if (sx, sy) == (1.0, 1.0):
        return xy
    scale = torch.tensor([sx, sy], dtype=torch.float32, device=xy.device)
    return (xy.float() + 0.5) / scale - 0.5
