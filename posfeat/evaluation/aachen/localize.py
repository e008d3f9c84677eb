"""Query localization against the triangulated Aachen reference (docs/method.md#aachen-day-night-localization).

Each query is localized from its 2D–3D correspondences — its (verified or raw) matches to db keypoints that
have a 3D point (:func:`query_correspondences`) — with ``pycolmap.estimate_and_refine_absolute_pose``
(LO-RANSAC + refinement, the query intrinsics fixed; :func:`localize`). This replaces ``image_registrator``,
which would also refine the model. A query with fewer than ``min_matches`` correspondences, or whose
estimation fails or keeps fewer than ``min_inliers`` inliers, is not localized and gets the fallback pose.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pycolmap
from tqdm import tqdm

from posfeat.datasets.aachen import QueryCamera
from posfeat.io import DataError, FeatureReader
from posfeat.sfm import colmap, steps
from posfeat.utils import get_logger

if TYPE_CHECKING:
    from posfeat.evaluation.aachen.config import AachenConfig

log = get_logger(__name__)


@dataclass
class QueryResult:
    """The outcome of one query."""

    name: str
    condition: str
    localized: bool
    qvec: np.ndarray  # (qw, qx, qy, qz), world→camera (the fallback pose when not localized)
    tvec: np.ndarray
    num_correspondences: int = 0
    num_inliers: int = 0
    seconds: float = 0.0


def point3D_lookup(rec: pycolmap.Reconstruction, image_id: int) -> np.ndarray:
    """Point3D id of every keypoint of a registered image (−1 where the keypoint has no 3D point)."""
    im = rec.image(image_id)
    lut = np.full(im.num_points2D(), -1, np.int64)
    for k in im.get_observation_point2D_idxs():
        lut[int(k)] = int(im.point2D(int(k)).point3D_id)
    return lut


def query_correspondences(
    rec: pycolmap.Reconstruction,
    db: pycolmap.Database,
    query_id: int,
    db_ids: Sequence[int],
    verified: bool = True,
    lookup_cache: dict[int, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    """2D–3D correspondences of a query: its matches to db keypoints that have a 3D point.

    Args:
        rec: the triangulated reference.
        db: the database holding the query–db matches.
        query_id, db_ids: database ids of the query and of its listed db images.
        verified: use the geometrically verified matches (else the raw ones).
        lookup_cache: ``{db image id: point3D_lookup}`` shared across queries.

    Returns:
        ``(query keypoint indices K, point3D ids K, {db image id: number of matches})``; a
        (keypoint, point) pair seen through several db images is kept once, in first-seen order.
    """
    cache = {} if lookup_cache is None else lookup_cache
    pairs: list[np.ndarray] = []
    counts: dict[int, int] = {}
    for d in db_ids:
        m = colmap.read_inlier_matches(db, query_id, d) if verified else colmap.read_matches(db, query_id, d)
        counts[d] = len(m)
        if not len(m) or not rec.exists_image(d):
            continue
        if d not in cache:
            cache[d] = point3D_lookup(rec, d)
        lut = cache[d]
        if m[:, 1].max() >= len(lut):
            raise DataError(f"matches of images {query_id}-{d} index keypoint {m[:, 1].max()} beyond {len(lut)}")
        pid = lut[m[:, 1]]
        keep = pid >= 0
        pairs.append(np.stack([m[keep, 0], pid[keep]], 1))
    if not pairs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), counts
    allp = np.concatenate(pairs)
    _, first = np.unique(allp, axis=0, return_index=True)
    allp = allp[np.sort(first)]
    return allp[:, 0].astype(np.int64), allp[:, 1].astype(np.int64), counts


def localize(
    points2D: np.ndarray,
    points3D: np.ndarray,
    camera: pycolmap.Camera,
    max_error: float = 12.0,
    seed: int = 0,
) -> dict | None:
    """Absolute pose (LO-RANSAC + refinement, intrinsics fixed) from COLMAP-convention 2D points.

    Returns pycolmap's dict (``cam_from_world``, ``num_inliers``, ``inlier_mask``) or None on failure.
    """
    est = pycolmap.AbsolutePoseEstimationOptions()
    est.ransac.max_error = float(max_error)
    est.ransac.random_seed = int(seed)
    ref = pycolmap.AbsolutePoseRefinementOptions()
    ref.refine_focal_length = False
    ref.refine_extra_params = False
    return pycolmap.estimate_and_refine_absolute_pose(
        np.ascontiguousarray(points2D, np.float64), np.ascontiguousarray(points3D, np.float64), camera, est, ref
    )


def localize_queries(
    queries: Sequence[QueryCamera],
    query_pairs: Sequence[tuple[str, str]],
    image_ids: Mapping[str, int],
    rec: pycolmap.Reconstruction,
    reference: pycolmap.Reconstruction,
    db_path: Path,
    features_path: str | os.PathLike,
    cfg: "AachenConfig",
    progress: bool = True,
    keys: Mapping[str, str] | None = None,
) -> list[QueryResult]:
    """Localize each query against the triangulated reference ``rec`` (one :class:`QueryResult` each).

    A query with fewer than ``cfg.min_matches`` 2D–3D correspondences, or whose pose has fewer than
    ``cfg.min_inliers`` inliers or an inlier ratio below ``cfg.min_inlier_ratio``, is not localized and gets the
    fallback pose.
    """
    db_of_query: dict[str, list[int]] = {q.name: [] for q in queries}
    for qn, dn in query_pairs:
        if image_ids[dn] not in db_of_query[qn]:
            db_of_query[qn].append(image_ids[dn])
    results: list[QueryResult] = []
    lookup: dict[int, np.ndarray] = {}
    with steps.open_database(db_path) as db, FeatureReader(features_path) as features:
        for qi, q in enumerate(tqdm(queries, desc="localize", unit="query", disable=not progress)):
            tq = time.perf_counter()
            kq, pid, counts = query_correspondences(
                rec, db, image_ids[q.name], db_of_query[q.name], cfg.query_matches == "verified", lookup
            )
            qvec, tvec = np.array([1.0, 0.0, 0.0, 0.0]), np.zeros(3)
            if cfg.fallback == "best_db" and counts and max(counts.values()) > 0:
                best = max(counts, key=lambda d: (counts[d], -d))
                qvec, tvec = colmap.rigid_to_qvec_tvec(reference.image(best).cam_from_world())
            res = QueryResult(q.name, q.condition, False, qvec, tvec, num_correspondences=len(kq))
            if len(kq) >= cfg.min_matches:
                xy = colmap.to_colmap_keypoints(features.keypoints((keys or {}).get(q.name, q.name))[kq])
                X = np.stack([rec.point3D(int(p)).xyz for p in pid])
                out = localize(xy, X, q.to_pycolmap(), cfg.max_reprojection_error, cfg.seed + qi)
                res.num_inliers = int(out["num_inliers"]) if out is not None else 0
                if res.num_inliers >= cfg.min_inliers and res.num_inliers >= cfg.min_inlier_ratio * len(kq):
                    res.localized = True
                    res.qvec, res.tvec = colmap.rigid_to_qvec_tvec(out["cam_from_world"])
            res.seconds = time.perf_counter() - tq
            log.debug(
                "%s: %d correspondences, %s",
                q.name,
                len(kq),
                f"{res.num_inliers} inliers" if res.localized else "not localized",
            )
            results.append(res)
    return results


__all__ = ["QueryResult", "point3D_lookup", "query_correspondences", "localize", "localize_queries"]
