"""Aachen Day-Night localization with pycolmap: the visuallocalization.net pipeline
(docs/method.md#aachen-day-night-localization).

The steps of the official pipeline (COLMAP command-line tools there, pycolmap here):

1. the reference model (``3D-models/aachen_v_1_1`` or the v1.0 NVM + intrinsics, :mod:`posfeat.data.aachen`)
   gives the database images, their cameras and their fixed poses; its 3D points are dropped;
2. a fresh COLMAP database gets the reference cameras/images (same ids) and the queries with their
   intrinsics, and every image's keypoints from the feature file (``+0.5`` to COLMAP's pixel convention);
3. every listed pair (``others/image_pairs_to_match*.txt``) is matched with mutual nearest neighbours
   (:mod:`posfeat.matching`) and the raw matches are written to the database;
4. two-view geometric verification of all the pairs (``matches_importer``);
5. the fixed-pose reference is triangulated (``point_triangulator``: ``pycolmap.triangulate_points``,
   intrinsics not refined);
6. each query is localized from its 2D–3D correspondences — its (verified) matches to db keypoints that
   have a 3D point — with ``pycolmap.estimate_and_refine_absolute_pose`` (LO-RANSAC + refinement, the
   query intrinsics fixed). This replaces ``image_registrator``, which would also refine the model.
   A query with fewer than ``min_matches`` correspondences, or whose estimation fails or keeps fewer
   than ``min_inliers`` inliers, is not localized;
7. the benchmark's submission file ``basename qw qx qy qz tx ty tz`` (world→camera, COLMAP convention)
   lists EVERY query; a query that was not localized gets the fallback pose (identity by default).

The work folder (database, ``pairs.txt``, ``triangulated/``) is emptied at the start of every run.

Where the root has ``queries/ground_truth_queries.txt`` (our demo does; the real release withholds the
query poses) the recall at (0.25 m, 2°), (0.5 m, 5°) and (5 m, 10°) is computed per condition, in percent
like the benchmark's site: position error = distance of the camera centres, rotation error = angle of
``R_est·R_gtᵀ``.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pycolmap
from tqdm import tqdm

from posfeat import colmap
from posfeat.data.aachen import (
    AachenLayout,
    QueryCamera,
    load_queries,
    load_reference,
    read_ground_truth,
    read_pair_list,
)
from posfeat.evaluation import sfm
from posfeat.feature_names import resolve_feature_names
from posfeat.geometry import qvec_to_rotmat, rotation_angle_deg
from posfeat.io import DataError, FeatureReader, atomic_path, feature_method_name, fresh_workdir
from posfeat.utils import announce, config_from_dict, get_logger, resolve_device

log = get_logger(__name__)

#: (position in metres, rotation in degrees) thresholds of the benchmark, and their metric keys.
THRESHOLDS: tuple[tuple[float, float], ...] = ((0.25, 2.0), (0.5, 5.0), (5.0, 10.0))
CONDITIONS = ("day", "night")
FALLBACKS = ("identity", "best_db")
QUERY_MATCHES = ("verified", "raw")


def threshold_key(position_m: float, rotation_deg: float) -> str:
    """Metric key of a threshold pair, e.g. ``(0.25, 2) → "0.25m_2deg"``."""
    return f"{position_m:g}m_{rotation_deg:g}deg"


@dataclass
class AachenConfig:
    """Settings of the localization pipeline (params.yaml ``eval.aachen``)."""

    min_matches: int = 12  # 2D–3D correspondences a query needs before pose estimation is tried
    min_inliers: int = 10  # RANSAC inliers a pose needs to count as localized
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
        if self.max_reprojection_error <= 0:
            raise ValueError(f"max_reprojection_error must be > 0, got {self.max_reprojection_error}")

    @classmethod
    def from_dict(cls, d: Mapping | None) -> "AachenConfig":
        """From a params mapping; unknown keys are an error naming them."""
        return config_from_dict(cls, d, "eval.aachen")


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


@dataclass
class AachenResult:
    """Everything :func:`evaluate_aachen` measured."""

    queries: list[QueryResult]
    metrics: dict
    timings: dict[str, float] = field(default_factory=dict)
    stats: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------ pose errors
def pose_error(
    qvec_est: Sequence[float], tvec_est: Sequence[float], qvec_gt: Sequence[float], tvec_gt: Sequence[float]
) -> tuple[float, float]:
    """(position error in model units, rotation error in degrees) of a world→camera pose.

    The position error is the distance between the camera centres ``−Rᵀt``; the rotation error is the
    angle of ``R_est·R_gtᵀ``.
    """
    R_est, R_gt = qvec_to_rotmat(np.asarray(qvec_est, float)), qvec_to_rotmat(np.asarray(qvec_gt, float))
    c_est = -R_est.T @ np.asarray(tvec_est, float).reshape(3)
    c_gt = -R_gt.T @ np.asarray(tvec_gt, float).reshape(3)
    return float(np.linalg.norm(c_est - c_gt)), float(rotation_angle_deg(R_est @ R_gt.T))


def localization_recall(
    results: Sequence[QueryResult],
    ground_truth: Mapping[str, tuple[np.ndarray, np.ndarray]] | None,
    thresholds: Sequence[tuple[float, float]] = THRESHOLDS,
) -> dict:
    """Metrics per condition: recall (percent of the condition's queries) at each threshold, counts.

    Returns ``{day|night: {"0.25m_2deg": %, "0.5m_5deg": %, "5m_10deg": %, "localized": n, "queries": n},
    "localized": n, "queries": n}``; the recall keys only when ``ground_truth`` is given (every query
    must then have a ground-truth pose). The submitted pose is scored, whether localized or fallback.
    """
    out: dict = {}
    for cond in CONDITIONS:
        rs = [r for r in results if r.condition == cond]
        if not rs:
            continue
        m: dict = {}
        if ground_truth is not None:
            missing = [r.name for r in rs if r.name not in ground_truth]
            if missing:
                raise DataError(f"no ground-truth pose for {len(missing)} {cond} queries, e.g. {missing[:3]}")
            errs = np.array([pose_error(r.qvec, r.tvec, *ground_truth[r.name]) for r in rs]).reshape(-1, 2)
            for dt, dr in thresholds:
                ok = (errs[:, 0] <= dt) & (errs[:, 1] <= dr)
                m[threshold_key(dt, dr)] = round(100.0 * float(ok.mean()), 3)
        m["localized"] = int(sum(r.localized for r in rs))
        m["queries"] = len(rs)
        out[cond] = m
    out["localized"] = int(sum(r.localized for r in results))
    out["queries"] = len(results)
    return out


# ------------------------------------------------------------------------------------ submission
def write_submission(path: str | os.PathLike, results: Iterable[QueryResult]) -> int:
    """Write ``basename qw qx qy qz tx ty tz`` per query (the benchmark's format), atomically.

    Returns the number of lines. Basenames must be unique (the benchmark identifies queries by them).
    """
    lines, seen = [], {}
    for r in results:
        base = Path(r.name).name
        if base in seen:
            raise DataError(
                f"queries {seen[base]!r} and {r.name!r} share the basename {base!r}; "
                "the submission cannot tell them apart"
            )
        seen[base] = r.name
        q = np.asarray(r.qvec, float)
        q = q / np.linalg.norm(q)
        lines.append(base + " " + " ".join(f"{v:.10g}" for v in (*q, *np.asarray(r.tvec, float).reshape(3))))
    with atomic_path(path, suffix=".txt") as tmp:
        tmp.write_text("\n".join(lines) + ("\n" if lines else ""))
    return len(lines)


def read_submission(path: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read a submission file → ``{basename: (qvec, tvec)}`` (validated like the ground truth)."""
    return read_ground_truth(path)


# ------------------------------------------------------------------------------------ database
def _check_features(features: FeatureReader, names: Iterable[str], what: str) -> None:
    missing = [n for n in names if n not in features]
    if missing:
        raise DataError(
            f"{features.path}: no features for {len(missing)} {what}, e.g. {missing[:3]} "
            f"(names must be relative to images/images_upright)"
        )


def build_database(
    db_path: Path,
    reference: pycolmap.Reconstruction,
    queries: Sequence[QueryCamera],
    features: FeatureReader,
    keys: Mapping[str, str] | None = None,
) -> dict[str, int]:
    """Write a fresh COLMAP database: reference cameras/images (their ids kept), queries, keypoints.

    ``keys``: ``{image name: feature group}`` (default: the names themselves).
    Returns ``{image name: image id}``.
    """
    if keys is None:
        _check_features(features, [im.name for im in reference.images.values()], "reference images")
        _check_features(features, [q.name for q in queries], "queries")
        keys = {}
    db = colmap.create_database(db_path, overwrite=True)
    ids: dict[str, int] = {}
    try:
        for cam_id in sorted(reference.cameras):
            cam = reference.camera(cam_id)
            cam.has_prior_focal_length = True
            colmap.add_camera(db, cam, use_camera_id=True)
        for image_id in sorted(reference.images):
            im = reference.image(image_id)
            ids[im.name] = colmap.add_image(db, im.name, im.camera_id, image_id=image_id)
        next_cam = max(reference.cameras, default=0) + 1
        next_image = max(reference.images, default=0) + 1
        for i, q in enumerate(queries):
            if q.name in ids:
                raise DataError(f"query {q.name!r} is also a reference image")
            cam = q.to_pycolmap(camera_id=next_cam + i)
            cam.has_prior_focal_length = True
            colmap.add_camera(db, cam, use_camera_id=True)
            ids[q.name] = colmap.add_image(db, q.name, next_cam + i, image_id=next_image + i)
        sfm.import_keypoints(db, ids, features, keys)  # keypoints only: no descriptor read per image
    finally:
        db.close()
    return ids


def triangulate_reference(
    reference: pycolmap.Reconstruction,
    db_path: Path,
    image_dir: Path,
    out_dir: Path,
    seed: int = 0,
) -> pycolmap.Reconstruction:
    """Triangulate the fixed-pose reference from the verified db–db matches (``point_triangulator``).

    Poses and intrinsics stay fixed (the official flags ``ba_refine_* 0``). Only the reference images
    are loaded from the database (the queries in it are left out).
    """
    rec = pycolmap.Reconstruction(reference)
    rec.delete_all_points2D_and_points3D()
    opts = pycolmap.IncrementalPipelineOptions()
    opts.extract_colors = False
    opts.random_seed = int(seed)
    opts.ba_refine_focal_length = False
    opts.ba_refine_principal_point = False
    opts.ba_refine_extra_params = False
    opts.image_names = [im.name for im in reference.images.values()]
    out_dir.mkdir(parents=True, exist_ok=True)
    return pycolmap.triangulate_points(
        rec, str(db_path), str(image_dir), str(out_dir), clear_points=True, options=opts, refine_intrinsics=False
    )


# ------------------------------------------------------------------------------------ localization
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


def split_pairs(
    pairs: Sequence[tuple[str, str]], reference_names: set[str], query_names: set[str], where: str = "pair list"
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Split a pair list into db–db pairs and ``(query, db)`` pairs; unknown images are a DataError."""
    db_pairs, query_pairs = [], []
    for lineno, (a, b) in enumerate(pairs, 1):
        kinds = [("db" if n in reference_names else "query" if n in query_names else None) for n in (a, b)]
        if None in kinds:
            bad = (a, b)[kinds.index(None)]
            raise DataError(f"{where}:{lineno}: expected reference or query images, found unknown {bad!r}")
        if kinds == ["db", "db"]:
            db_pairs.append((a, b))
        elif kinds == ["query", "query"]:
            raise DataError(f"{where}:{lineno}: expected a pair with a reference image, found two queries")
        else:
            query_pairs.append((a, b) if kinds[0] == "query" else (b, a))
    return db_pairs, query_pairs


def localize_queries(
    queries: Sequence[QueryCamera],
    query_pairs: Sequence[tuple[str, str]],
    image_ids: Mapping[str, int],
    rec: pycolmap.Reconstruction,
    reference: pycolmap.Reconstruction,
    db_path: Path,
    features_path: str | os.PathLike,
    cfg: AachenConfig,
    progress: bool = True,
    keys: Mapping[str, str] | None = None,
) -> list[QueryResult]:
    """Localize each query against the triangulated reference ``rec`` (one :class:`QueryResult` each).

    A query with fewer than ``cfg.min_matches`` 2D–3D correspondences, or whose pose has fewer than
    ``cfg.min_inliers`` inliers, is not localized and gets the fallback pose.
    """
    db_of_query: dict[str, list[int]] = {q.name: [] for q in queries}
    for qn, dn in query_pairs:
        if image_ids[dn] not in db_of_query[qn]:
            db_of_query[qn].append(image_ids[dn])
    results: list[QueryResult] = []
    lookup: dict[int, np.ndarray] = {}
    with sfm.open_database(db_path) as db, FeatureReader(features_path) as features:
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
                if res.num_inliers >= cfg.min_inliers:
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


WORK_MARKER = ".posfeat-aachen-work"


def _fresh_dir(path: Path) -> Path:
    """Empty work folder ``path``; a non-empty folder that is not ours (no marker, no ``database.db``) is refused."""
    return fresh_workdir(path, WORK_MARKER, "posfeat.evaluation.aachen", also_ours=("database.db",))


def evaluate_aachen(
    root: str | os.PathLike,
    features_path: str | os.PathLike,
    workdir: str | os.PathLike,
    config: AachenConfig | None = None,
    device: str = "auto",
    progress: bool = True,
) -> AachenResult:
    """Localize every query of an Aachen Day-Night root with the features of ``features_path``.

    Args:
        root: dataset root (v1.1 or v1.0 layout, :class:`posfeat.data.aachen.AachenLayout`).
        features_path: hloc-layout features; names relative to ``images/images_upright``.
        workdir: the COLMAP database and the triangulated model go here (emptied first).
        config: pipeline settings.
        device: where descriptors are matched.
        progress: tqdm bars.

    Returns:
        the per-query results (day queries first, in list order), the metrics of
        :func:`localization_recall` and the seconds of each phase.
    """
    cfg = config or AachenConfig()
    layout = AachenLayout.detect(root)
    dev = resolve_device(device)
    timer = sfm.PhaseTimer()
    with timer("load"):
        reference = load_reference(layout.root)
        queries = load_queries(layout.root)
        if not layout.pairs.is_file():
            raise DataError(f"{layout.pairs}: pair list not found")
        pairs = read_pair_list(layout.pairs)
        gt = read_ground_truth(layout.ground_truth) if layout.has_ground_truth() else None
        db_pairs, query_pairs = split_pairs(
            pairs, {im.name for im in reference.images.values()}, {q.name for q in queries}, str(layout.pairs)
        )
    n_day = sum(q.condition == "day" for q in queries)
    announce(
        "eval-aachen",
        dev,
        feature_method_name(features_path),
        f"{len(reference.images)} reference images, {n_day} day + {len(queries) - n_day} night queries, "
        f"{len(db_pairs)} reference pairs, {len(query_pairs)} query pairs",
    )

    work = _fresh_dir(Path(workdir))
    db_path = work / "database.db"
    with FeatureReader(features_path) as features:
        with timer("import"):
            # names relative to images/images_upright, or to whatever folder above/below it was extracted
            keys = resolve_feature_names(
                features.names(),
                [im.name for im in reference.images.values()] + [q.name for q in queries],
                str(features.path),
                "reference images and queries",
                "(extract every image: python -m posfeat extract --images AACHEN)",
            )
            ids = build_database(db_path, reference, queries, features, keys)
        with sfm.open_database(db_path) as db:
            with timer("matching_db"):
                s_db = colmap.match_and_import(
                    db, features, keys, ids, db_pairs, ratio=cfg.ratio, mutual=cfg.mutual, device=dev, progress=progress
                )
            with timer("matching_query"):
                s_q = colmap.match_and_import(
                    db,
                    features,
                    keys,
                    ids,
                    query_pairs,
                    ratio=cfg.ratio,
                    mutual=cfg.mutual,
                    device=dev,
                    progress=progress,
                )
    log.info(
        "verifying %d matched pairs (%d empty skipped), %d matches",
        len(s_db.matched_pairs) + len(s_q.matched_pairs),
        s_db.num_empty_pairs + s_q.num_empty_pairs,
        s_db.num_matches + s_q.num_matches,
    )
    with timer("verification"):
        vopts = colmap.two_view_geometry_options(cfg.verification_max_error, cfg.verification_min_inliers, cfg.seed)
        vopts.ransac.max_num_trials = int(cfg.verification_max_trials)
        vopts.ransac.min_num_trials = min(int(vopts.ransac.min_num_trials), int(cfg.verification_max_trials))
        sfm.verify(db_path, s_db.matched_pairs + s_q.matched_pairs, vopts, work)
    with timer("triangulation"), colmap.colmap_log_level(False):
        rec = triangulate_reference(reference, db_path, layout.image_dir, work / "triangulated", cfg.seed)
    log.info("triangulated %d points in %d reference images", rec.num_points3D(), rec.num_reg_images())
    with timer("localization"):
        results = localize_queries(
            queries, query_pairs, ids, rec, reference, db_path, features_path, cfg, progress, keys
        )

    metrics = localization_recall(results, gt)
    stats = {
        "reference_images": reference.num_images(),
        "queries": len(queries),
        "db_pairs": s_db.num_pairs,
        "query_pairs": s_q.num_pairs,
        "empty_pairs": s_db.num_empty_pairs + s_q.num_empty_pairs,
        "matches": s_db.num_matches + s_q.num_matches,
        "points3D": rec.num_points3D(),
        "mean_correspondences": float(np.mean([r.num_correspondences for r in results])) if results else 0.0,
        "config": asdict(cfg),
    }
    return AachenResult(results, metrics, timer.rounded(), stats)


def format_metrics(metrics: Mapping[str, Mapping]) -> str:
    """A text table of ``{method: metrics}``."""
    keys = [threshold_key(*t) for t in THRESHOLDS]
    lines = [f"{'method':<16}{'cond':<7}" + "".join(f"{k:>12}" for k in keys) + f"{'localized':>12}"]
    for method, m in metrics.items():
        for cond in CONDITIONS:
            if cond in m:
                c = m[cond]
                vals = "".join(f"{c[k]:>12.1f}" if k in c else f"{'-':>12}" for k in keys)
                lines.append(f"{method:<16}{cond:<7}{vals}{c['localized']:>8d}/{c['queries']:<3d}")
    return "\n".join(lines)
