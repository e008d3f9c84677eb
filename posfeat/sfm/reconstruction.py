"""Incremental reconstruction that does not hinge on a guessed focal length.

Photos without EXIF get COLMAP's guess f = 1.2·max(w, h). On internet photos (crops, zooms, phones)
that guess is off by 0.6× to 2.3×, and the incremental mapper then starts from a two-view pose that is
wrong for the true cameras: a few images register by luck of the RANSAC seed, or all of them with
rotations several degrees off. This module is the one place where a scene is reconstructed from
photographs (the ETH evaluation; anything that turns photos into cameras should call it too), and it
removes that dependence in three steps:

1. :func:`posfeat.sfm.two_view_focals.estimate_focals` — initial focal lengths self-calibrated from the verified
   two-view geometries where no prior exists (see that module).
2. :func:`reconstruct` — the mapper, with a **restart** when the largest model leaves images out:
   further attempts with other seeds, the largest model kept (most registered images, then points).
3. :func:`self_calibrate` — **accurate intrinsics where no camera prior exists.** Refining a focal length
   and a distortion per image while the model grows lets early, poorly constrained images drift into a
   wrong basin (measured on a 10-photo collection without EXIF: the mapper's model had 0.7–2.3° median
   rotation error over seeds, and even true focal lengths as the start drifted to 1.5–2°, while the same
   model with the true focals held fixed had 0.4°). So the mapper's model is bundle-adjusted once more with
   a robust (Cauchy) loss, its intrinsics are written back as fixed priors, the scene is mapped again with
   them held, and adjusted again; until the median focal length moves by less than
   :data:`FOCAL_TOLERANCE` or the rounds run out. A round that registers fewer images is not kept.

Each records what it did (:class:`~posfeat.sfm.two_view_focals.FocalEstimate`, :class:`MappingReport`), so that
the metrics say where each focal length came from and how many attempts were made.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pycolmap

from posfeat.sfm import colmap
from posfeat.utils import get_logger

log = get_logger(__name__)

#: px, scale of the Cauchy loss of the self-calibration's bundle adjustment (residuals beyond it weigh less)
ROBUST_LOSS_SCALE = 1.0
#: self-calibration stops once the median relative change of the registered images' focal lengths is below this
FOCAL_TOLERANCE = 0.01
#: a self-calibration round's mapping may take this many times the longest first mapping attempt (at least
#: HELD_TIME_MIN seconds); past it, it is cancelled and dropped (a scene where holding the intrinsics made the mapper
#: 5x slower was measured)
HELD_TIME_FACTOR = 2.0
HELD_TIME_MIN = 30.0


# ------------------------------------------------------------------------------------ mapping
@dataclass
class MappingReport:
    """What :func:`reconstruct` did."""

    attempts: list[dict] = field(default_factory=list)  # per attempt: seed, models, registered images, points
    best_attempt: int | None = None
    rounds: list[dict] = field(default_factory=list)  # self-calibration: per round, registered images, focal change

    def to_dict(self) -> dict:
        return {"attempts": self.attempts, "best_attempt": self.best_attempt, "self_calibration": self.rounds}


def _score(rec: pycolmap.Reconstruction | None) -> tuple[int, int]:
    return (0, 0) if rec is None else (int(rec.num_reg_images()), int(rec.num_points3D()))


def reconstruct(
    database_path: str | os.PathLike,
    image_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    options: pycolmap.IncrementalPipelineOptions,
    num_images: int,
    max_attempts: int = 3,
    verbose: bool = False,
    time_budget: float | None = None,
) -> tuple[pycolmap.Reconstruction | None, Path | None, int, MappingReport]:
    """``pycolmap.incremental_mapping``, restarted with other seeds while the largest model misses images.

    Attempt k (0-based) uses ``options.random_seed + k`` and writes its models to ``out_dir/<k>/``.
    Stops at the first attempt whose largest model registers all ``num_images``. Returns the best
    largest model over the attempts (most registered images, then points), its folder, the number of
    models of that attempt, and the report.
    """
    out_dir = Path(out_dir)
    report = MappingReport()
    best, best_path, best_models = None, None, 0
    seed0 = int(options.random_seed)
    for k in range(max(1, int(max_attempts))):
        options.random_seed = seed0 + k
        folder = out_dir / str(k)
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with colmap.colmap_log_level(verbose):
            models = _incremental_mapping(database_path, image_dir, folder, options, time_budget)
        rec = colmap.largest_model(models)
        reg, pts = _score(rec)
        report.attempts.append(
            {"seed": seed0 + k, "num_models": len(models), "num_reg_images": reg, "num_points3D": pts,
             "seconds": round(time.perf_counter() - t0, 2)}
        )  # fmt: skip
        if rec is not None and _score(rec) > _score(best):
            best, best_models, report.best_attempt = rec, len(models), k
            best_path = folder / str(next(i for i, r in models.items() if r is rec))
        if reg >= num_images:
            break
        log.info(
            "mapping attempt %d (seed %d): %d/%d images registered%s",
            k,
            seed0 + k,
            reg,
            num_images,
            "; trying another seed" if k + 1 < max_attempts else "",
        )
    options.random_seed = seed0
    return best, best_path, best_models, report


def _incremental_mapping(database_path, image_dir, folder, options, time_budget: float | None) -> dict:
    """``pycolmap.incremental_mapping``; with ``time_budget`` (seconds) cancelled at the first image registered
    after the budget ran out, and then no model (``{}``)."""
    if time_budget is None:
        return pycolmap.incremental_mapping(str(database_path), str(image_dir), str(folder), options)
    token, t0 = pycolmap.CancellationToken(), time.perf_counter()

    def check() -> None:
        if time.perf_counter() - t0 > time_budget:
            token.cancel()

    try:
        return pycolmap.incremental_mapping(
            str(database_path), str(image_dir), str(folder), options, next_image_callback=check,
            cancellation_token=token,
        )  # fmt: skip
    except InterruptedError:
        log.info("mapping cancelled after %.0f s (its budget: %.0f s)", time.perf_counter() - t0, time_budget)
        return {}


# ------------------------------------------------------------------------------------ self-calibration
def bundle_adjust(rec: pycolmap.Reconstruction, num_threads: int = 1) -> None:
    """Global bundle adjustment of ``rec`` in place: poses, points, focal lengths and distortion (principal
    points held), with a Cauchy loss of scale :data:`ROBUST_LOSS_SCALE` px."""
    opts = pycolmap.BundleAdjustmentOptions()
    opts.refine_focal_length = True
    opts.refine_extra_params = True
    opts.refine_principal_point = False
    opts.print_summary = False
    opts.ceres.loss_function_type = pycolmap.LossFunctionType.CAUCHY
    opts.ceres.loss_function_scale = ROBUST_LOSS_SCALE
    opts.ceres.solver_options.num_threads = int(num_threads)
    with colmap.colmap_log_level(False):
        pycolmap.bundle_adjustment(rec, opts)


def registered_cameras(rec: pycolmap.Reconstruction) -> dict[int, pycolmap.Camera]:
    """``{camera id: camera}`` of the registered images."""
    return {int(im.camera_id): rec.cameras[im.camera_id] for im in rec.images.values() if im.has_pose}


def bogus_cameras(rec: pycolmap.Reconstruction) -> list[int]:
    """Camera ids of registered images whose intrinsics COLMAP's mapper would reject (focal length outside
    [0.1, 10] × the image size, or a distortion beyond 1: its ``min/max_focal_length_ratio`` and
    ``max_extra_param`` defaults)."""
    opts = pycolmap.IncrementalPipelineOptions()
    lo, hi = opts.min_focal_length_ratio, opts.max_focal_length_ratio
    return sorted(c for c, cam in registered_cameras(rec).items() if cam.has_bogus_params(lo, hi, 1.0))


def adjusted(rec: pycolmap.Reconstruction, num_threads: int = 1) -> pycolmap.Reconstruction | None:
    """:func:`bundle_adjust` of a copy of ``rec``; None when it leaves a camera with bogus intrinsics
    (:func:`bogus_cameras`), e.g. a focal length run off to 17 times the truth on a weakly constrained image."""
    out = pycolmap.Reconstruction(rec)
    bundle_adjust(out, num_threads)
    bad = bogus_cameras(out)
    if bad:
        log.info("robust bundle adjustment left bogus intrinsics on camera(s) %s; not kept", bad[:5])
        return None
    return out


def registered_intrinsics(rec: pycolmap.Reconstruction) -> dict[int, np.ndarray]:
    """``{camera id: parameters}`` of the cameras of the registered images."""
    return {c: np.asarray(cam.params, np.float64).copy() for c, cam in registered_cameras(rec).items()}


def registered_focals(rec: pycolmap.Reconstruction) -> dict[int, float]:
    """``{camera id: focal length (px)}`` of the cameras of the registered images."""
    return {c: float(cam.mean_focal_length()) for c, cam in registered_cameras(rec).items()}


def hold_intrinsics(db: pycolmap.Database, params: dict[int, np.ndarray]) -> int:
    """Write ``{camera id: parameters}`` into the database as priors (the mapper then starts from them);
    returns how many cameras were written."""
    n = 0
    for cam in db.read_all_cameras():
        c = int(cam.camera_id)
        if c in params:
            cam.params = params[c]
            cam.has_prior_focal_length = True
            db.update_camera(cam)
            n += 1
    return n


def median_focal_change(before: dict[int, float], after: dict[int, float]) -> float:
    """Median of |f_after / f_before − 1| over the cameras in both (inf when none is)."""
    common = [c for c in after if c in before]
    return float(np.median([abs(after[c] / before[c] - 1.0) for c in common])) if common else float("inf")


def self_calibrate(
    database_path: str | os.PathLike,
    image_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    options: pycolmap.IncrementalPipelineOptions,
    rec: pycolmap.Reconstruction,
    num_images: int,
    rounds: int = 3,
    report: MappingReport | None = None,
) -> tuple[pycolmap.Reconstruction, Path]:
    """Refine the intrinsics of a model built without camera priors (module doc, step 3).

    ``rec`` (the mapper's model) is bundle-adjusted with a robust loss; then, for up to ``rounds`` rounds while
    the median focal length moved by :data:`FOCAL_TOLERANCE` or more in the last adjustment: its intrinsics
    are written into the database as fixed priors, the scene is mapped again with them held (one attempt, at
    most :data:`HELD_TIME_FACTOR` times the first mapping's time) and the new model adjusted. A round whose
    model registers fewer images, or that runs out of time, ends the loop and is dropped. The database's cameras
    are restored afterwards (they keep describing the protocol's inputs; the model holds the refined ones). Each
    adjustment is recorded in ``report.rounds``.
    Returns the final model and the folder it is written to (``out_dir/final``).
    """
    out_dir = Path(out_dir)
    report = report if report is not None else MappingReport()
    threads = int(options.num_threads) if int(options.num_threads) > 0 else (os.cpu_count() or 1)
    mapping_seconds = max((a.get("seconds", 0.0) for a in report.attempts), default=0.0)
    budget = max(HELD_TIME_FACTOR * mapping_seconds, HELD_TIME_MIN)
    before = registered_focals(rec)
    refined = adjusted(rec, threads)
    if refined is None:  # the mapper's model stays as it is
        report.rounds.append({"round": 0, "num_reg_images": int(rec.num_reg_images()), "focal_change": None})
        return rec, _write_final(rec, out_dir)
    rec = refined
    change = median_focal_change(before, registered_focals(rec))
    report.rounds.append({"round": 0, "num_reg_images": int(rec.num_reg_images()), "focal_change": change})
    held = pycolmap.IncrementalPipelineOptions(options.todict())
    held.ba_refine_focal_length = False
    held.ba_refine_extra_params = False
    with colmap.open_database(database_path) as db:
        cameras = db.read_all_cameras()
    try:
        rec = _held_rounds(database_path, image_dir, out_dir, held, rec, num_images, rounds, report, threads, change,
                           budget)  # fmt: skip
    finally:
        with colmap.open_database(database_path) as db:
            for cam in cameras:
                db.update_camera(cam)
    return rec, _write_final(rec, out_dir)


def _write_final(rec: pycolmap.Reconstruction, out_dir: Path) -> Path:
    """Write the final model to ``out_dir/final``; returns that folder."""
    final = out_dir / "final"
    final.mkdir(parents=True, exist_ok=True)
    rec.write(str(final))
    return final


def _held_rounds(
    database_path: str | os.PathLike,
    image_dir: str | os.PathLike,
    out_dir: Path,
    held: pycolmap.IncrementalPipelineOptions,
    rec: pycolmap.Reconstruction,
    num_images: int,
    rounds: int,
    report: MappingReport,
    threads: int,
    change: float,
    budget: float,
) -> pycolmap.Reconstruction:
    """The rounds of :func:`self_calibrate` after its first adjustment (``change``: that adjustment's focal
    change); the database's cameras are overwritten (the caller restores them). Returns the last kept model."""
    for k in range(1, int(rounds) + 1):
        if change < FOCAL_TOLERANCE:
            break
        with colmap.open_database(database_path) as db:
            hold_intrinsics(db, registered_intrinsics(rec))
        again, _, _, _ = reconstruct(
            database_path, image_dir, out_dir / f"round{k}", held, num_images, 1, time_budget=budget
        )
        if again is None or again.num_reg_images() < rec.num_reg_images():
            report.rounds.append({"round": k, "num_reg_images": _score(again)[0], "focal_change": None})
            log.info("self-calibration round %d registered fewer images (or ran past %.0f s); the previous model is "
                     "kept", k, budget)  # fmt: skip
            break
        before = registered_focals(rec)
        again = adjusted(again, threads)
        if again is None:
            report.rounds.append({"round": k, "num_reg_images": int(rec.num_reg_images()), "focal_change": None})
            break
        change = median_focal_change(before, registered_focals(again))
        rec = again
        report.rounds.append({"round": k, "num_reg_images": int(rec.num_reg_images()), "focal_change": change})
    return rec


def focal_factor_summary(rec: pycolmap.Reconstruction) -> dict[str, float | None]:
    """Min, median and max over the registered cameras of focal length / max(width, height)."""
    f = [cam.mean_focal_length() / max(cam.width, cam.height) for cam in registered_cameras(rec).values()]
    if not f:
        return {"min": None, "median": None, "max": None}
    return {"min": float(np.min(f)), "median": float(np.median(f)), "max": float(np.max(f))}


__all__ = [
    "focal_factor_summary",
    "FOCAL_TOLERANCE",
    "ROBUST_LOSS_SCALE",
    "bundle_adjust",
    "registered_cameras",
    "bogus_cameras",
    "adjusted",
    "registered_intrinsics",
    "registered_focals",
    "hold_intrinsics",
    "median_focal_change",
    "self_calibrate",
    "MappingReport",
    "reconstruct",
]
