"""OpenCV SIFT and RootSIFT features in the study's conventions.

OpenCV's default parameters with ``enable_precise_upscale``: OpenCV's default pyramid reports every keypoint
+0.25 px (x and y) off in our pixel convention (measured; see :func:`_sift_detector`), the precise upscale
removes that bias. Scores are the SIFT responses.
"""

from __future__ import annotations

import cv2
import numpy as np


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
