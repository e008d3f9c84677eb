"""ETH local feature benchmark (ALGORITHM.md §5.3) with pycolmap: match, verify, reconstruct, measure.

Per scene (``<root>/<Scene>/images/*``):

1. a fresh COLMAP database in the work folder: one camera per image (COLMAP's guess without EXIF:
   ``SIMPLE_RADIAL``, f = 1.2·max(w, h), principal point at the centre, refined by bundle adjustment),
   one image per file, keypoints from the feature file (+0.5 px, COLMAP's origin);
2. matching of the image pairs — exhaustive (i < j), as the original script, unless the scene has more
   than ``max_pairs`` pairs: then a seeded uniform random subset of ``max_pairs`` pairs (documented cap;
   the original matched all N(N−1)/2 pairs, ≈0.9 M for Madrid Metropolis, infeasible on a CPU) —
   with mutual nearest neighbour + ratio 0.75 (:func:`posfeat.matching.match_descriptors`);
3. two-view geometric verification (``pycolmap.verify_matches``, COLMAP's ``matches_importer``);
4. ``pycolmap.incremental_mapping`` (COLMAP's ``mapper``); the largest model (most registered images)
   is measured: registered images, sparse points, observations, mean track length, observations per
   image, mean reprojection error — the statistics of ``colmap model_analyzer``;
5. where ``gt_cameras.txt`` exists (:func:`posfeat.data.eth.read_gt_cameras`): camera-pose accuracy —
   median rotation and camera-centre errors of the registered images after a similarity alignment
   (:func:`align_similarity`: rotation from the camera orientations, scale and translation from the
   centres — centre-only Umeyama is ill-conditioned for nearly collinear cameras), and the AUC of the
   relative-pose error (max of rotation and translation-direction angle) over all image pairs at
   5/10/20°, an image that is not registered counting as an infinite error.

A scene that does not reconstruct (no matches, no verified pair, no initial pair) gives zero statistics
and a message, never an exception; the work folder of an earlier run is replaced.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pycolmap

from posfeat import colmap
from posfeat.data.eth import list_scene_images, list_scenes, read_gt_cameras
from posfeat.data.megadepth import Camera
from posfeat.geometry import rotation_angle_deg
from posfeat.io import DataError, FeatureReader, write_json
from posfeat.io import fresh_workdir as io_fresh_workdir
from posfeat.utils import config_from_dict, get_logger, resolve_device

log = get_logger(__name__)

#: the relative-pose AUC thresholds (degrees)
AUC_THRESHOLDS: tuple[float, ...] = (5.0, 10.0, 20.0)
#: file that marks a folder as an ETH work folder (the next run may delete it)
WORK_MARKER = ".posfeat-eth-work"


@dataclass
class ETHConfig:
    """Settings of the ETH pipeline (params.yaml ``eval.eth`` plus ``seed``)."""

    ratio: float | None = 0.75  # Lowe ratio on descriptor distances (both directions); None: off
    mutual: bool = True  # mutual nearest neighbour
    max_pairs: int | None = None  # cap on the number of matched pairs (None: exhaustive)
    camera_model: str = "SIMPLE_RADIAL"  # model of the guessed cameras (one per image)
    focal_factor: float = 1.2  # guessed focal = factor · max(w, h) (COLMAP's default without EXIF)
    verification_max_error: float = 4.0  # px, two-view RANSAC (COLMAP default)
    verification_min_inliers: int = 15  # verified pair threshold (COLMAP default)
    min_num_matches: int = 15  # mapper: pairs with fewer verified matches are ignored (COLMAP default)
    num_threads: int = -1  # COLMAP threads (-1: all cores)
    seed: int = 0  # RANSAC, pair sampling and mapper seed

    @classmethod
    def from_dict(cls, d: dict | None) -> "ETHConfig":
        """From a params mapping; unknown keys are an error naming them."""
        return config_from_dict(cls, d, "eval.eth")


@dataclass
class SceneResult:
    """What :func:`evaluate_scene` returns: statistics, timings and a message."""

    scene: str
    stats: dict[str, float | int | None]
    timings: dict[str, float] = field(default_factory=dict)
    message: str = "ok"
    model_path: str | None = None

    def to_dict(self) -> dict:
        return {"scene": self.scene, **self.stats, "timings_s": self.timings, "message": self.message,
                "model": self.model_path}


# ------------------------------------------------------------------------------------ pairs
def select_pairs(names: Sequence[str], max_pairs: int | None = None, seed: int = 0) -> list[tuple[str, str]]:
    """All pairs ``(names[i], names[j])``, i < j; more than ``max_pairs`` → a seeded random subset of that size.

    The subset keeps the exhaustive order (i, then j). ``max_pairs`` ≤ 0 or None: no cap.
    """
    pairs = list(itertools.combinations(names, 2))
    if max_pairs is None or max_pairs <= 0 or len(pairs) <= max_pairs:
        return pairs
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(pairs), size=int(max_pairs), replace=False))
    log.info("%d pairs exceed max_pairs=%d: matching a random subset (seed %d)", len(pairs), max_pairs, seed)
    return [pairs[i] for i in keep]


# ------------------------------------------------------------------------------------ pose accuracy
def pose_auc(errors: np.ndarray, thresholds: Sequence[float] = AUC_THRESHOLDS) -> list[float]:
    """Area under the recall-vs-error curve up to each threshold, divided by it (SuperGlue's pose AUC).

    ``errors`` may contain ``inf`` (failures); an empty array gives zeros.
    """
    errors = np.sort(np.asarray(errors, np.float64).reshape(-1))
    if errors.size == 0:
        return [0.0 for _ in thresholds]
    recall = np.arange(1, len(errors) + 1) / len(errors)
    errors = np.concatenate([[0.0], errors])
    recall = np.concatenate([[0.0], recall])
    out = []
    for t in thresholds:
        last = np.searchsorted(errors, t)
        e = np.concatenate([errors[:last], [t]])
        r = np.concatenate([recall[:last], [recall[last - 1]]])
        out.append(float(np.trapezoid(r, x=e) / t))
    return out


def _angle_between_deg(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na < 1e-12 or nb < 1e-12:
        return float("inf")
    return float(np.degrees(np.arccos(np.clip(a @ b / (na * nb), -1.0, 1.0))))


def relative_pose_errors(est: dict[str, tuple[np.ndarray, np.ndarray]], gt: dict[str, Camera]) -> np.ndarray:
    """Relative-pose error (degrees) of every ground-truth pair: max(rotation, translation direction).

    ``est``: ``{name: (R, t)}`` world→camera of the registered images. A pair with an unregistered image
    gets ``inf``. The relative pose 1→2 is ``R2 R1ᵀ, t2 − R2 R1ᵀ t1`` (scale-free: only its direction).
    """
    errs = []
    for a, b in itertools.combinations(sorted(gt), 2):
        if a not in est or b not in est:
            errs.append(np.inf)
            continue
        ga, gb = gt[a], gt[b]
        R_gt = gb.R @ ga.R.T
        t_gt = gb.t - R_gt @ ga.t
        (Ra, ta), (Rb, tb) = est[a], est[b]
        R_est = Rb @ Ra.T
        t_est = tb - R_est @ ta
        e_r = rotation_angle_deg(R_est.T @ R_gt)
        e_t = _angle_between_deg(t_est, t_gt)
        errs.append(max(e_r, e_t))
    return np.asarray(errs, np.float64)


def align_similarity(est: dict[str, tuple[np.ndarray, np.ndarray]], gt: dict[str, Camera]
                     ) -> tuple[float, np.ndarray, np.ndarray] | None:
    """Similarity ``X_gt ≈ s·R·X_est + t`` between a model's frame and the ground truth's.

    The rotation is the chordal L2 mean of the per-image offsets ``R_gt,iᵀ R_est,i`` (projected onto
    SO(3) by SVD); scale and translation are then the least-squares fit of the camera centres.
    Centre-only Umeyama (``pycolmap.estimate_sim3d``) leaves the rotation about the line of the cameras
    unconstrained when the centres are nearly collinear (an arc of cameras, a street), which shows up
    as degrees of spurious rotation error; the orientations fix it. Needs ≥ 2 common images with
    distinct centres; ``None`` otherwise.
    """
    names = sorted(n for n in est if n in gt)
    if len(names) < 2:
        return None
    M = sum(gt[n].R.T @ est[n][0] for n in names)
    U, _, Vt = np.linalg.svd(M)
    R = U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt
    y = np.stack([R @ (-est[n][0].T @ est[n][1]) for n in names])
    c = np.stack([gt[n].center for n in names])
    yc, cc = y - y.mean(0), c - c.mean(0)
    denom = float((yc * yc).sum())
    if denom < 1e-12:
        return None
    s = float((yc * cc).sum() / denom)
    if s <= 0:
        return None
    return s, R, c.mean(0) - s * y.mean(0)


def absolute_pose_errors(est: dict[str, tuple[np.ndarray, np.ndarray]], gt: dict[str, Camera]
                         ) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Rotation (deg) and centre errors (GT units) of the registered GT images after :func:`align_similarity`.

    Returns ``(rot_errors, center_errors, scale)``; empty arrays and ``None`` when fewer than 3 images
    are common (two cameras fit a similarity exactly) or the alignment is degenerate.
    """
    names = sorted(n for n in est if n in gt)
    sim = align_similarity(est, gt) if len(names) >= 3 else None
    if sim is None:
        return np.zeros(0), np.zeros(0), None
    s, R_s, t_s = sim
    rot, cen = [], []
    for n in names:
        R_e, t_e = est[n]
        R_aligned = R_e @ R_s.T  # cam_from_gt_world = cam_from_world ∘ sim⁻¹
        rot.append(rotation_angle_deg(R_aligned @ gt[n].R.T))
        cen.append(float(np.linalg.norm(s * R_s @ (-R_e.T @ t_e) + t_s - gt[n].center)))
    return np.asarray(rot), np.asarray(cen), s


def pose_accuracy(rec: pycolmap.Reconstruction | None, gt: dict[str, Camera]) -> dict[str, float | int | None]:
    """Pose metrics of a model against ground truth (names: bare image file names)."""
    est: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if rec is not None:
        for name, pose in colmap.registered_poses(rec).items():
            est[name] = colmap.rigid_to_Rt(pose)
    rot, cen, _ = absolute_pose_errors(est, gt)
    rel = relative_pose_errors(est, gt)
    out: dict[str, float | int | None] = {
        "gt_images": len(gt),
        "gt_images_registered": int(sum(1 for n in est if n in gt)),
        "median_rotation_error_deg": float(np.median(rot)) if rot.size else None,
        "median_center_error": float(np.median(cen)) if cen.size else None,
    }
    for t, auc in zip(AUC_THRESHOLDS, pose_auc(rel)):
        out[f"pose_auc@{t:g}"] = auc
    return out


# ------------------------------------------------------------------------------------ work folder
def fresh_workdir(path: str | os.PathLike) -> Path:
    """Empty work folder ``path`` (:func:`posfeat.io.fresh_workdir`); a foreign non-empty folder is refused."""
    return io_fresh_workdir(path, WORK_MARKER, "posfeat.evaluation.eth")


def resolve_feature_keys(features: FeatureReader, scene: str, names: Sequence[str]) -> dict[str, str]:
    """HDF5 group of every scene image: ``<scene>/images/<file>`` (ETH root) or ``images/<file>`` (scene).

    Args:
        names: image names relative to the scene folder (``images/<file>``).
    Returns:
        ``{images/<file>: group name}``; an image without features is a :class:`DataError`.
    """
    keys = {}
    for n in names:
        for k in (f"{scene}/{n}", n):
            if k in features:
                keys[n] = k
                break
        else:
            raise DataError(f"{features.path}: no features for image {scene}/{n} "
                            f"(expected a group '{scene}/{n}' or '{n}')")
    return keys


# ------------------------------------------------------------------------------------ the pipeline
def _zero_stats(num_images: int, gt: dict | None) -> dict:
    stats = {"num_images": num_images, "num_pairs": 0, "num_matched_pairs": 0, "num_matches": 0,
             "num_inlier_pairs": 0, "num_inlier_matches": 0, "num_models": 0,
             **colmap.reconstruction_stats(None)}
    if gt is not None:
        stats.update(pose_accuracy(None, gt))
    return stats


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
        scene_dir: ``<root>/<Scene>`` with ``images/`` (and optionally ``gt_cameras.txt``).
        features_path: hloc-layout features named ``<Scene>/images/<file>`` or ``images/<file>``.
        workdir: database, pair list and models go here (an earlier run's folder is replaced).
        config: pipeline settings.
        device: where descriptors are matched (``auto`` | ``cpu`` | ``cuda``).
        progress: tqdm bar while matching.

    Returns:
        statistics (matching, verification, model, pose accuracy where GT exists), the seconds of each
        phase (``import``, ``matching``, ``verification``, ``mapping``), a message, the model's folder.
    """
    cfg = config or ETHConfig()
    scene_dir = Path(scene_dir)
    scene = scene_dir.name
    names = list_scene_images(scene_dir)  # images/<file>
    gt = read_gt_cameras(scene_dir)
    dev = resolve_device(device)
    work = fresh_workdir(workdir)
    db_path = work / "database.db"
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    with FeatureReader(features_path) as features:
        keys_by_scene_name = resolve_feature_keys(features, scene, names)
        db_names = [n[len("images/"):] for n in names]  # relative to the image folder, as COLMAP wants
        keys = {dn: keys_by_scene_name[n] for dn, n in zip(db_names, names)}
        db = colmap.create_database(db_path)
        try:
            ids: dict[str, int] = {}
            for dn in db_names:
                f = features[keys[dn]]
                w, h = (int(v) for v in f["image_size"])
                cam = colmap.guess_camera(w, h, cfg.camera_model, cfg.focal_factor)
                cam_id = colmap.add_camera(db, cam)
                ids[dn] = colmap.add_image(db, dn, cam_id)
                colmap.import_keypoints(db, ids[dn], f["keypoints"])
            timings["import"] = time.perf_counter() - t0

            t0 = time.perf_counter()
            pairs = select_pairs(db_names, cfg.max_pairs, cfg.seed)
            ms = colmap.match_and_import(db, features, keys, ids, pairs, ratio=cfg.ratio, mutual=cfg.mutual,
                                         device=dev, progress=progress)
            timings["matching"] = time.perf_counter() - t0
        finally:
            db.close()

    stats = _zero_stats(len(names), gt)
    stats.update(num_pairs=ms.num_pairs, num_matched_pairs=ms.num_matched_pairs, num_matches=ms.num_matches)
    if not ms.matched_pairs:
        msg = f"{scene}: no matches in {ms.num_pairs} pairs; nothing to reconstruct"
        log.warning(msg)
        return SceneResult(scene, stats, _round(timings), msg)

    pairs_path = work / "pairs.txt"
    colmap.write_pairs_file(pairs_path, ms.matched_pairs)
    t0 = time.perf_counter()
    vopts = colmap.two_view_geometry_options(cfg.verification_max_error, cfg.verification_min_inliers, cfg.seed)
    with colmap.colmap_log_level(False):
        colmap.verify_pairs(db_path, pairs_path, vopts)
    db = pycolmap.Database.open(str(db_path))
    try:
        vs = colmap.verification_stats(db)
    finally:
        db.close()
    timings["verification"] = time.perf_counter() - t0
    stats.update(num_inlier_pairs=vs.num_inlier_pairs, num_inlier_matches=vs.num_inlier_matches)
    log.info("%s: %d images, %d pairs, %d matched, %d verified (%d inlier matches)", scene, len(names),
             ms.num_pairs, ms.num_matched_pairs, vs.num_inlier_pairs, vs.num_inlier_matches)
    if vs.num_inlier_pairs == 0:
        msg = f"{scene}: no pair passed geometric verification; nothing to reconstruct"
        log.warning(msg)
        return SceneResult(scene, stats, _round(timings), msg)

    t0 = time.perf_counter()
    sparse = work / "sparse"
    sparse.mkdir()
    opts = colmap.mapper_options(num_threads=cfg.num_threads, seed=cfg.seed, min_num_matches=cfg.min_num_matches)
    with colmap.colmap_log_level(False):
        models = pycolmap.incremental_mapping(str(db_path), str(scene_dir / "images"), str(sparse), opts)
    timings["mapping"] = time.perf_counter() - t0
    rec = colmap.largest_model(models)
    stats["num_models"] = len(models)
    if rec is None:
        msg = f"{scene}: the mapper found no model (no good initial pair)"
        log.warning(msg)
        return SceneResult(scene, stats, _round(timings), msg)
    best_idx = next(i for i, r in models.items() if r is rec)
    stats.update(colmap.reconstruction_stats(rec))
    if gt is not None:
        stats.update(pose_accuracy(rec, gt))
    msg = f"ok: largest of {len(models)} model(s) registers {rec.num_reg_images()}/{len(names)} images"
    log.info("%s: %s, %d points", scene, msg, rec.num_points3D())
    return SceneResult(scene, stats, _round(timings), msg, str(sparse / str(best_idx)))


def _round(t: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in t.items()}


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


STAT_COLUMNS = ("num_reg_images", "num_sparse_points", "num_observations", "mean_track_length",
                "num_observations_per_image", "mean_reproj_error", "median_rotation_error_deg",
                "median_center_error", "pose_auc@5", "pose_auc@10", "pose_auc@20")


def format_table(results: dict[str, dict[str, dict]]) -> str:
    """Text table of ``{method: {scene: stats}}``."""
    short = {"num_reg_images": "reg", "num_sparse_points": "points", "num_observations": "obs",
             "mean_track_length": "track", "num_observations_per_image": "obs/img", "mean_reproj_error": "reproj",
             "median_rotation_error_deg": "rot°", "median_center_error": "centre", "pose_auc@5": "auc5",
             "pose_auc@10": "auc10", "pose_auc@20": "auc20"}
    lines = [f"{'method':<10}{'scene':<16}" + "".join(f"{short[c]:>9}" for c in STAT_COLUMNS)]
    for method, per_scene in results.items():
        for scene, s in per_scene.items():
            cells = []
            for c in STAT_COLUMNS:
                v = s.get(c)
                cells.append(f"{'-':>9}" if v is None else (f"{v:>9d}" if isinstance(v, int) else f"{v:>9.3f}"))
            lines.append(f"{method:<10}{scene:<16}" + "".join(cells))
    return "\n".join(lines)


def run_cli(args) -> int:
    """``python -m posfeat eval-eth --scene DIR --features F.h5 --out STATS.json [--workdir DIR]``.

    Writes ``{scene: statistics}`` to ``--out``; the database and models go to ``--workdir`` (default:
    ``<out without .json>_work`` beside ``--out``).
    """
    get_logger("posfeat")
    out = Path(args.out)
    workdir = Path(args.workdir) if getattr(args, "workdir", None) else out.with_name(out.stem + "_work")
    cfg = ETHConfig(ratio=args.ratio, max_pairs=args.max_pairs)
    res = evaluate_scene(args.scene, args.features, workdir, cfg, device=getattr(args, "device", "auto"))
    write_json(out, {res.scene: res.to_dict()})
    print(format_table({"features": {res.scene: res.stats}}))
    print(res.message)
    return 0


__all__ = [
    "AUC_THRESHOLDS", "ETHConfig", "SceneResult", "select_pairs", "pose_auc", "relative_pose_errors",
    "align_similarity", "absolute_pose_errors", "pose_accuracy", "fresh_workdir", "resolve_feature_keys", "evaluate_scene",
    "evaluate_eth", "format_table", "run_cli",
]
