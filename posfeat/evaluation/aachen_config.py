"""The Aachen localization pipeline's settings: :class:`AachenConfig` (params.yaml ``eval.aachen``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from posfeat.settings import config_from_dict

FALLBACKS = ("identity", "best_db")
QUERY_MATCHES = ("verified", "raw")


@dataclass
class AachenConfig:
    """Settings of the localization pipeline (params.yaml ``eval.aachen``)."""

    min_matches: int = 12  # 2D–3D correspondences a query needs before pose estimation is tried
    min_inliers: int = 10  # RANSAC inliers a pose needs to count as localized (COLMAP image_registrator: 30)
    min_inlier_ratio: float = 0.0  # inliers / correspondences a pose needs (COLMAP image_registrator: 0.25)
    max_reprojection_error: float = 12.0  # LO-RANSAC inlier threshold (px) of the absolute pose
    mutual: bool = True  # mutual nearest neighbours (the official pipeline)
    ratio: float | None = None  # optional Lowe ratio (the official pipeline: none)
    query_matches: str = "verified"  # 'verified' (as image_registrator) | 'raw' (as hloc) query–db matches
    verification_max_error: float = 4.0  # two-view RANSAC error (px), COLMAP default
    verification_min_inliers: int = 15  # COLMAP default
    verification_max_trials: int = 10000  # RANSAC trials per model (E, F, H), COLMAP default
    fallback: str = "identity"  # pose of a query that is not localized: 'identity' | 'best_db'
    seed: int = 0  # RANSAC seeds (verification, triangulation, absolute pose)

    def __post_init__(self) -> None:
        if self.query_matches not in QUERY_MATCHES:
            raise ValueError(f"query_matches must be one of {QUERY_MATCHES}, got {self.query_matches!r}")
        if self.fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {self.fallback!r}")
        if self.min_matches < 4:
            raise ValueError(
                f"min_matches must be >= 4 (a pose needs at least 4 correspondences), got {self.min_matches}"
            )
        if self.min_inliers < 4:
            raise ValueError(f"min_inliers must be >= 4, got {self.min_inliers}")
        if not 0.0 <= self.min_inlier_ratio <= 1.0:
            raise ValueError(f"min_inlier_ratio must be in [0, 1], got {self.min_inlier_ratio}")
        if self.max_reprojection_error <= 0:
            raise ValueError(f"max_reprojection_error must be > 0, got {self.max_reprojection_error}")

    @classmethod
    def from_dict(cls, d: Mapping | None) -> "AachenConfig":
        """From a params mapping; unknown keys are an error naming them."""
        return config_from_dict(cls, d, "eval.aachen")
