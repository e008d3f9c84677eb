"""Camera and epipolar geometry, and the one pixel/feature sampling convention.

Conventions (docs/method.md#conventions):

* pixel coordinates ``(x, y)``: x right, y down, the centre of the top-left pixel is ``(0, 0)``;
* poses are world→camera: ``X_cam = R @ X_world + t``;
* ``F12`` maps a point of image 1 to its epipolar line in image 2 (``l2 = F12 @ x1``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


# --------------------------------------------------------------------------------------- coordinates
def normalize_coords(xy: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Pixels → ``[-1, 1]`` in the *align_corners=True* convention (−1 is pixel 0, +1 is pixel W−1)."""
    scale = xy.new_tensor([(width - 1) / 2.0, (height - 1) / 2.0])
    return xy / scale - 1.0


def denormalize_coords(xy_n: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Inverse of :func:`normalize_coords`."""
    scale = xy_n.new_tensor([(width - 1) / 2.0, (height - 1) / 2.0])
    return (xy_n + 1.0) * scale


def sample_feature_map(
    fmap: torch.Tensor,
    xy: torch.Tensor,
    image_size: tuple[int, int],
    normalize: bool = True,
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """Bilinearly sample a (possibly strided) feature map at image-pixel coordinates.

    This is the single place where PoSFeat's mixed sampling convention lives (docs/method.md#conventions): pixel
    coordinates are normalised with the *align_corners=True* rule over the **image** size, then handed
    to ``grid_sample(align_corners=False)`` over the **feature map**. For a map of width ``Wf`` image
    pixel ``x`` therefore lands at feature coordinate ``x * Wf / (W - 1) - 0.5``. The released weights
    were trained with exactly this mapping.

    Args:
        fmap: ``(B, C, Hf, Wf)`` feature map.
        xy: ``(B, N, 2)`` pixel coordinates in the image that produced ``fmap``.
        image_size: ``(W, H)`` of that image.
        normalize: L2-normalise the sampled vectors (after interpolation).
        padding_mode: ``grid_sample`` padding.

    Returns:
        ``(B, N, C)`` sampled features.
    """
    width, height = image_size
    grid = normalize_coords(xy, width, height).to(fmap.dtype)[:, :, None, :]  # B,N,1,2
    out = F.grid_sample(fmap, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    out = out[:, :, :, 0].transpose(1, 2)  # B,N,C
    if normalize:
        out = F.normalize(out, dim=-1)
    return out


# ------------------------------------------------------------------------------------------- poses
def skew(t: np.ndarray) -> np.ndarray:
    """Cross-product matrix ``[t]x`` with ``[t]x @ v == cross(t, v)``."""
    t = np.asarray(t, dtype=np.float64).reshape(3)
    return np.array([[0.0, -t[2], t[1]], [t[2], 0.0, -t[0]], [-t[1], t[0], 0.0]])


def relative_pose(R1: np.ndarray, t1: np.ndarray, R2: np.ndarray, t2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pose of camera 2 relative to camera 1: ``X_cam2 = R @ X_cam1 + t`` (world→camera inputs)."""
    R = R2 @ R1.T
    t = np.asarray(t2, dtype=np.float64).reshape(3) - R @ np.asarray(t1, dtype=np.float64).reshape(3)
    return R, t


def rotation_angle_deg(R: np.ndarray) -> float:
    """Angle of a rotation matrix in degrees, ``arccos((tr R − 1) / 2)``, clipped for round-off."""
    c = (np.trace(R) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def fundamental_from_poses(K1, R1, t1, K2, R2, t2) -> np.ndarray:
    """``F12 = K2^-T [t]x R K1^-1`` for world→camera poses, scaled so that ``F[2, 2] == 1`` when possible.

    The original divides by ``F[2,2] + 1e-10``; we only rescale when ``|F[2,2]|`` is not tiny, since the
    scale of ``F`` does not change an epipolar line and dividing by ~0 would blow it up.
    """
    R, t = relative_pose(np.asarray(R1, float), t1, np.asarray(R2, float), t2)
    E = skew(t) @ R
    F12 = np.linalg.inv(np.asarray(K2, float)).T @ E @ np.linalg.inv(np.asarray(K1, float))
    if abs(F12[2, 2]) > 1e-8:
        F12 = F12 / F12[2, 2]
    else:
        F12 = F12 / max(np.linalg.norm(F12), 1e-12)
    return F12


def epipolar_distance(x1: torch.Tensor, x2: torch.Tensor, F12: torch.Tensor) -> torch.Tensor:
    """Distance (image-2 pixels) of ``x2`` from the epipolar line ``F12 @ x1``, elementwise.

    ``x1``, ``x2``: ``(..., N, 2)``; ``F12``: ``(..., 3, 3)``. Returns ``(..., N)``.
    ``d = |x2~ . l| / max(||l[:2]||, 1e-8)`` with ``l = F12 @ x1~`` (docs/method.md#conventions).
    """
    ones = torch.ones_like(x1[..., :1])
    l = torch.einsum("...ij,...nj->...ni", F12.to(x1.dtype), torch.cat([x1, ones], -1))
    num = (l[..., 0] * x2[..., 0] + l[..., 1] * x2[..., 1] + l[..., 2]).abs()
    return num / l[..., :2].norm(dim=-1).clamp_min(1e-8)


def epipolar_distance_matrix(x1: torch.Tensor, x2: torch.Tensor, F12: torch.Tensor) -> torch.Tensor:
    """All-pairs version of :func:`epipolar_distance`: ``(..., N1, N2)`` distances of ``x2_j`` from ``F12 x1_i``."""
    ones1 = torch.ones_like(x1[..., :1])
    l = torch.einsum("...ij,...nj->...ni", F12.to(x1.dtype), torch.cat([x1, ones1], -1))  # ...,N1,3
    ones2 = torch.ones_like(x2[..., :1])
    num = torch.einsum("...nk,...mk->...nm", l, torch.cat([x2, ones2], -1)).abs()
    return num / l[..., :2].norm(dim=-1).clamp_min(1e-8)[..., :, None]


def symmetric_epipolar_distance_np(x1: np.ndarray, x2: np.ndarray, F12: np.ndarray) -> np.ndarray:
    """Mean of the two point-to-line distances (pixels), NumPy, for checks on matches ``(N, 2)``."""
    h1 = np.concatenate([x1, np.ones((len(x1), 1))], 1)
    h2 = np.concatenate([x2, np.ones((len(x2), 1))], 1)
    l2 = h1 @ F12.T
    l1 = h2 @ F12
    num = np.abs(np.sum(h2 * l2, 1))
    d2 = num / np.maximum(np.linalg.norm(l2[:, :2], axis=1), 1e-12)
    d1 = num / np.maximum(np.linalg.norm(l1[:, :2], axis=1), 1e-12)
    return 0.5 * (d1 + d2)


def apply_homography_np(H: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Project pixel points ``(N, 2)`` through a 3×3 homography."""
    h = np.concatenate([np.asarray(xy, float), np.ones((len(xy), 1))], 1) @ np.asarray(H, float).T
    return h[:, :2] / h[:, 2:3]
