"""Your own photos as a PoSFeat training set: photo collections in, the CAPS/MegaDepth layout out.

A *collection* is a folder of photos of one place (any sizes, with or without EXIF), or a folder holding an
existing COLMAP model (``sparse/`` with ``images/``). Each collection becomes one MegaDepth-layout scene::

    <out>/<collection>/dense0/aligned/images/<name>      undistorted to pinhole cameras
    <out>/<collection>/dense0/aligned/img_cam.txt        name w h fx fy cx cy R(3x3, world->camera) t
    <out>/<collection>/dense0/aligned/pairs.txt          pairs sharing enough 3D points, within rot_thr

which :func:`posfeat.trainset.prepare.prepare_megadepth` and both training stages read unchanged.

Reconstruction: COLMAP's SIFT and matching (exhaustive up to ``max_exhaustive_images`` photos, sequential
above), then the ETH evaluation's own reconstruction code (:mod:`posfeat.sfm.reconstruction`: focal lengths
self-calibrated from the verified pairs when photos have no EXIF, incremental mapping restarted while photos
are left out; mapped again without the EXIF focal lengths when the model with them leaves photos out), then
``pycolmap.undistort_images``. A collection that does not reconstruct is logged and counted as skipped; the
output folder appears only when at least one collection succeeded, and never holds a half-written scene.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from posfeat.datasets.camera import Camera
from posfeat.datasets.images import list_images
from posfeat.datasets.megadepth import write_img_cam
from posfeat.datasets.records import write_pair_list
from posfeat.io import DataError, atomic_path, write_json
from posfeat.photos.config import PhotosConfig
from posfeat.photos.reconstruct import reconstruct_collection

logger = logging.getLogger(__name__)


@dataclass
class CollectionReport:
    """What became of one collection."""

    name: str
    source: str
    num_images: int = 0
    num_registered: int = 0
    num_points3D: int = 0
    num_pairs: int = 0
    from_model: bool = False
    focal_sources: dict = field(default_factory=dict)
    seconds: float = 0.0
    skipped: str | None = None


# ------------------------------------------------------------------------------------------- inputs
def find_collections(root: str | os.PathLike) -> dict[str, Path]:
    """``{name: folder}``: ``root`` itself when it holds photos (or a COLMAP model), else each subfolder that
    does. A :class:`DataError` when there is none."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: photo folder not found (expected photos, or one folder of photos per place)")
    if _is_collection(root):
        return {root.name: root}
    found = {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and _is_collection(p)}
    if not found:
        raise DataError(
            f"{root}: no photos (expected .jpg/.png files, one folder per place, or a COLMAP "
            "model: sparse/ with images/)"
        )
    return found


def _is_collection(folder: Path) -> bool:
    if _model_dir(folder) is not None:
        return True
    return any(p.is_file() and p.suffix.lower() in _SUFFIXES for p in folder.iterdir())


_SUFFIXES = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".tif", ".tiff", ".webp"}


def _model_dir(folder: Path) -> Path | None:
    """The COLMAP model of ``folder`` (``sparse/`` or ``sparse/0/`` with cameras and images), if any."""
    for cand in (folder / "sparse", folder / "sparse" / "0"):
        if any((cand / f"cameras.{ext}").is_file() for ext in ("bin", "txt")) and (folder / "images").is_dir():
            return cand
    return None


def check_photos(folder: Path, cfg: PhotosConfig) -> list[str]:
    """The photo names of ``folder`` (relative, sorted), each one readable; else a :class:`DataError` naming
    the file that is not, or saying how many photos are missing."""
    names = list_images(folder)
    for n in names:
        if cv2.imread(str(folder / n), cv2.IMREAD_REDUCED_GRAYSCALE_8) is None:
            raise DataError(f"{folder / n}: not a readable image (remove it or replace it with a JPEG/PNG)")
    if len(names) < cfg.min_images:
        raise DataError(
            f"{folder}: {len(names)} photos; a collection needs at least {cfg.min_images} photos of "
            "one place, from overlapping viewpoints"
        )
    return names


def undistort(rec, image_dir: Path, out: Path):
    """Undistort the registered photos of ``rec`` to pinhole cameras under ``out/`` (``images/``, ``sparse/``);
    returns the undistorted reconstruction."""
    import pycolmap

    model = out / "distorted"
    model.mkdir(parents=True)
    rec.write(str(model))
    from posfeat.sfm.colmap import colmap_log_level

    with colmap_log_level(False):
        pycolmap.undistort_images(str(out / "undistorted"), str(model), str(image_dir), output_type="COLMAP")
    return pycolmap.Reconstruction(str(out / "undistorted" / "sparse")), out / "undistorted" / "images"


# ----------------------------------------------------------------------------------------- layout
def pinhole_cameras(rec) -> list[Camera]:
    """The registered images of a pinhole reconstruction as cameras, sorted by name."""
    from posfeat.sfm.colmap import rigid_to_Rt

    cams = []
    for image in sorted(rec.images.values(), key=lambda im: im.name):
        if not image.has_pose:
            continue
        cam = rec.cameras[image.camera_id]
        if cam.model.name != "PINHOLE":
            raise ValueError(f"{image.name}: camera model {cam.model.name}, expected PINHOLE (undistort first)")
        fx, fy, cx, cy = cam.params
        R, t = rigid_to_Rt(image.cam_from_world())
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float64)
        cams.append(Camera(name=image.name, width=cam.width, height=cam.height, K=K, R=R, t=t))
    return cams


def covisible_pairs(rec, min_covisibility: float, rot_thr: float) -> list[tuple[str, str]]:
    """Pairs of registered images that each see at least ``min_covisibility`` of the other's 3D points
    (shared points / own points), with a relative rotation of at most ``rot_thr`` degrees."""
    from posfeat.sfm.colmap import rigid_to_Rt

    points, rots = {}, {}
    for image in rec.images.values():
        if image.has_pose:
            points[image.name] = {p.point3D_id for p in image.points2D if p.has_point3D()}
            rots[image.name] = rigid_to_Rt(image.cam_from_world())[0]
    pairs = []
    for a, b in itertools.combinations(sorted(points), 2):
        pa, pb = points[a], points[b]
        if not pa or not pb:
            continue
        shared = len(pa & pb)
        if shared / len(pa) < min_covisibility or shared / len(pb) < min_covisibility:
            continue
        cos = (np.trace(rots[a] @ rots[b].T) - 1) / 2
        if np.degrees(np.arccos(np.clip(cos, -1, 1))) <= rot_thr:
            pairs.append((a, b))
    return pairs


def write_scene(rec, image_dir: Path, scene_dir: Path, cfg: PhotosConfig) -> int:
    """One MegaDepth-layout scene (``dense0/aligned``) from a pinhole reconstruction; returns its pairs."""
    aligned = scene_dir / "dense0" / "aligned"
    cams = pinhole_cameras(rec)
    pairs = covisible_pairs(rec, cfg.min_covisibility, cfg.rot_thr)
    if not pairs:
        raise DataError(
            f"{scene_dir.name}: the model has no pair sharing {cfg.min_covisibility:.0%} of its 3D points "
            f"within {cfg.rot_thr:g}°; the photos need more overlap"
        )
    for cam in cams:
        (aligned / "images" / cam.name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image_dir / cam.name, aligned / "images" / cam.name)
    write_img_cam(aligned / "img_cam.txt", ((cam.name, cam) for cam in cams))
    write_pair_list(aligned / "pairs.txt", pairs)
    return len(pairs)


def _model_input(folder: Path):
    """``(reconstruction, image folder)`` of a collection that ships its own COLMAP model."""
    import pycolmap

    return pycolmap.Reconstruction(str(_model_dir(folder))), folder / "images"


def build_collection(name: str, folder: Path, out_scene: Path, work: Path, cfg: PhotosConfig) -> CollectionReport:
    """Reconstruct (or read) one collection and write its scene to ``out_scene``; a :class:`DataError` when
    it cannot be made a training scene."""
    t0 = time.perf_counter()
    report = CollectionReport(name, str(folder))
    if _model_dir(folder) is not None:
        rec, image_dir = _model_input(folder)
        report.from_model = True
        report.num_images = len(rec.images)
    else:
        names = check_photos(folder, cfg)
        report.num_images = len(names)
        rec, image_dir, report.focal_sources = reconstruct_collection(folder, names, work, cfg)
    report.num_registered = rec.num_reg_images()
    if report.num_registered < max(2, cfg.min_registered * report.num_images):
        raise DataError(
            f"{folder}: only {report.num_registered} of {report.num_images} photos registered (at least "
            f"{cfg.min_registered:.0%} needed); the photos need more overlap"
        )
    pinhole, undistorted = undistort(rec, image_dir, work / "undistort")
    report.num_points3D = pinhole.num_points3D()
    report.num_pairs = write_scene(pinhole, undistorted, out_scene, cfg)
    report.seconds = round(time.perf_counter() - t0, 2)
    return report


def build_training_set(
    root: str | os.PathLike,
    out: str | os.PathLike,
    config: PhotosConfig | None = None,
    work: str | os.PathLike | None = None,
    manifest: str | os.PathLike | None = None,
) -> dict:
    """Every collection under ``root`` as a scene of the MegaDepth-layout folder ``out``.

    Collections that fail are logged and counted (``skipped``); ``out`` is written atomically, and only
    when at least one collection succeeded. ``manifest``: also write the metadata manifest there (what
    ``datasets.megadepth_metadata`` names). Returns the report (also ``out/photos_report.json``).
    """
    import tempfile

    from posfeat.trainset.manifest import write_metadata_manifest

    cfg = config or PhotosConfig()
    collections = find_collections(root)
    reports: list[CollectionReport] = []
    with tempfile.TemporaryDirectory(prefix="posfeat_photos_", dir=work) as scratch, atomic_path(out) as tmp:
        tmp.mkdir(parents=True, exist_ok=True)
        for name, folder in collections.items():
            try:
                reports.append(build_collection(name, folder, tmp / name, Path(scratch) / name, cfg))
                r = reports[-1]
                logger.info(
                    "%s: %d/%d photos registered, %d points, %d pairs (%.0f s)",
                    name,
                    r.num_registered,
                    r.num_images,
                    r.num_points3D,
                    r.num_pairs,
                    r.seconds,
                )
            except DataError as e:
                shutil.rmtree(tmp / name, ignore_errors=True)
                reports.append(CollectionReport(name, str(folder), skipped=str(e)))
                logger.warning("%s: skipped: %s", name, e)
        done = [r for r in reports if r.skipped is None]
        if not done:
            reasons = "; ".join(r.skipped for r in reports)
            raise DataError(f"{root}: no collection became a training scene ({reasons})")
        summary = {
            "root": str(root),
            "collections": len(reports),
            "scenes": len(done),
            "skipped": len(reports) - len(done),
            "images": sum(r.num_registered for r in done),
            "pairs": sum(r.num_pairs for r in done),
            "config": asdict(cfg),
            "per_collection": [asdict(r) for r in reports],
        }
        write_json(tmp / "photos_report.json", summary)
    if manifest is not None:
        write_metadata_manifest(out, manifest)
    return summary
