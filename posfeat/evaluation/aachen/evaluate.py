"""Aachen Day-Night localization with pycolmap: the visuallocalization.net pipeline
(docs/method.md#aachen-day-night-localization).

The steps of the official pipeline (COLMAP command-line tools there, pycolmap here):

1. the reference model (``3D-models/aachen_v_1_1`` or the v1.0 NVM + intrinsics, :mod:`posfeat.datasets.aachen`)
   gives the database images, their cameras and their fixed poses; its 3D points are dropped;
2. a fresh COLMAP database gets the reference cameras/images (same ids) and the queries with their
   intrinsics, and every image's keypoints from the feature file (``+0.5`` to COLMAP's pixel convention);
3. every listed pair (``others/image_pairs_to_match*.txt``) is matched with mutual nearest neighbours
   (:mod:`posfeat.matching`) and the raw matches are written to the database;
4. two-view geometric verification of all the pairs (``matches_importer``);
5. the fixed-pose reference is triangulated (``point_triangulator``: ``pycolmap.triangulate_points``,
   intrinsics not refined);
6. each query is localized (:mod:`posfeat.evaluation.aachen.localize`) from its 2D–3D correspondences —
   its (verified) matches to db keypoints that have a 3D point — with
   ``pycolmap.estimate_and_refine_absolute_pose`` (LO-RANSAC + refinement, the query intrinsics fixed).
   This replaces ``image_registrator``, which would also refine the model. A query with fewer than
   ``min_matches`` correspondences, or whose estimation fails or keeps fewer than ``min_inliers`` inliers,
   is not localized;
7. the benchmark's submission file ``basename qw qx qy qz tx ty tz`` (world→camera, COLMAP convention;
   :func:`posfeat.evaluation.aachen.results.write_submission`) lists EVERY query; a query that was not
   localized gets the fallback pose (identity by default).

The work folder (database, ``pairs.txt``, ``triangulated/``) is emptied at the start of every run.

Where the root has ``queries/ground_truth_queries.txt`` (our demo does; the real release withholds the
query poses) the recall at (0.25 m, 2°), (0.5 m, 5°) and (5 m, 10°) is computed per condition, in percent
like the benchmark's site: position error = distance of the camera centres, rotation error = angle of
``R_est·R_gtᵀ`` (:mod:`posfeat.evaluation.aachen.results`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import numpy as np
import pycolmap

from posfeat.datasets.aachen import (
    QueryCamera,
    load_queries,
    load_reference,
    read_ground_truth,
)
from posfeat.datasets.aachen import (
    read_pairs as read_pairs_aachen,
)
from posfeat.datasets.aachen_layout import AachenLayout
from posfeat.evaluation.aachen.config import AachenConfig
from posfeat.evaluation.aachen.localize import QueryResult, localize_queries
from posfeat.evaluation.aachen.results import localization_recall
from posfeat.feature_names import resolve_feature_names
from posfeat.io import DataError, FeatureReader, feature_method_name, fresh_workdir
from posfeat.sfm import colmap, matching, steps, verification
from posfeat.utils import announce, get_logger, resolve_device

if TYPE_CHECKING:
    import torch

log = get_logger(__name__)


@dataclass
class AachenResult:
    """Everything :func:`evaluate_aachen` measured."""

    queries: list[QueryResult]
    metrics: dict
    timings: dict[str, float] = field(default_factory=dict)
    stats: dict = field(default_factory=dict)


@dataclass
class _AachenInputs:
    """What the pipeline reads from the dataset root."""

    reference: pycolmap.Reconstruction  # the reference model (fixed poses, no 3D points)
    queries: list[QueryCamera]
    db_pairs: list[tuple[str, str]]  # db–db pairs of the pair list
    query_pairs: list[tuple[str, str]]  # (query, db) pairs of the pair list
    ground_truth: dict[str, tuple[np.ndarray, np.ndarray]] | None  # query poses, where the root has them


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
        steps.import_keypoints(db, ids, features, keys)  # keypoints only: no descriptor read per image
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


WORK_MARKER = ".posfeat-aachen-work"


def _fresh_dir(path: Path) -> Path:
    """Empty work folder ``path``; a non-empty folder that is not ours (no marker, no ``database.db``) is refused."""
    return fresh_workdir(path, WORK_MARKER, "posfeat.evaluation.aachen.evaluate", also_ours=("database.db",))


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
        root: dataset root (v1.1 or v1.0 layout, :class:`posfeat.datasets.aachen_layout.AachenLayout`).
        features_path: hloc-layout features; names relative to ``images/images_upright``.
        workdir: the COLMAP database and the triangulated model go here (emptied first).
        config: pipeline settings.
        device: where descriptors are matched.
        progress: tqdm bars.

    Returns:
        the per-query results (day queries first, in list order), the metrics of
        :func:`posfeat.evaluation.aachen.results.localization_recall` and the seconds of each phase.
    """
    cfg = config or AachenConfig()
    layout = AachenLayout.detect(root)
    dev = resolve_device(device)
    timer = steps.PhaseTimer()
    with timer("load"):
        data = _load_inputs(layout)
    _announce(data, dev, features_path)
    work = _fresh_dir(Path(workdir))
    db_path = work / "database.db"
    with colmap.watch_space(db_path):
        ids, keys, s_db, s_q = _import_and_match(data, features_path, db_path, cfg, dev, progress, timer)
    _log_matches(s_db, s_q)
    with timer("verification"):
        steps.verify(db_path, s_db.matched_pairs + s_q.matched_pairs, _verification_options(cfg), work)
    with timer("triangulation"), colmap.colmap_log_level(False):
        rec = triangulate_reference(data.reference, db_path, layout.image_dir, work / "triangulated", cfg.seed)
    log.info("triangulated %d points in %d reference images", rec.num_points3D(), rec.num_reg_images())
    with timer("localization"):
        results = localize_queries(
            data.queries, data.query_pairs, ids, rec, data.reference, db_path, features_path, cfg, progress, keys
        )
    metrics = localization_recall(results, data.ground_truth)
    return AachenResult(results, metrics, timer.rounded(), _run_stats(data, s_db, s_q, rec, results, cfg))


def _load_inputs(layout: AachenLayout) -> _AachenInputs:
    """The reference model, the queries, the pair list split into db–db and query–db pairs, the ground truth."""
    reference = load_reference(layout.root)
    queries = load_queries(layout.root)
    if not layout.pairs.is_file():
        raise DataError(f"{layout.pairs}: pair list not found")
    pairs = read_pairs_aachen(layout.pairs)
    gt = read_ground_truth(layout.ground_truth) if layout.has_ground_truth() else None
    db_pairs, query_pairs = split_pairs(
        pairs, {im.name for im in reference.images.values()}, {q.name for q in queries}, str(layout.pairs)
    )
    return _AachenInputs(reference, queries, db_pairs, query_pairs, gt)


def _announce(data: _AachenInputs, device: torch.device, features_path: str | os.PathLike) -> None:
    """Say what is evaluated, where, with which features."""
    n_day = sum(q.condition == "day" for q in data.queries)
    announce(
        "eval-aachen",
        device,
        feature_method_name(features_path),
        f"{len(data.reference.images)} reference images, {n_day} day + {len(data.queries) - n_day} night queries, "
        f"{len(data.db_pairs)} reference pairs, {len(data.query_pairs)} query pairs",
    )


def _import_and_match(
    data: _AachenInputs,
    features_path: str | os.PathLike,
    db_path: Path,
    cfg: AachenConfig,
    device: torch.device,
    progress: bool,
    timer: steps.PhaseTimer,
) -> tuple[dict[str, int], dict[str, str], matching.MatchImportStats, matching.MatchImportStats]:
    """The database (:func:`build_database`), then the raw matches of the db–db pairs and of the query pairs.

    Returns ``({name: image id}, {name: feature group}, db–db match counts, query match counts)``.
    """
    with FeatureReader(features_path) as features:
        with timer("import"):
            # names relative to images/images_upright, or to whatever folder above/below it was extracted
            keys = resolve_feature_names(
                features.names(),
                [im.name for im in data.reference.images.values()] + [q.name for q in data.queries],
                str(features.path),
                "reference images and queries",
                "(extract every image: python -m posfeat extract --images AACHEN)",
            )
            ids = build_database(db_path, data.reference, data.queries, features, keys)
        matcher = {"ratio": cfg.ratio, "mutual": cfg.mutual, "device": device, "progress": progress}
        counts = []
        with steps.open_database(db_path) as db:
            for phase, pairs in (("matching_db", data.db_pairs), ("matching_query", data.query_pairs)):
                with timer(phase):
                    counts.append(matching.match_and_import(db, features, keys, ids, pairs, **matcher))
    return ids, keys, counts[0], counts[1]


def _log_matches(s_db: matching.MatchImportStats, s_q: matching.MatchImportStats) -> None:
    """Log the matched pairs about to be verified."""
    log.info(
        "verifying %d matched pairs (%d empty skipped), %d matches",
        len(s_db.matched_pairs) + len(s_q.matched_pairs),
        s_db.num_empty_pairs + s_q.num_empty_pairs,
        s_db.num_matches + s_q.num_matches,
    )


def _verification_options(cfg: AachenConfig) -> pycolmap.TwoViewGeometryOptions:
    """COLMAP's two-view verification settings of ``cfg`` (its RANSAC trial cap included)."""
    return verification.two_view_geometry_options(
        cfg.verification_max_error, cfg.verification_min_inliers, cfg.seed, max_num_trials=cfg.verification_max_trials
    )


def _run_stats(
    data: _AachenInputs,
    s_db: matching.MatchImportStats,
    s_q: matching.MatchImportStats,
    rec: pycolmap.Reconstruction,
    results: Sequence[QueryResult],
    cfg: AachenConfig,
) -> dict:
    """The run's counts (images, queries, pairs, matches, 3D points, mean correspondences) and its settings."""
    return {
        "reference_images": data.reference.num_images(),
        "queries": len(data.queries),
        "db_pairs": s_db.num_pairs,
        "query_pairs": s_q.num_pairs,
        "empty_pairs": s_db.num_empty_pairs + s_q.num_empty_pairs,
        "matches": s_db.num_matches + s_q.num_matches,
        "points3D": rec.num_points3D(),
        "mean_correspondences": float(np.mean([r.num_correspondences for r in results])) if results else 0.0,
        "config": asdict(cfg),
    }


__all__ = [
    "AachenConfig",
    "AachenResult",
    "build_database",
    "triangulate_reference",
    "split_pairs",
    "evaluate_aachen",
]
