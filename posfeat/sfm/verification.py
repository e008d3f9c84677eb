"""COLMAP's two-view geometric verification through pycolmap: its options, the run, and what it found.

* :func:`two_view_geometry_options` seeds COLMAP's defaults (or hloc's RANSAC settings);
* :func:`verify_pairs` verifies the matched pairs of a pair list (COLMAP's ``matches_importer``);
* :func:`verification_stats` reads back the number of verified pairs and inlier matches, and
  :func:`verification_report` why pairs pass or fail (configuration types, inlier ratios).

The database and its raw matches are :mod:`posfeat.sfm.colmap`'s; matching is :mod:`posfeat.sfm.matching`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pycolmap

from posfeat.io import DataError
from posfeat.sfm.colmap import read_matches


def two_view_geometry_options(
    max_error: float = 4.0,
    min_num_inliers: int = 15,
    seed: int | None = 0,
    num_threads: int = -1,
    max_num_trials: int | None = None,
    min_inlier_ratio: float | None = None,
) -> pycolmap.TwoViewGeometryOptions:
    """COLMAP's default verification options (RANSAC max error 4 px, 15 inliers), seeded.

    ``max_num_trials`` / ``min_inlier_ratio``: RANSAC's trial cap and the inlier ratio it plans for
    (None: COLMAP's 10000 / 0.25; hloc verifies with 20000 / 0.1).
    ``num_threads`` is accepted for compatibility and unused: ``pycolmap.verify_matches`` picks its threads.
    """
    opts = pycolmap.TwoViewGeometryOptions()
    opts.ransac.max_error = float(max_error)
    opts.min_num_inliers = int(min_num_inliers)
    if max_num_trials is not None:
        opts.ransac.max_num_trials = int(max_num_trials)
        opts.ransac.min_num_trials = min(int(opts.ransac.min_num_trials), int(max_num_trials))
    if min_inlier_ratio is not None:
        opts.ransac.min_inlier_ratio = float(min_inlier_ratio)
    if seed is not None:
        opts.ransac.random_seed = int(seed)
    return opts


def verify_pairs(
    database_path: str | os.PathLike,
    pairs_path: str | os.PathLike,
    options: pycolmap.TwoViewGeometryOptions | None = None,
) -> None:
    """Two-view geometric verification of the matched pairs listed in ``pairs_path`` (``matches_importer``)."""
    if not Path(pairs_path).is_file():
        raise DataError(f"{pairs_path}: pair list not found")
    pycolmap.verify_matches(str(database_path), str(pairs_path), options or two_view_geometry_options())


@dataclass
class VerificationStats:
    """What the ETH benchmark reports after ``matches_importer``."""

    num_matched_pairs: int = 0
    num_matches: int = 0
    num_inlier_pairs: int = 0
    num_inlier_matches: int = 0
    inliers_per_pair: dict[tuple[int, int], int] = field(default_factory=dict)


def verification_stats(db: pycolmap.Database) -> VerificationStats:
    """Raw and verified pair/match counts (a pair counts as verified when it has ≥ 1 inlier match)."""
    stats = VerificationStats()
    pair_ids, counts = db.read_num_matches()
    stats.num_matched_pairs = int(sum(1 for c in counts if c > 0))
    stats.num_matches = int(sum(counts))
    pair_ids, inliers = db.read_two_view_geometry_num_inliers()
    for pid, n in zip(pair_ids, inliers):
        if n > 0:
            stats.num_inlier_pairs += 1
            stats.num_inlier_matches += int(n)
            stats.inliers_per_pair[tuple(int(i) for i in pycolmap.pair_id_to_image_pair(pid))] = int(n)
    return stats


def verification_report(db: pycolmap.Database, pairs: Iterable[tuple[int, int]], min_num_inliers: int = 15) -> dict:
    """Why pairs pass or fail two-view verification: pairs per configuration type, inlier ratios.

    For every ``(image_id1, image_id2)`` of ``pairs`` (the matched pairs): the configuration COLMAP
    stored (``CALIBRATED``, ``UNCALIBRATED``, ``PLANAR``…, ``DEGENERATE`` when RANSAC found no model
    with ``min_num_inliers`` inliers, ``NONE`` when nothing was written) and the inlier ratio
    (verified inliers / raw matches). Returns ``{"configs": {name: pairs}, "verified_pairs",
    "failed_pairs", "inlier_ratio_verified": {min, median, max}, "inlier_ratio_failed": …,
    "raw_matches_failed_median"}``.
    """
    configs: dict[str, int] = {}
    ratios_ok: list[float] = []
    ratios_bad: list[float] = []
    raw_bad: list[int] = []
    for i1, i2 in pairs:
        n_raw = len(read_matches(db, i1, i2))
        if db.exists_two_view_geometry(int(i1), int(i2)):
            tvg = db.read_two_view_geometry(int(i1), int(i2))
            name = pycolmap.TwoViewGeometryConfiguration(tvg.config).name
            n_in = len(np.asarray(tvg.inlier_matches).reshape(-1, 2))
        else:
            name, n_in = "NONE", 0
        configs[name] = configs.get(name, 0) + 1
        ratio = n_in / n_raw if n_raw else 0.0
        if n_in >= min_num_inliers:
            ratios_ok.append(ratio)
        else:
            ratios_bad.append(ratio)
            raw_bad.append(n_raw)

    def summary(v: list[float]) -> dict[str, float | None]:
        if not v:
            return {"min": None, "median": None, "max": None}
        return {
            "min": round(float(np.min(v)), 4),
            "median": round(float(np.median(v)), 4),
            "max": round(float(np.max(v)), 4),
        }

    return {
        "configs": dict(sorted(configs.items())),
        "verified_pairs": len(ratios_ok),
        "failed_pairs": len(ratios_bad),
        "inlier_ratio_verified": summary(ratios_ok),
        "inlier_ratio_failed": summary(ratios_bad),
        "raw_matches_failed_median": float(np.median(raw_bad)) if raw_bad else None,
    }


__all__ = [
    "VerificationStats",
    "two_view_geometry_options",
    "verify_pairs",
    "verification_stats",
    "verification_report",
]
