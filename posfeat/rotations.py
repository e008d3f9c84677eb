"""In-plane rotated views of an image, for test-time rotation pooling (``extract.*.rotations``).

A view is the image rotated by an angle about its centre on a canvas of the same size (the corners that
leave the canvas are lost; the canvas corners that the image no longer covers are filled by reflection and
never give keypoints). The network is upright, as the paper's: running it on a few rotated views and
pooling their keypoints, each mapped back to image pixels with its own descriptor, lets two images rotated
by about one view step match (the official upright detector otherwise gets nothing at 40°).

Affine maps are ``2×3`` float64 matrices acting on pixel coordinates (centre of the top-left pixel at
``(0, 0)``, x right, y down): ``view = A @ [x, y, 1]``.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch


def rotation_matrix(width: int, height: int, degrees: float) -> np.ndarray:
    """The ``2×3`` map from image pixels to the pixels of the view rotated by ``degrees`` (counter-clockwise
    as displayed) about the image centre ``((W − 1)/2, (H − 1)/2)``, on the same canvas."""
    return cv2.getRotationMatrix2D(((width - 1) / 2.0, (height - 1) / 2.0), float(degrees), 1.0)


def rotate_image(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``image`` (``H×W`` or ``H×W×C`` uint8) warped by ``matrix`` onto its own canvas (bilinear; reflected
    border, so that no artificial black edge makes keypoints)."""
    h, w = image.shape[:2]
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def invert(matrix: np.ndarray) -> np.ndarray:
    """The inverse ``2×3`` affine map."""
    return cv2.invertAffineTransform(np.asarray(matrix, np.float64))


def apply(matrix: np.ndarray, xy: torch.Tensor) -> torch.Tensor:
    """``(N, 2)`` points mapped by the ``2×3`` ``matrix`` (computed in float64, returned as float32)."""
    m = torch.as_tensor(np.asarray(matrix, np.float64), device=xy.device)
    return (xy.double() @ m[:, :2].T + m[:, 2]).float()


def inside(xy: torch.Tensor, width: int, height: int, margin: float) -> torch.Tensor:
    """``(N,)`` bool: the points at least ``margin`` pixels inside the ``width × height`` image."""
    x, y = xy[:, 0], xy[:, 1]
    return (x >= margin) & (y >= margin) & (x <= width - 1 - margin) & (y <= height - 1 - margin)
