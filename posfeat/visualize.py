"""Training visualisations: matches coloured by epipolar error, score maps.

Everything returns ``H×W×3`` uint8 RGB arrays (what ``dvclive.Live.log_image`` takes). Colour maps come
from ``matplotlib.colormaps[...]`` (``cm.get_cmap`` is gone in Matplotlib ≥ 3.9) and
OpenCV draws with integer coordinates (modern OpenCV rejects float tuples).
"""

from __future__ import annotations

import cv2
import matplotlib
import numpy as np
import torch
import torch.nn.functional as F

from posfeat.geometry import epipolar_distance, sample_feature_map
from posfeat.matching import match_descriptors

GAP = 20  # px of black between the two images (as the original)


def to_uint8(img: torch.Tensor | np.ndarray) -> np.ndarray:
    """``3×H×W`` float in [0, 1] (tensor) or ``H×W×3`` array → ``H×W×3`` uint8."""
    if isinstance(img, torch.Tensor):
        img = img.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
        return (img * 255.0 + 0.5).astype(np.uint8)
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = (np.clip(img, 0, 1) * 255.0 + 0.5).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return img


def side_by_side(img1: np.ndarray, img2: np.ndarray, gap: int = GAP) -> np.ndarray:
    """Two ``H×W×3`` uint8 images next to each other with a black gap (heights may differ)."""
    h = max(img1.shape[0], img2.shape[0])
    out = np.zeros((h, img1.shape[1] + gap + img2.shape[1], 3), np.uint8)
    out[: img1.shape[0], : img1.shape[1]] = img1
    out[: img2.shape[0], img1.shape[1] + gap :] = img2
    return out


def colorize(
    values: np.ndarray, cmap: str = "coolwarm", vmin: float | None = None, vmax: float | None = None
) -> np.ndarray:
    """Map an array of scalars to uint8 RGB with a Matplotlib colour map (``...×3``)."""
    values = np.asarray(values, np.float64)
    finite = values[np.isfinite(values)]
    lo = float(vmin) if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = float(vmax) if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    norm = (values - lo) / max(hi - lo, 1e-12)
    rgba = matplotlib.colormaps[cmap](np.clip(norm, 0.0, 1.0))
    return (rgba[..., :3] * 255.0 + 0.5).astype(np.uint8)


def error_colors(errors: np.ndarray, max_error: float = 5.0) -> np.ndarray:
    """``RdYlGn`` colours for epipolar errors: green at 0 px, red at ``max_error`` px and beyond."""
    e = np.clip(np.asarray(errors, np.float64), 0.0, max_error)
    return colorize(max_error - e, "RdYlGn", vmin=0.0, vmax=max_error)


def draw_matches(
    img1: np.ndarray,
    img2: np.ndarray,
    kp1: np.ndarray,
    kp2: np.ndarray,
    errors: np.ndarray,
    max_error: float = 5.0,
    gap: int = GAP,
    radius: int = 2,
) -> np.ndarray:
    """Side-by-side image with one line per match, coloured by its epipolar error (``RdYlGn``)."""
    canvas = side_by_side(img1, img2, gap)
    off = img1.shape[1] + gap
    colors = error_colors(errors, max_error)
    order = np.argsort(-np.asarray(errors))  # draw the good (green) ones last, on top
    for i in order:
        c = tuple(int(v) for v in colors[i])
        p1 = (int(round(kp1[i, 0])), int(round(kp1[i, 1])))
        p2 = (int(round(kp2[i, 0])) + off, int(round(kp2[i, 1])))
        cv2.line(canvas, p1, p2, c, 1, cv2.LINE_AA)
        cv2.circle(canvas, p1, radius, c, -1, cv2.LINE_AA)
        cv2.circle(canvas, p2, radius, c, -1, cv2.LINE_AA)
    return canvas


def score_maps_image(
    score1: torch.Tensor | np.ndarray, score2: torch.Tensor | np.ndarray, cmap: str = "coolwarm", gap: int = GAP
) -> np.ndarray:
    """Two detector score maps (``H×W``), each colour-mapped over ``[0, its max]``, side by side."""
    ims = []
    for s in (score1, score2):
        s = s.detach().float().cpu().numpy() if isinstance(s, torch.Tensor) else np.asarray(s, np.float64)
        s = s.reshape(s.shape[-2], s.shape[-1])
        ims.append(colorize(s, cmap, vmin=0.0, vmax=max(float(s.max()), 1e-12)))
    return side_by_side(ims[0], ims[1], gap)


def sift_keypoints(img: np.ndarray, max_keypoints: int = 1024) -> np.ndarray:
    """OpenCV SIFT keypoint locations ``(N, 2)`` float32 of an ``H×W×3`` uint8 RGB image."""
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    kps = cv2.SIFT_create(nfeatures=max_keypoints).detect(gray, None)
    if not kps:
        return np.zeros((0, 2), np.float32)
    return np.array([k.pt for k in kps], np.float32)[:max_keypoints]


def topk_keypoints(score: torch.Tensor, k: int = 1024, nms_radius: int = 1) -> torch.Tensor:
    """The ``k`` best local maxima (``(2r+1)²`` NMS) of a ``1×H×W`` or ``H×W`` score map, ``(N, 2)`` xy."""
    s = score.detach().float().reshape(1, 1, score.shape[-2], score.shape[-1])
    peak = F.max_pool2d(s, 2 * nms_radius + 1, stride=1, padding=nms_radius)
    s = torch.where(s == peak, s, torch.full_like(s, -1.0)).flatten()
    vals, idx = s.topk(min(k, s.numel()))
    idx = idx[vals >= 0]
    w = score.shape[-1]
    return torch.stack([idx % w, idx // w], dim=1).float()


@torch.no_grad()
def match_visualization(
    img1: torch.Tensor,
    img2: torch.Tensor,
    fmap1: torch.Tensor,
    fmap2: torch.Tensor,
    kp1: torch.Tensor,
    kp2: torch.Tensor,
    F12: torch.Tensor,
    max_error: float = 5.0,
) -> tuple[np.ndarray, dict[str, float]]:
    """Mutual-NN matches of descriptors sampled at keypoints, drawn and scored by epipolar error.

    Args:
        img1, img2: ``3×H×W`` images in [0, 1]; fmap1, fmap2: ``D×h×w`` raw descriptor maps;
        kp1, kp2: ``(N, 2)`` pixel keypoints; F12: ``3×3``.

    Returns:
        the picture and ``{"matches": M, "precision": fraction of matches with error < max_error px,
        "median_error": px}``.
    """
    size = (img1.shape[-1], img1.shape[-2])
    d1 = sample_feature_map(fmap1[None].float(), kp1[None].to(fmap1.device).float(), size)[0]
    d2 = sample_feature_map(fmap2[None].float(), kp2[None].to(fmap2.device).float(), size)[0]
    m = match_descriptors(d1, d2, mutual=True)
    x1 = kp1.cpu().float()[m[:, 0]]
    x2 = kp2.cpu().float()[m[:, 1]]
    err = epipolar_distance(x1, x2, F12.cpu().float()).numpy() if len(m) else np.zeros(0)
    pic = draw_matches(to_uint8(img1), to_uint8(img2), x1.numpy(), x2.numpy(), err, max_error)
    stats = {
        "matches": float(len(m)),
        "precision": float(np.mean(err < max_error)) if len(m) else 0.0,
        "median_error": float(np.median(err)) if len(m) else float("nan"),
    }
    return pic, stats
