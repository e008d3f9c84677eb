"""The one camera of the project: a pinhole with a world→camera pose (numpy only), and the rotation
parametrisations the dataset formats use (quaternions ``(w, x, y, z)`` as COLMAP and Aachen write them).

Pixels follow the project's convention (docs/method.md#conventions): the centre of the top-left pixel is at
``(0, 0)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Camera:
    """A pinhole camera with a world→camera pose: ``X_cam = R @ X_world + t``, ``x ~ K X_cam``."""

    name: str
    width: int
    height: int
    K: np.ndarray  # (3, 3) float64
    R: np.ndarray  # (3, 3) float64
    t: np.ndarray  # (3,) float64

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates, ``-R^T t``."""
        return -self.R.T @ self.t

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``."""
        return self.width, self.height

    def to_dict(self) -> dict:
        """JSON-friendly ``{"width", "height", "K", "R", "t"}`` (the pair-index entry)."""
        return {
            "width": int(self.width),
            "height": int(self.height),
            "K": self.K.tolist(),
            "R": self.R.tolist(),
            "t": self.t.tolist(),
        }


def is_rotation(R: np.ndarray, tol: float = 1e-3) -> bool:
    """True iff ``R`` is orthonormal with determinant +1 (within ``tol``)."""
    R = np.asarray(R, float)
    return R.shape == (3, 3) and np.allclose(R @ R.T, np.eye(3), atol=tol) and abs(np.linalg.det(R) - 1) < tol


def qvec_to_rotmat(q) -> np.ndarray:
    """Unit quaternion ``(w, x, y, z)`` → rotation matrix (COLMAP/Aachen convention)."""
    w, x, y, z = np.asarray(q, float) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """Rotation matrix → unit quaternion ``(w, x, y, z)`` with ``w >= 0``."""
    from scipy.spatial.transform import Rotation

    x, y, z, w = Rotation.from_matrix(np.asarray(R, float)).as_quat()
    q = np.array([w, x, y, z])
    return q if q[0] >= 0 else -q
