"""ETH local feature benchmark with pycolmap: match, verify, reconstruct, measure
(docs/method.md#eth-local-feature-benchmark).

Per scene (``<root>/<Scene>/images/*``):

1. the COLMAP database in the work folder (:mod:`posfeat.evaluation.eth.database`): a copy of the scene's own
   ``database.db`` without its features when the release has one (its cameras and their prior focal lengths,
   image names and ids), else one camera per image as COLMAP's image reader makes it (EXIF focal prior, else
   COLMAP's guess f = 1.2·max(w, h)); then the keypoints from the feature file (+0.5 px, COLMAP's origin);
2. the image pairs (:mod:`posfeat.evaluation.eth.pairs`; the protocol used is reported per scene under
   ``protocol``): the scene's own pair list when it has one; else exhaustive (i < j) up to
   ``max_exhaustive_images`` images (the benchmark matches exhaustively up to Tower of London's 1576); else
   **retrieval pairs** by a bag-of-visual-words descriptor of the scene's own local descriptors
   (:mod:`posfeat.sfm.retrieval`), the stand-in for COLMAP's vocabulary-tree matcher whose pre-trained tree
   cannot be downloaded here;
3. matching: mutual nearest neighbour, optionally with a ratio test on both sides
   (:func:`posfeat.matching.match_descriptors`; the official PoSFeat script uses ratio 0.75);
4. two-view geometric verification (``pycolmap.verify_matches``, COLMAP's ``matches_importer``) with
   hloc's RANSAC settings (20000 trials, minimum inlier ratio 0.1); why pairs fail is logged and
   reported (``verification``: pairs per configuration type, inlier ratios);
5. ``pycolmap.incremental_mapping`` (COLMAP's ``mapper``), for a scene with cameras that have no focal
   prior started from two-view self-calibrated focal lengths and followed by rounds of robust bundle
   adjustment and mapping with the refined intrinsics held (:mod:`posfeat.sfm.reconstruction`; the rounds and
   the final focal lengths over max(w, h) are reported); the largest model (most registered images)
   is measured: registered images, sparse points, observations, mean track length, observations per
   image, mean reprojection error — the statistics of ``colmap model_analyzer``;
6. where ``gt_cameras.txt`` exists (:func:`posfeat.datasets.eth.read_gt_cameras`): camera-pose accuracy
   (:mod:`posfeat.evaluation.poses`) —
   median rotation and camera-centre errors of the registered images after a similarity alignment
   (:func:`posfeat.evaluation.poses.align_similarity`: rotation from the camera orientations that agree
   with the majority, scale and translation from their centres — centre-only Umeyama is ill-conditioned
   for nearly collinear cameras, and a few misplaced cameras must not void the alignment), and the AUC of the
   relative-pose error (max of rotation and translation-direction angle) over all image pairs at
   5/10/20°, an image that is not registered counting as an infinite error.

Why the defaults are what they are (measured on an internet-style scene built from the Strecha castle
images: 10 crops of mixed size, principal point and focal length; SIFT, exhaustive pairs): the two-sided
ratio test at 0.75 keeps 1308 verified inliers in 21 of 45 pairs against 4723 in 45 pairs for plain
mutual NN (3.6× fewer; e.g. 38 raw / 29 verified against 553 / 108 on a wide-baseline pair), and the
mapper then registers 3 of 10 images against 10 of 10. Without the EXIF focal prior the guessed
cameras register 8 (or 5 + 10 in two models) of 10 on a zoomed variant, with it 10 of 10. hloc's RANSAC
settings add about 1 % of inliers. So the default matcher is mutual NN (hloc's NN-mutual, and the Aachen
protocol's), the ratio test is a setting, and EXIF priors are read.

Features may be named relative to the ETH root (``<Scene>/images/x.jpg``), the scene (``images/x.jpg``)
or the image folder (``x.jpg``) — whatever folder was given to ``extract --images``
(:func:`posfeat.feature_names.resolve_feature_names`).

A scene that does not reconstruct (no matches, no verified pair, no initial pair) gives zero statistics
and a message, never an exception; the work folder of an earlier run is replaced.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import pycolmap

from posfeat.datasets.eth import list_scene_images, list_scenes, read_gt_cameras
from posfeat.evaluation.eth.config import ETHConfig
from posfeat.evaluation.eth.database import open_scene_database
from posfeat.evaluation.eth.pairs import select_pairs
from posfeat.evaluation.eth.results import SceneResult
from posfeat.evaluation.poses import pose_accuracy
from posfeat.io import DataError, FeatureReader, feature_method_name
from posfeat.io import fresh_workdir as io_fresh_workdir
from posfeat.sfm import colmap, matching, reconstruction, steps, two_view_focals, verification
from posfeat.utils import announce, get_logger, resolve_device

if TYPE_CHECKING:
    import torch

log = get_logger(__name__)

#: file that marks a folder as an ETH work folder (the next run may delete it)
WORK_MARKER = ".posfeat-eth-work"


def fresh_workdir(path: str | os.PathLike) -> Path:
    """Empty work folder ``path`` (:func:`posfeat.io.fresh_workdir`); a foreign non-empty folder is refused."""
    return io_fresh_workdir(path, WORK_MARKER, "posfeat.evaluation.eth.evaluate")


# ------------------------------------------------------------------------------------ the pipeline
@dataclass
class _SceneRun:
    """One scene's run: where it reads and writes, its settings, the protocol it reports and its phase timer."""

    scene_dir: Path
    work: Path
    cfg: ETHConfig
    device: torch.device
    progress: bool
    protocol: dict
    timer: steps.PhaseTimer = field(default_factory=steps.PhaseTimer)

    @property
    def scene(self) -> str:
        """The scene's name (its folder's)."""
        return self.scene_dir.name

    @property
    def db_path(self) -> Path:
        """The COLMAP database in the work folder."""
        return self.work / "database.db"


def evaluate_scene(
    scene_dir: str | os.PathLike,
    features_path: str | os.PathLike,
    workdir: str | os.PathLike,
    config: ETHConfig | None = None,
    device: str = "auto",
    progress: bool = True,
) -> SceneResult:
    """Reconstruct one ETH scene from the features of ``features_path`` and measure it.

    Args:
        scene_dir: ``<root>/<Scene>`` with ``images/`` (optionally ``database.db``, a pair list,
            ``gt_cameras.txt``).
        features_path: hloc-layout features named ``<Scene>/images/<file>``, ``images/<file>`` or ``<file>``.
        workdir: database, pair list and models go here (an earlier run's folder is replaced).
        config: pipeline settings.
        device: where descriptors are matched (``auto`` | ``cpu`` | ``cuda``).
        progress: tqdm bar while matching.

    Returns:
        statistics (matching, verification and why pairs failed it, model, pose accuracy where GT
        exists, the protocol used), the seconds of each phase (``import``, ``pairs``, ``matching``,
        ``verification``, ``mapping``), a message, the model's folder.
    """
    cfg = config or ETHConfig()
    scene_dir = Path(scene_dir)
    names = list_scene_images(scene_dir)  # images/<file>
    gt = read_gt_cameras(scene_dir)
    dev = resolve_device(device)
    run = _SceneRun(scene_dir, fresh_workdir(workdir), cfg, dev, progress, {"matcher": cfg.matcher_name()})
    ids, db_names, ms = _import_and_match(run, features_path, names)
    stats = _zero_stats(len(db_names), gt)
    stats.update(num_pairs=ms.num_pairs, num_matched_pairs=ms.num_matched_pairs, num_matches=ms.num_matches)
    stats["protocol"] = run.protocol
    if not ms.matched_pairs:
        return _stop(run, stats, f"{run.scene}: no matches in {ms.num_pairs} pairs; nothing to reconstruct")
    if _verify(run, ids, ms, stats, len(db_names)) == 0:
        return _stop(run, stats, f"{run.scene}: no pair passed geometric verification; nothing to reconstruct")
    _initial_focals(run)
    rec, model_dir, mrep = _map(run, stats, len(db_names))
    if rec is None:
        return _stop(run, stats, f"{run.scene}: the mapper found no model (no good initial pair)")
    return _measure(run, stats, gt, rec, model_dir, mrep, len(db_names))


def _import_and_match(
    run: _SceneRun, features_path: str | os.PathLike, names: Sequence[str]
) -> tuple[dict[str, int], list[str], matching.MatchImportStats]:
    """The scene's database with its cameras, images and keypoints, its pairs, their raw matches.

    Returns ``({name: image id}, names in the database, match counts)``.
    """
    cfg, timer, dev, progress = run.cfg, run.timer, run.device, run.progress
    with FeatureReader(features_path) as features, colmap.watch_space(run.db_path):
        with timer("import"):
            db, ids, keys, db_names = open_scene_database(
                run.scene_dir, run.db_path, features, names, cfg, run.protocol
            )
        try:
            with timer("import"):
                steps.import_keypoints(db, {dn: ids[dn] for dn in db_names}, features, keys)
            with timer("pairs"):
                pairs, pinfo = select_pairs(
                    run.scene_dir, db_names, cfg, lambda n: features[keys[n]]["descriptors"], dev
                )
                run.protocol.update(pinfo)
            announce(f"eval-eth {run.scene}", dev, feature_method_name(features_path),
                     f"{len(db_names)} images, {len(pairs)} {pinfo.get('pairs', '')} pairs")  # fmt: skip
            with timer("matching"):
                ms = matching.match_and_import(
                    db, features, keys, ids, pairs, ratio=cfg.ratio, mutual=cfg.mutual, device=dev, progress=progress
                )
        finally:
            db.close()
    log.info("%s: protocol %s", run.scene, run.protocol)
    return ids, db_names, ms


def _verify(run: _SceneRun, ids: dict[str, int], ms: matching.MatchImportStats, stats: dict, num_images: int) -> int:
    """Two-view verification of the matched pairs; its counts and report go into ``stats``, and are logged.

    Returns the number of verified pairs.
    """
    with run.timer("verification"):
        steps.verify(run.db_path, ms.matched_pairs, _verification_options(run.cfg), run.work)
        with steps.open_database(run.db_path) as db:
            vs = verification.verification_stats(db)
            report = verification.verification_report(
                db, [(ids[a], ids[b]) for a, b in ms.matched_pairs], run.cfg.verification_min_inliers
            )
    stats.update(num_inlier_pairs=vs.num_inlier_pairs, num_inlier_matches=vs.num_inlier_matches)
    stats["verification"] = report
    _log_verification(run.scene, num_images, ms, vs, report)
    return vs.num_inlier_pairs


def _initial_focals(run: _SceneRun) -> None:
    """The cameras' initial focal lengths (``cfg.focal_init``): self-calibrated from the verified pairs
    (``two_view``) or the database's; their sources go into the protocol."""
    cfg = run.cfg
    with run.timer("focal_estimation"), steps.open_database(run.db_path) as db:
        if cfg.focal_init == "two_view":
            focals = two_view_focals.estimate_focals(db, cfg.verification_min_inliers, cfg.focal_factor)
            two_view_focals.apply_focals(db, focals)
        else:
            focals = two_view_focals.camera_focals(db)
    run.protocol["focal_init"] = cfg.focal_init
    run.protocol["focal_sources"] = focals.counts()


def _map(
    run: _SceneRun, stats: dict, num_images: int
) -> tuple[pycolmap.Reconstruction | None, Path | None, reconstruction.MappingReport]:
    """Incremental mapping (:func:`posfeat.sfm.reconstruction.reconstruct`); the number of models and the mapping
    report go into ``stats``. Returns ``(largest model or None, its folder, mapping report)``."""
    cfg = run.cfg
    with run.timer("mapping"):
        opts = colmap.mapper_options(
            num_threads=cfg.num_threads,
            seed=cfg.seed,
            min_num_matches=cfg.min_num_matches,
            structure_less_fallback=cfg.structure_less_fallback,
        )
        rec, model_dir, num_models, mrep = reconstruction.reconstruct(
            run.db_path, run.scene_dir / "images", run.work / "sparse", opts, num_images, cfg.mapping_attempts
        )
        uncalibrated = sum(n for s, n in run.protocol.get("focal_sources", {}).items() if s != "prior")
        if rec is not None and cfg.self_calibration_rounds > 0 and uncalibrated:
            rec, model_dir = reconstruction.self_calibrate(
                run.db_path,
                run.scene_dir / "images",
                run.work / "self_calibration",
                opts,
                rec,
                num_images,
                cfg.self_calibration_rounds,
                mrep,
            )
    run.protocol["self_calibration"] = bool(mrep.rounds)
    stats["num_models"] = num_models
    stats["mapping"] = mrep.to_dict()
    return rec, model_dir, mrep


def _measure(
    run: _SceneRun,
    stats: dict,
    gt: dict | None,
    rec: pycolmap.Reconstruction,
    model_dir: Path,
    mrep: reconstruction.MappingReport,
    num_images: int,
) -> SceneResult:
    """The model's statistics and pose accuracy (where GT exists) added to ``stats``: the scene's result."""
    stats.update(colmap.reconstruction_stats(rec))
    stats["focal_factors"] = reconstruction.focal_factor_summary(rec)
    if gt is not None:
        stats.update(pose_accuracy(rec, gt))
    msg = (
        f"ok: largest of {stats['num_models']} model(s) registers {rec.num_reg_images()}/{num_images} images "
        f"(mapping attempt {mrep.best_attempt + 1} of {len(mrep.attempts)})"
    )
    log.info("%s: %s, %d points", run.scene, msg, rec.num_points3D())
    return SceneResult(run.scene, stats, run.timer.rounded(), msg, str(model_dir))


def _zero_stats(num_images: int, gt: dict | None) -> dict:
    """The statistics of a scene that reconstructs nothing (pose accuracy too where GT exists)."""
    stats = {
        "num_images": num_images,
        "num_pairs": 0,
        "num_matched_pairs": 0,
        "num_matches": 0,
        "num_inlier_pairs": 0,
        "num_inlier_matches": 0,
        "num_models": 0,
        **colmap.reconstruction_stats(None),
    }
    if gt is not None:
        stats.update(pose_accuracy(None, gt))
    return stats


def _stop(run: _SceneRun, stats: dict, msg: str) -> SceneResult:
    """A scene that ends before a model: its statistics so far and the reason, logged."""
    log.warning(msg)
    return SceneResult(run.scene, stats, run.timer.rounded(), msg)


def _verification_options(cfg: ETHConfig) -> pycolmap.TwoViewGeometryOptions:
    """COLMAP's two-view verification settings of ``cfg``."""
    return verification.two_view_geometry_options(
        cfg.verification_max_error,
        cfg.verification_min_inliers,
        cfg.seed,
        max_num_trials=cfg.verification_max_num_trials,
        min_inlier_ratio=cfg.verification_min_inlier_ratio,
    )


def _log_verification(
    scene: str,
    num_images: int,
    ms: matching.MatchImportStats,
    vs: verification.VerificationStats,
    report: dict,
) -> None:
    """Log the scene's pair, match and verification counts, and why pairs failed verification."""
    log.info("%s: %d images, %d pairs, %d matched, %d verified (%d inlier matches)", scene, num_images, ms.num_pairs,
             ms.num_matched_pairs, vs.num_inlier_pairs, vs.num_inlier_matches)  # fmt: skip
    log.info(
        "%s: verification by configuration %s; inlier ratio of verified pairs %s, of failed pairs %s "
        "(failed pairs' median raw matches %s)",
        scene,
        report["configs"],
        report["inlier_ratio_verified"],
        report["inlier_ratio_failed"],
        report["raw_matches_failed_median"],
    )


def evaluate_eth(
    root: str | os.PathLike,
    features_path: str | os.PathLike,
    workdir: str | os.PathLike,
    config: ETHConfig | None = None,
    scenes: Sequence[str] | None = None,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, SceneResult]:
    """:func:`evaluate_scene` for every scene under an ETH root (or the named ``scenes``).

    Work folders are ``<workdir>/<Scene>``; feature names are relative to the root.
    """
    root = Path(root)
    scenes = list(scenes) if scenes is not None else list_scenes(root)
    if not scenes:
        raise DataError(f"{root}: no ETH scene (expected <root>/<Scene>/images/)")
    return {s: evaluate_scene(root / s, features_path, Path(workdir) / s, config, device, progress) for s in scenes}


__all__ = [
    "ETHConfig",
    "fresh_workdir",
    "evaluate_scene",
    "evaluate_eth",
]
