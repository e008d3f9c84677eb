"""Test-time local features: PoSFeat (detector score map + descriptor map) and OpenCV SIFT / RootSIFT.

One image → ``dict(keypoints N×2, scores N, descriptors N×D, image_size (w, h))`` with keypoints in
pixels (x right, y down, centre of the top-left pixel = (0, 0)), sorted by decreasing score, and unit
L2 descriptors. :func:`extract_dataset` writes a whole image set into one hloc-layout HDF5 file.

PoSFeat keypoints follow the official extractor (docs/method.md#feature-extraction) with its pitfalls removed:

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
* **Image size.** The network needs H, W multiples of 16. The original crops the right/bottom remainder
  (those pixels are lost). We **pad** right/bottom by reflection instead, run the network, and cut the
  score map back to the image before NMS, so no keypoint lies in the padding and coordinates are
  unchanged. Descriptors are sampled from the padded image's map with the padded size (the convention
  of :func:`posfeat.geometry.sample_feature_map`).
* **Batching.** Consecutive images of equal size share one network call (on CUDA up to 8 images within
  :data:`GPU_BATCH_PIXELS`); detection and description are per image, so results equal single-image calls.

SIFT / RootSIFT use OpenCV's default parameters with ``enable_precise_upscale``: OpenCV's default
pyramid reports every keypoint +0.25 px (x and y) off in our pixel convention (measured; see
:func:`_sift_detector`), the precise upscale removes that bias. Scores are the SIFT responses.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from posfeat import rotations
from posfeat.data.images import list_images, read_image
from posfeat.geometry import sample_feature_map
from posfeat.io import DESCRIPTOR_DTYPES, DataError, FeatureWriter
from posfeat.utils import announce, autocast_dtype, config_from_dict, get_logger, resolve_device

logger = logging.getLogger(__name__)

METHODS = ("posfeat", "sift", "rootsift")
THRESHOLD_MODES = ("abs", "max", "mean")
GPU_BATCH_PIXELS = 8 * 640 * 480
"""Default pixel budget of one network call on CUDA (``batch_size: None``): 8 images of 640×480."""


@dataclass
class ExtractConfig:
    """Detector settings (defaults: the official HPatches configuration, docs/method.md#feature-extraction).

    Attributes:
        max_keypoints: keep at most this many keypoints per image (``None`` or ``<= 0``: all).
        nms_radius: NMS window radius ``r`` (window ``2r+1``); 0 disables NMS.
        threshold: score threshold ``t`` (PoSFeat only); ``None`` disables it.
        threshold_mode: ``abs`` | ``max`` | ``mean`` | ``None``.
        border: pixels this close to the image edge are never keypoints (1 = the original's interior).
        subpixel: sub-pixel refinement of a score peak: ``centroid`` (the original: the score-weighted 3×3
            centroid, :func:`refine_subpixel`) | ``quadratic`` (a parabola per axis, :func:`refine_subpixel_quadratic`).
        sift_keypoints: PoSFeat descriptors on OpenCV SIFT keypoints (scores = SIFT responses).
        batch_size: images of equal size per network call; ``None`` = 1 on CPU, and on CUDA up to 8
            images within :data:`GPU_BATCH_PIXELS` pixels.
        pad_multiple: the network's input size multiple (16 for the ResUNet).
        scales: image scales the network runs at (``[1.0]`` = the original, single scale). With several
            and no ``pyramid``, the score map is the mean of the per-scale maps resized to the image, and a
            descriptor is the normalised sum of the unit descriptors of every scale at the keypoint
            (multi-scale, as D2-Net's test time; the official PoSFeat extracts at one scale).
        pyramid: with several ``scales``, keep every scale's own keypoints and descriptors instead of
            fusing the scales (a scale pyramid, as R2D2's multi-scale extraction): keypoints are detected on
            each scale's score map, described from that scale's map, mapped back to image pixels, pooled,
            and the ``max_keypoints`` best kept. A feature seen at scale ``s`` in one image and at ``1`` in a
            view zoomed by ``s`` then gets the same descriptor. With ``sift_keypoints`` each SIFT keypoint is
            described at the scale nearest (in log) to ``pyramid_sift_size / size`` (its SIFT size, capped
            at the scale range).
        pyramid_sift_size: SIFT keypoint size (OpenCV ``KeyPoint.size``, pixels) described at scale 1 in a
            pyramid; larger keypoints are described at proportionally smaller scales.
        rotations: in-plane rotations (degrees) of the image the network also runs on (``[0.0]`` = upright
            only, the original). Each rotated view (:mod:`posfeat.rotations`: same canvas, reflected
            corners) is extracted with the settings above; its keypoints lying at least ``rotation_margin``
            pixels inside the image are mapped back to image pixels with their own descriptors, pooled with
            the other views', and the ``max_keypoints`` best kept. Two images rotated by about one step of
            the list then match. With ``sift_keypoints`` every SIFT keypoint is described once per view that
            holds it (so up to ``len(rotations)`` descriptors at one position).
        rotation_margin: pixels from the image edge (and, for SIFT keypoints, from the view's edge) within
            which a rotated view's keypoints are dropped.
        amp: run the network under mixed precision (:func:`posfeat.utils.autocast_dtype`: bfloat16 on a CPU
            that has it natively, else float32); descriptors and scores are float32 after the network.
        descriptor_dtype: how descriptors are *stored* in the feature file: ``float16`` (half the disk, as
            hloc) | ``float32``. Readers return float32 either way.
    """

    max_keypoints: int | None = 8192
    nms_radius: int = 1
    threshold: float | None = 0.9
    threshold_mode: str | None = "abs"
    border: int = 1
    subpixel: str = "centroid"
    sift_keypoints: bool = False
    batch_size: int | None = None
    pad_multiple: int = 16
    scales: tuple[float, ...] = (1.0,)
    pyramid: bool = False
    pyramid_sift_size: float = 4.0
    rotations: tuple[float, ...] = (0.0,)
    rotation_margin: float = 4.0
    amp: bool = False
    descriptor_dtype: str = "float16"

    def __post_init__(self) -> None:
        if self.descriptor_dtype not in DESCRIPTOR_DTYPES:
            raise ValueError(f"descriptor_dtype must be one of {DESCRIPTOR_DTYPES}, got {self.descriptor_dtype!r}")
        rots = (self.rotations,) if isinstance(self.rotations, (int, float)) else tuple(self.rotations)
        if not rots or not all(isinstance(v, (int, float)) and -180.0 <= v <= 180.0 for v in rots):
            raise ValueError(
                f"rotations must be a non-empty list of angles in [-180, 180] degrees, got {self.rotations!r}"
            )
        if len(set(rots)) != len(rots):
            raise ValueError(f"rotations must not repeat an angle, got {self.rotations!r}")
        self.rotations = tuple(float(v) for v in rots)
        if not self.rotation_margin >= 0:
            raise ValueError(f"rotation_margin must be >= 0 pixels, got {self.rotation_margin!r}")
        scales = (self.scales,) if isinstance(self.scales, (int, float)) else tuple(self.scales)
        if not scales or not all(isinstance(v, (int, float)) and 0.1 <= v <= 4.0 for v in scales):
            raise ValueError(f"scales must be a non-empty list of image scales in [0.1, 4], got {self.scales!r}")
        self.scales = tuple(float(v) for v in scales)
        if not self.pyramid_sift_size > 0:
            raise ValueError(f"pyramid_sift_size must be > 0 pixels, got {self.pyramid_sift_size!r}")
        if self.threshold_mode in ("none", "None"):
            self.threshold_mode = None
        if self.threshold_mode is not None and self.threshold_mode not in THRESHOLD_MODES:
            raise ValueError(f"threshold_mode must be one of {THRESHOLD_MODES} or None, got {self.threshold_mode!r}")
        if self.subpixel not in SUBPIXEL_MODES:
            raise ValueError(f"subpixel must be one of {SUBPIXEL_MODES}, got {self.subpixel!r}")
        if self.nms_radius < 0 or self.border < 0 or self.pad_multiple < 1:
            raise ValueError(
                f"need nms_radius >= 0, border >= 0, pad_multiple >= 1; got {self.nms_radius}, {self.border}, "
                f"{self.pad_multiple}"
            )

    @classmethod
    def from_dict(cls, d: dict | None, what: str = "extract") -> "ExtractConfig":
        """From params mapping ``what`` (e.g. ``extract.hpatches``); unknown keys or wrong types name the key."""
        return config_from_dict(cls, d, what)


# --------------------------------------------------------------------------------------- detection
def _threshold_mask(s: torch.Tensor, threshold: float | None, mode: str | None) -> torch.Tensor | None:
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
"""The ``subpixel`` modes of :func:`detect_keypoints` and :class:`ExtractConfig`."""
SUBPIXEL_MODES = tuple(SUBPIXEL_REFINERS)


def detect_keypoints(
    score: torch.Tensor,
    nms_radius: int = 1,
    threshold: float | None = 0.9,
    threshold_mode: str | None = "abs",
    max_keypoints: int | None = 8192,
    border: int = 1,
    subpixel: str = "centroid",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keypoints from a dense score map (see the module docstring for the exact rules).

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


# ---------------------------------------------------------------------------------------- SIFT
def _sift_detector(nfeatures: int):
    """OpenCV SIFT with default parameters and an unbiased first octave → ``(detector, xy shift)``.

    OpenCV's default pyramid doubles the image with half-pixel-centred bilinear resizing but maps
    the doubled pixel ``u`` back to ``u/2``: every keypoint then lies +0.25 px (x and y, all octaves)
    from its true position in our convention (measured by a test on rendered blobs).
    ``enable_precise_upscale`` (OpenCV ≥ 4.8) removes the bias; with an older OpenCV we subtract it.
    """
    try:
        return cv2.SIFT_create(nfeatures, 3, 0.04, 10, 1.6, cv2.CV_32F, True), 0.0
    except (TypeError, cv2.error):
        return cv2.SIFT_create(nfeatures=nfeatures), 0.25


def extract_sift(image: np.ndarray, max_keypoints: int | None = None, root: bool = False) -> dict[str, np.ndarray]:
    """OpenCV SIFT (default parameters, ``nfeatures=max_keypoints``), sorted by response.

    OpenCV keypoint coordinates put the centre of the top-left pixel at (0, 0), our convention, once
    the default pyramid's +0.25 px bias is removed (see :func:`_sift_detector`; checked by a test on a
    rendered blob). Descriptors are unit L2; with ``root`` they are RootSIFT (L1-normalise, sqrt,
    which is unit L2). Scores are the detector responses; ``scales`` (OpenCV's keypoint size) and
    ``oris`` (orientation in radians) are what hloc's SIFT files carry (its AdaLAM matcher needs them).

    Args:
        image: ``(H, W, 3)`` RGB or ``(H, W)`` grey uint8 image.
        max_keypoints: cap (``None``/``<= 0``: OpenCV's default, all).
        root: RootSIFT descriptors.
    """
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    n = int(max_keypoints) if max_keypoints and max_keypoints > 0 else 0
    sift, shift = _sift_detector(n)
    kps, desc = sift.detectAndCompute(gray, None)
    h, w = gray.shape[:2]
    if desc is None or len(kps) == 0:
        return {
            "keypoints": np.zeros((0, 2), np.float32),
            "scores": np.zeros(0, np.float32),
            "descriptors": np.zeros((0, 128), np.float32),
            "image_size": np.array([w, h], np.int64),
            "scales": np.zeros(0, np.float32),
            "oris": np.zeros(0, np.float32),
        }
    xy = np.array([k.pt for k in kps], np.float32) - np.float32(shift)
    resp = np.array([k.response for k in kps], np.float32)
    order = np.argsort(-resp, kind="stable")
    if n:
        order = order[:n]  # retainBest can keep ties beyond n
    desc = desc[order].astype(np.float32)
    if root:
        desc = desc / np.maximum(np.abs(desc).sum(1, keepdims=True), 1e-12)
        desc = np.sqrt(np.maximum(desc, 0))
    desc = desc / np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)
    scales = np.array([k.size for k in kps], np.float32)  # hloc's SIFT: OpenCV's keypoint size
    oris = np.deg2rad(np.array([k.angle for k in kps], np.float32))  # radians (hloc: deg2rad of OpenCV's angle)
    return {
        "keypoints": xy[order],
        "scores": resp[order],
        "descriptors": desc,
        "image_size": np.array([w, h], np.int64),
        "scales": scales[order],
        "oris": oris[order],
    }


# ------------------------------------------------------------------------------------- PoSFeat
def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad a ``(B, C, H, W)`` batch at the right/bottom to multiples of ``multiple`` (reflection)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if (ph < h and pw < w) else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def _network(model, x: torch.Tensor, detect: bool = True, amp: bool = False) -> dict[str, torch.Tensor]:
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


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` resized by ``scale`` (area averaging when shrinking, bilinear when enlarging)."""
    if scale == 1.0:
        return image
    h, w = image.shape[:2]
    size = (max(int(round(w * scale)), 1), max(int(round(h * scale)), 1))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def _scale_outputs(model, images: Sequence[np.ndarray], cfg: ExtractConfig, dev: torch.device, detect: bool = True):
    """The network at every scale of ``cfg.scales`` → a list of ``(score, local_map, padded, (sx, sy))``.

    ``score`` is that scale's ``B×1×hs×ws`` score map cut to the scaled image (``None`` without ``detect``:
    the detector head does not run), ``padded`` the ``(W, H)`` of the network input (the descriptor map's
    image size), and ``sx, sy`` map image pixels to the scale's.
    """
    h, w = images[0].shape[:2]
    outs = []
    for s in cfg.scales:
        scaled = [_resize(im, s) for im in images]
        hs, ws = scaled[0].shape[:2]
        x = torch.from_numpy(np.stack(scaled)).to(dev).permute(0, 3, 1, 2).float().div_(255.0)
        x = _pad_to_multiple(x, cfg.pad_multiple)
        hp, wp = x.shape[-2:]
        out = _network(model, x, detect=detect, amp=cfg.amp)
        score = out.get("score")
        if score is not None:
            if tuple(score.shape[-2:]) != (hp, wp):
                raise RuntimeError(f"model score map {tuple(score.shape)} does not match its input {hp}×{wp}")
            score = score[:, :, :hs, :ws].float()
        outs.append((score, out["local_map"], (wp, hp), (ws / w, hs / h)))
    return outs


def _to_scale(xy: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    """Image pixels → the pixels of an image resized by ``(sx, sy)`` (pixel centres: ``(x + 0.5)·s − 0.5``)."""
    if (sx, sy) == (1.0, 1.0):
        return xy
    scale = torch.tensor([sx, sy], dtype=torch.float32, device=xy.device)
    return (xy.float() + 0.5) * scale - 0.5


def _from_scale(xy: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    """The inverse of :func:`_to_scale`."""
    if (sx, sy) == (1.0, 1.0):
        return xy
    scale = torch.tensor([sx, sy], dtype=torch.float32, device=xy.device)
    return (xy.float() + 0.5) / scale - 0.5


def _multiscale_network(
    model, images: Sequence[np.ndarray], cfg: ExtractConfig, dev: torch.device, detect: bool = True
):
    """The network at every scale of ``cfg.scales`` → ``(score B×1×H×W, maps)``.

    ``score`` is the mean of the per-scale score maps, each resized to the image (bilinear, pixel centres
    aligned; ``None`` without ``detect``); ``maps`` lists ``(local_map, (padded W, padded H), (sx, sy))``
    per scale, where ``sx, sy`` map image pixels to that scale's pixels.
    """
    h, w = images[0].shape[:2]
    total, maps = None, []
    for score, local, padded, ratio in _scale_outputs(model, images, cfg, dev, detect):
        if score is not None:
            if tuple(score.shape[-2:]) != (h, w):
                score = F.interpolate(score, size=(h, w), mode="bilinear", align_corners=False)
            total = score if total is None else total + score
        maps.append((local, padded, ratio))
    return (None if total is None else total / len(cfg.scales)), maps


def _pyramid_keypoints(outs, b: int, cfg: ExtractConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keypoints of image ``b`` detected and described at every scale, pooled → ``(xy, scores, desc)``.

    Coordinates are image pixels; the ``cfg.max_keypoints`` best by score are kept (stable order).
    """
    xys, scores, descs = [], [], []
    for score, local, padded, (sx, sy) in outs:
        xy, sc = detect_keypoints(
            score[b, 0], cfg.nms_radius, cfg.threshold, cfg.threshold_mode, cfg.max_keypoints, cfg.border, cfg.subpixel
        )
        descs.append(describe(local[b], xy, padded))
        xys.append(_from_scale(xy, sx, sy))
        scores.append(sc)
    xy, sc, desc = torch.cat(xys), torch.cat(scores), torch.cat(descs)
    order = torch.sort(sc, descending=True, stable=True).indices
    if cfg.max_keypoints is not None and cfg.max_keypoints > 0:
        order = order[: cfg.max_keypoints]
    return xy[order], sc[order], desc[order]


def _describe_by_size(outs, b: int, xy: torch.Tensor, sizes: torch.Tensor, cfg: ExtractConfig) -> torch.Tensor:
    """Unit descriptors of image ``b`` at ``xy``, each from the pyramid level nearest (in log) to
    ``cfg.pyramid_sift_size / size`` (SIFT keypoints with their sizes)."""
    scales = torch.tensor([r[0] for _, _, _, r in outs], dtype=torch.float64)
    want = torch.log(cfg.pyramid_sift_size / sizes.double().cpu().clamp_min(1e-6))
    level = (want[:, None] - torch.log(scales)[None]).abs().argmin(1).to(xy.device)
    desc = torch.zeros((len(xy), outs[0][1].shape[1]), dtype=torch.float32, device=xy.device)
    for i, (_, local, padded, (sx, sy)) in enumerate(outs):
        sel = level == i
        if sel.any():
            desc[sel] = describe(local[b], _to_scale(xy[sel], sx, sy), padded)
    return desc


def _describe_multiscale(maps, b: int, xy: torch.Tensor) -> torch.Tensor:
    """Unit descriptors of image ``b`` at ``xy`` (image pixels): the normalised sum over the scales."""
    total = None
    for local, padded, (sx, sy) in maps:
        d = describe(local[b], _to_scale(xy, sx, sy), padded)
        total = d if total is None else total + d
    return F.normalize(total, dim=1) if len(maps) > 1 and len(total) else total


def _view_features(
    model,
    images: Sequence[np.ndarray],
    cfg: ExtractConfig,
    dev: torch.device,
    sift: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None,
    detect: bool = True,
):
    """PoSFeat features of one network call (scales, pyramid), in the images' pixels → ``(detected, described)``.

    ``detected``: per image ``(xy, scores, descriptors)`` of the detector's keypoints (``None`` without
    ``detect``: then only the backbone runs); ``described``: per image ``(xy, scores, descriptors)`` of the
    given ``sift`` keypoints (per image ``(xy, scores, sizes)``; ``None`` when none are given). Both come from
    the same descriptor maps, so one call serves PoSFeat and PoSFeat-on-SIFT-keypoints.
    """
    h, w = images[0].shape[:2]
    pyramid = cfg.pyramid and len(cfg.scales) > 1
    if pyramid:
        outs = _scale_outputs(model, images, cfg, dev, detect)
    else:
        score, maps = _multiscale_network(model, images, cfg, dev, detect)
    detected = [] if detect else None
    described = [] if sift is not None else None
    for b in range(len(images)):
        if sift is not None:
            xy, sc, sizes = sift[b]
            desc = _describe_by_size(outs, b, xy, sizes, cfg) if pyramid else _describe_multiscale(maps, b, xy)
            described.append((xy, sc, desc))
        if not detect:
            continue
        if pyramid:
            detected.append(_pyramid_keypoints(outs, b, cfg))
        else:
            xy, sc = detect_keypoints(
                score[b, 0, :h, :w],
                cfg.nms_radius,
                cfg.threshold,
                cfg.threshold_mode,
                cfg.max_keypoints,
                cfg.border,
                cfg.subpixel,
            )
            detected.append((xy, sc, _describe_multiscale(maps, b, xy)))
    return detected, described


def _rotated_features(
    model,
    images: Sequence[np.ndarray],
    cfg: ExtractConfig,
    dev: torch.device,
    degrees: float,
    sift=None,
    detect: bool = True,
):
    """:func:`_view_features` of the views rotated by ``degrees``, back in image pixels: detected keypoints
    within ``cfg.rotation_margin`` of the image edge are dropped, and so are given (SIFT) keypoints that the
    view does not hold."""
    h, w = images[0].shape[:2]
    to_view = rotations.rotation_matrix(w, h, degrees)
    from_view = rotations.invert(to_view)
    views = [rotations.rotate_image(im, to_view) for im in images]
    given, keeps = None, None
    if sift is not None:
        given, keeps = [], []
        for xy, sc, sizes in sift:
            vxy = rotations.apply(to_view, xy)
            keep = rotations.inside(vxy, w, h, cfg.rotation_margin)
            given.append((vxy[keep], sc[keep], sizes[keep.cpu()]))
            keeps.append(keep)
    detected, described = _view_features(model, views, cfg, dev, given, detect)
    if described is not None:
        described = [(sift[b][0][keeps[b]], sc, desc) for b, (_, sc, desc) in enumerate(described)]
    if detected is not None:
        back = []
        for vxy, sc, desc in detected:
            xy = rotations.apply(from_view, vxy)
            keep = rotations.inside(xy, w, h, cfg.rotation_margin)
            back.append((xy[keep], sc[keep], desc[keep]))
        detected = back
    return detected, described


def _pool(views: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], cap: int | None):
    """The views' ``(xy, scores, descriptors)`` of one image concatenated, by decreasing score (stable: the
    first view first on ties), the best ``cap`` kept (``None``/``<= 0``: all)."""
    xy, sc, desc = (torch.cat(parts) for parts in zip(*views))
    order = torch.sort(sc, descending=True, stable=True).indices
    if cap is not None and cap > 0:
        order = order[:cap]
    return xy[order], sc[order], desc[order]


def _check_images(images: Sequence[np.ndarray]) -> None:
    """Images of one network call: RGB uint8 ``(H, W, 3)``, all of one shape (else ``ValueError``)."""
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ValueError(f"PoSFeat extraction batches images of one size, got {sorted(shapes)}")
    for im in images:
        if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
            raise ValueError(f"expected RGB uint8 images (H, W, 3), got {im.dtype} {im.shape}")


def _as_results(per_view: list, n: int, cap: int | None, w: int, h: int) -> list[dict[str, np.ndarray]]:
    """Per-view ``(xy, scores, descriptors)`` lists → one NumPy feature dict per image (views pooled)."""
    results = []
    for b in range(n):
        xy, sc, desc = per_view[0][b] if len(per_view) == 1 else _pool([view[b] for view in per_view], cap)
        results.append(
            {
                "keypoints": xy.float().cpu().numpy(),
                "scores": sc.float().cpu().numpy(),
                "descriptors": desc.float().cpu().numpy(),
                "image_size": np.array([w, h], np.int64),
            }
        )
    return results


def _posfeat_features(
    model, images: Sequence[np.ndarray], cfg: ExtractConfig, dev: torch.device, detect: bool, on_sift: bool
):
    """PoSFeat features of images of one size over every rotated view → ``(detected, on_sift)`` result lists
    (``None`` for the part not asked for); both parts share each view's network call."""
    _check_images(images)
    h, w = images[0].shape[:2]
    sift = None
    if on_sift:
        sift = []
        for im in images:
            f = extract_sift(im, cfg.max_keypoints)
            xy, sc = torch.from_numpy(f["keypoints"]).to(dev), torch.from_numpy(f["scores"]).to(dev)
            sift.append((xy, sc, torch.from_numpy(f["scales"])))
    det_views, sift_views = [], []
    for deg in cfg.rotations:
        if deg == 0.0:
            detected, described = _view_features(model, images, cfg, dev, sift, detect)
        else:
            detected, described = _rotated_features(model, images, cfg, dev, deg, sift, detect)
        det_views.append(detected)
        sift_views.append(described)
    n = len(images)
    return (
        _as_results(det_views, n, cfg.max_keypoints, w, h) if detect else None,
        _as_results(sift_views, n, None, w, h) if on_sift else None,
    )


def extract_posfeat_batch(
    model, images: Sequence[np.ndarray], config: ExtractConfig | None = None, device: str | torch.device = "auto"
) -> list[dict[str, np.ndarray]]:
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
    dev = resolve_device(device) if isinstance(device, str) else device
    detected, on_sift = _posfeat_features(model, images, cfg, dev, not cfg.sift_keypoints, cfg.sift_keypoints)
    return on_sift if cfg.sift_keypoints else detected


def extract_posfeat_and_sift_batch(
    model, images: Sequence[np.ndarray], config: ExtractConfig | None = None, device: str | torch.device = "auto"
) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    """Both PoSFeat feature sets of images of one size from the same network calls: ``(detected, on_sift)``,
    equal to :func:`extract_posfeat_batch` without and with ``sift_keypoints`` (the backbone runs once, not
    twice). ``config.sift_keypoints`` is ignored."""
    cfg = config or ExtractConfig()
    dev = resolve_device(device) if isinstance(device, str) else device
    return _posfeat_features(model, images, cfg, dev, True, True)


def extract_posfeat(
    model, image: np.ndarray, config: ExtractConfig | None = None, device: str | torch.device = "auto"
) -> dict[str, np.ndarray]:
    """PoSFeat features of one RGB uint8 image: ``dict(keypoints, scores, descriptors, image_size)``."""
    return extract_posfeat_batch(model, [image], config, device)[0]


# -------------------------------------------------------------------------------------- datasets
def _prefetch(root: Path, names: Sequence[str], depth: int = 4) -> Iterator[tuple[str, np.ndarray]]:
    """Read images in a background thread, ``depth`` ahead (OpenCV releases the GIL)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        queue: deque = deque()
        it = iter(names)
        for name in it:
            queue.append((name, pool.submit(read_image, root / name)))
            if len(queue) >= depth:
                break
        while queue:
            name, fut = queue.popleft()
            nxt = next(it, None)
            if nxt is not None:
                queue.append((nxt, pool.submit(read_image, root / nxt)))
            yield name, fut.result()


def _batches(
    items: Iterable[tuple[str, np.ndarray]], batch_size: int, max_pixels: int | None = None
) -> Iterator[list[tuple[str, np.ndarray]]]:
    """Consecutive images of equal shape, at most ``batch_size`` (and ``max_pixels`` in all) at a time.

    A single image larger than ``max_pixels`` still forms a batch of one.
    """
    batch: list[tuple[str, np.ndarray]] = []
    for name, img in items:
        if batch:
            full = len(batch) >= batch_size
            too_big = max_pixels is not None and (len(batch) + 1) * img.shape[0] * img.shape[1] > max_pixels
            if full or too_big or img.shape != batch[0][1].shape:
                yield batch
                batch = []
        batch.append((name, img))
    if batch:
        yield batch


def extract_dataset(
    method: str,
    image_root: str | os.PathLike,
    names: Sequence[str],
    out_path: str | os.PathLike,
    model=None,
    config: ExtractConfig | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
    sift_out: str | os.PathLike | None = None,
) -> dict:
    """Extract features of ``names`` (relative to ``image_root``) into one hloc-layout HDF5 file.

    The file appears only when every image succeeded (a corrupt or missing image raises
    :class:`~posfeat.io.DataError` naming it, and nothing is written).

    Args:
        method: ``posfeat`` | ``sift`` | ``rootsift``.
        image_root: folder the names are relative to (the group names in the file).
        names: image names.
        out_path: output ``.h5``.
        model: the PoSFeat model (``method == "posfeat"``), moved to ``device``.
        config: extraction settings.
        device: ``auto`` | ``cpu`` | ``cuda[:N]``.
        progress: show a tqdm bar.
        sift_out: ``posfeat`` only: also write PoSFeat descriptors on OpenCV SIFT keypoints (the file that
            ``config.sift_keypoints`` gives) to this ``.h5``, from the same network calls.

    Returns:
        A summary: method, number of images, keypoints per image (mean/min/max), seconds, images/s (with
        ``sift_out``, ``on_sift_keypoints`` holds the second file's keypoint counts).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    cfg = config or ExtractConfig()
    if sift_out is not None and (method != "posfeat" or cfg.sift_keypoints):
        raise ValueError("sift_out needs method 'posfeat' without config.sift_keypoints")
    dev = resolve_device(device) if isinstance(device, str) or device is None else device
    root = Path(image_root)
    names = list(names)
    if not names:
        raise DataError(f"{root}: no images to extract")
    if method == "posfeat":
        if model is None:
            raise ValueError("method 'posfeat' needs a model")
        model = model.to(dev)
    if cfg.batch_size:
        bs, max_pixels = int(cfg.batch_size), None
    elif dev.type == "cuda":  # up to 8 images, at most 8 × 640×480 pixels per call (memory of the full-res head)
        bs, max_pixels = 8, GPU_BATCH_PIXELS
    else:
        bs, max_pixels = 1, None
    shown = "posfeat_sift" if cfg.sift_keypoints else method
    announce(
        f"extract {shown}" + (" + posfeat_sift" if sift_out is not None else ""),
        dev,
        model if method == "posfeat" else f"OpenCV {method.upper()}",
        f"{len(names)} images under {root}",
    )
    counts: list[int] = []
    sift_counts: list[int] = []
    t0 = time.perf_counter()
    attrs = {"method": method, "config": json.dumps(asdict(cfg))}
    sift_attrs = {"method": method, "config": json.dumps({**asdict(cfg), "sift_keypoints": True})}
    bar = tqdm(total=len(names), desc=f"extract {method}", unit="img", disable=not progress)
    dt = cfg.descriptor_dtype
    with (
        FeatureWriter(out_path, attrs=attrs, descriptor_dtype=dt) as writer,
        (
            FeatureWriter(sift_out, attrs=sift_attrs, descriptor_dtype=dt)
            if sift_out is not None
            else contextlib.nullcontext()
        ) as sift_writer,
    ):
        for batch in _batches(_prefetch(root, names), bs if method == "posfeat" else 1, max_pixels):
            images = [im for _, im in batch]
            on_sift = None
            if sift_writer is not None:
                feats, on_sift = extract_posfeat_and_sift_batch(model, images, cfg, dev)
            elif method == "posfeat":
                feats = extract_posfeat_batch(model, images, cfg, dev)
            else:
                feats = [extract_sift(im, cfg.max_keypoints, root=method == "rootsift") for im in images]
            for (name, _), f in zip(batch, feats):
                _write(writer, name, f)
                counts.append(len(f["keypoints"]))
            for (name, _), f in zip(batch, on_sift or ()):
                _write(sift_writer, name, f)
                sift_counts.append(len(f["keypoints"]))
            bar.update(len(batch))
    bar.close()
    dt = time.perf_counter() - t0
    summary = {
        "method": method,
        "num_images": len(counts),
        **_count_summary(counts),
        "seconds": round(dt, 3),
        "images_per_second": round(len(counts) / dt, 3) if dt > 0 else None,
        "device": str(dev),
        "config": asdict(cfg),
    }
    if sift_out is not None:
        summary["on_sift_keypoints"] = _count_summary(sift_counts)
    logger.info(
        "%s: %d images, %.1f keypoints/image (min %d, max %d), %.1f s → %s%s",
        method,
        len(counts),
        summary["keypoints_mean"],
        summary["keypoints_min"],
        summary["keypoints_max"],
        dt,
        out_path,
        "" if sift_out is None else f" and {sift_out} (on SIFT keypoints)",
    )
    return summary


def _write(writer: FeatureWriter, name: str, f: dict[str, np.ndarray]) -> None:
    """One image's feature dict into ``writer`` (SIFT's ``scales`` and ``oris`` too, when present)."""
    writer.add(
        name,
        f["keypoints"],
        f["scores"],
        f["descriptors"],
        f["image_size"],
        **{k: f[k] for k in ("scales", "oris") if k in f},
    )


def _count_summary(counts: Sequence[int]) -> dict:
    """Mean, min and max keypoints per image."""
    return {
        "keypoints_mean": float(np.mean(counts)),
        "keypoints_min": int(np.min(counts)),
        "keypoints_max": int(np.max(counts)),
    }


def load_model(weights: str | os.PathLike, device: str | torch.device = "auto"):
    """Load a PoSFeat checkpoint onto ``device`` in eval mode."""
    from posfeat.models import load_checkpoint

    dev = resolve_device(device) if isinstance(device, str) else device
    path = Path(weights)
    if not path.is_file():
        raise DataError(f"{path}: PoSFeat checkpoint not found")
    model, _ = load_checkpoint(path, map_location=dev)
    return model.to(dev).eval()


def cli_config(args) -> tuple[ExtractConfig, Path, list[str]]:
    """``(settings, image root, image names)`` of ``posfeat extract``: the study's ``extract.<dataset>`` of
    ``--params`` (when given), overridden by every settings flag given; the images of ``--images``, or of the
    benchmark ``--dataset`` under ``--root`` (default: ``datasets.<dataset>`` of ``--params``, relative to
    that file's folder)."""
    from posfeat.data.benchmarks import benchmark_images
    from posfeat.io import read_yaml_mapping

    if (args.images is None) == (args.dataset is None):
        raise SystemExit("extract: give --images DIR, or --dataset NAME (with --root DIR or --params PARAMS.yaml)")
    if args.params and not args.dataset:
        raise SystemExit("extract: --params needs --dataset (which extract.<dataset> settings to take)")
    settings, exclude, root = {}, (), args.root
    if args.params:
        params = read_yaml_mapping(args.params)
        try:
            settings = dict(params["extract"][args.dataset])
        except (KeyError, TypeError):
            raise DataError(f"{args.params}: no extract.{args.dataset} settings (expected the study's params.yaml)")
        if args.dataset == "hpatches":
            exclude = tuple(((params.get("eval") or {}).get("hpatches") or {}).get("exclude") or ())
        if root is None:
            named = (params.get("datasets") or {}).get(args.dataset)
            if not named:
                raise DataError(f"{args.params}: no datasets.{args.dataset} (give --root DIR)")
            root = Path(args.params).parent / str(named)
    # the settings flags are absent from ``args`` unless given (argparse.SUPPRESS)
    settings.update({f.name: getattr(args, f.name) for f in fields(ExtractConfig) if hasattr(args, f.name)})
    settings["sift_keypoints"] = args.method == "posfeat_sift"
    what = f"{args.params}: extract.{args.dataset}" if args.params else "extract flags"
    cfg = ExtractConfig.from_dict(settings, what=what)
    if args.images is not None:
        return cfg, Path(args.images), list_images(args.images)
    if root is None:
        raise SystemExit("extract: --dataset needs --root DIR (or --params PARAMS.yaml naming datasets.<dataset>)")
    image_root, names = benchmark_images(args.dataset, root, exclude)
    return cfg, image_root, names


def run_cli(args) -> int:
    """``python -m posfeat extract …`` (arguments: :mod:`posfeat.cli`)."""
    get_logger("posfeat")
    if args.posfeat_sift_out and args.method != "posfeat":
        raise SystemExit("--posfeat-sift-out only applies to --method posfeat (it writes posfeat_sift beside it)")
    cfg, image_root, names = cli_config(args)
    model = None
    if args.method in ("posfeat", "posfeat_sift"):
        if not args.weights:
            raise SystemExit(f"extract --method {args.method} needs --weights MODEL.pt")
        model = load_model(args.weights, args.device)
    method = "posfeat" if args.method == "posfeat_sift" else args.method
    summary = extract_dataset(
        method, image_root, names, args.out, model=model, config=cfg, device=args.device, sift_out=args.posfeat_sift_out
    )
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))
    return 0
