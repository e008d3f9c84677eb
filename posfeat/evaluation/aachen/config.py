"""The Aachen localization pipeline's settings: :class:`AachenConfig` (params.yaml ``eval.aachen``), with the
command-line help of each field (``metadata["help"]``, read by :mod:`posfeat.cli.flags`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from posfeat.settings import config_from_dict, setting

FALLBACKS = ("identity", "best_db")
QUERY_MATCHES = ("verified", "raw")


@dataclass
class AachenConfig:
    """Settings of the localization pipeline (params.yaml ``eval.aachen``)."""

    min_matches: int = setting(12, "2D-3D correspondences a query needs before its pose is estimated (paper: 30)")
    min_inliers: int = setting(10, "absolute-pose RANSAC inliers a localized query needs (image_registrator: 30)")
    min_inlier_ratio: float = setting(
        0.0, "inliers / correspondences a localized query needs (image_registrator: 0.25)"
    )
    max_reprojection_error: float = setting(12.0, "px, LO-RANSAC inlier threshold of the absolute pose")
    mutual: bool = setting(True, "mutual nearest neighbours (the official pipeline)")
    ratio: float | None = setting(None, "Lowe ratio on both sides of the matches (the official pipeline: none)")
    query_matches: str = setting(
        "verified",
        "query-database matches used: verified by two-view geometry (as image_registrator) or raw (as hloc)",
        QUERY_MATCHES,
    )
    verification_max_error: float = setting(4.0, "px, two-view RANSAC threshold (COLMAP default)")
    verification_min_inliers: int = setting(15, "inliers a verified pair needs (COLMAP default)")
    verification_max_trials: int = setting(10000, "two-view RANSAC trials per model (E, F, H; COLMAP default)")
    fallback: str = setting(
        "identity", "pose written for a query that is not localized: identity | best_db (its best match)", FALLBACKS
    )
    seed: int = setting(0, "RANSAC seed (verification, triangulation, absolute pose)", param="seed")

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
    def from_dict(cls, d: Mapping | None, what: str = "eval.aachen") -> "AachenConfig":
        """From params mapping ``what``; unknown keys are an error naming them."""
        return config_from_dict(cls, d, what)
