"""COLMAP I/O through pycolmap (4.x): databases, keypoint/match import, cameras, poses, models.

Everything the ETH and Aachen evaluations write to or read from a COLMAP database goes through this module
(matching into it is :mod:`posfeat.sfm.matching`, two-view verification :mod:`posfeat.sfm.verification`):

* a database is created with :func:`create_database`; cameras and images are added with
  :func:`add_camera` / :func:`add_image`. pycolmap 4 stores images inside *frames* of *rigs*: every
  camera gets a trivial rig (itself as the reference sensor) and every image a trivial frame of that
  rig, exactly what COLMAP's own image importer writes;
* keypoints are imported with :func:`import_keypoints`. Our convention puts the centre of the top-left
  pixel at (0, 0); COLMAP puts it at (0.5, 0.5), so **0.5 is added on import** and subtracted by
  :func:`from_colmap_keypoints`. Camera matrices given in our convention are shifted the same way
  (:func:`camera_from_K`);
* matches are written with :func:`import_matches` (pycolmap orders the pair and swaps columns) and read
  back, raw or verified, with :func:`read_matches` / :func:`read_inlier_matches`;
* pose helpers convert between ``pycolmap.Rigid3d`` (cam_from_world) and R/t or qvec (w, x, y, z)/t;
* model helpers give the ETH benchmark's statistics, the largest model and the mapper's options;
* :func:`watch_space`: inside it, every keypoint and match import first checks that the database's disk has
  room for it. pycolmap ends the whole process (``std::terminate``) when SQLite cannot write, so a full disk
  must be found before the write, where it can still be one clear error.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np
import pycolmap

from posfeat.io import DataError
from posfeat.utils import get_logger

log = get_logger(__name__)

#: COLMAP's pixel coordinates minus ours (COLMAP: centre of the top-left pixel at (0.5, 0.5)).
COLMAP_PIXEL_OFFSET = 0.5


@contextlib.contextmanager
def colmap_log_level(verbose: bool = False):
    """Silence COLMAP's INFO log lines (glog, on stderr) inside the block unless ``verbose``."""
    old = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = int(pycolmap.logging.INFO if verbose else pycolmap.logging.WARNING)
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = old


# ------------------------------------------------------------------------------------ coordinates
def to_colmap_keypoints(xy: np.ndarray) -> np.ndarray:
    """Our keypoints (N×2, top-left pixel centre at 0) → COLMAP's (N×2 float32, centre at 0.5)."""
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    return np.ascontiguousarray(xy + COLMAP_PIXEL_OFFSET, dtype=np.float32)


def from_colmap_keypoints(xy: np.ndarray) -> np.ndarray:
    """COLMAP keypoints (N×2 or N×k with x, y first) → ours (N×2 float32)."""
    xy = np.asarray(xy, np.float64)
    xy = xy.reshape(len(xy), -1)[:, :2] if xy.size else np.zeros((0, 2))
    return np.ascontiguousarray(xy - COLMAP_PIXEL_OFFSET, dtype=np.float32)


# ------------------------------------------------------------------------------------ cameras
def camera_from_K(
    K: np.ndarray, width: int, height: int, camera_id: int = pycolmap.INVALID_CAMERA_ID
) -> pycolmap.Camera:
    """PINHOLE camera from a 3×3 K in **our** pixel convention (the principal point moves by +0.5)."""
    K = np.asarray(K, np.float64)
    params = [K[0, 0], K[1, 1], K[0, 2] + COLMAP_PIXEL_OFFSET, K[1, 2] + COLMAP_PIXEL_OFFSET]
    cam = pycolmap.Camera(model="PINHOLE", width=int(width), height=int(height), params=params)
    cam.camera_id = int(camera_id)
    cam.has_prior_focal_length = True
    return cam


def guess_camera(
    width: int,
    height: int,
    model: str = "SIMPLE_RADIAL",
    focal_factor: float = 1.2,
    camera_id: int = pycolmap.INVALID_CAMERA_ID,
) -> pycolmap.Camera:
    """COLMAP's guess for an image without known intrinsics: f = 1.2·max(w, h), principal point at the centre."""
    cam = pycolmap.Camera.create_from_model_name(
        int(camera_id), model, focal_factor * max(width, height), int(width), int(height)
    )
    cam.has_prior_focal_length = False
    return cam


# ------------------------------------------------------------------------------------ poses
def rigid_to_Rt(pose: pycolmap.Rigid3d) -> tuple[np.ndarray, np.ndarray]:
    """(R 3×3, t 3) of a ``pycolmap.Rigid3d``."""
    return np.asarray(pose.rotation.matrix(), np.float64), np.asarray(pose.translation, np.float64).reshape(3)


def rigid_to_qvec_tvec(pose: pycolmap.Rigid3d) -> tuple[np.ndarray, np.ndarray]:
    """(qvec (qw, qx, qy, qz) with qw ≥ 0, tvec) of a ``Rigid3d`` — COLMAP's images.txt convention."""
    x, y, z, w = np.asarray(pose.rotation.quat, np.float64)
    q = np.array([w, x, y, z])
    q /= np.linalg.norm(q)
    if q[0] < 0:
        q = -q
    return q, np.asarray(pose.translation, np.float64).reshape(3)


# ------------------------------------------------------------------------------------ database
def create_database(path: str | os.PathLike, overwrite: bool = True) -> pycolmap.Database:
    """Create an empty COLMAP database at ``path`` (an existing file is removed when ``overwrite``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"{path}: database already exists")
        path.unlink()
    for suffix in ("-wal", "-shm", "-journal"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.unlink()
    return pycolmap.Database.open(str(path))


def add_camera(db: pycolmap.Database, camera: pycolmap.Camera, use_camera_id: bool = False) -> int:
    """Write a camera and its trivial rig (the camera as reference sensor); returns the camera id."""
    camera_id = db.write_camera(camera, use_camera_id=use_camera_id)
    rig = pycolmap.Rig()
    rig.add_ref_sensor(pycolmap.sensor_t(pycolmap.SensorType.CAMERA, int(camera_id)))
    rig.rig_id = int(camera_id)
    db.write_rig(rig, use_rig_id=True)
    return int(camera_id)


def add_image(db: pycolmap.Database, name: str, camera_id: int, image_id: int | None = None) -> int:
    """Write an image and its trivial frame (rig of its camera); returns the image id.

    ``image_id``: keep this id (as when the database must agree with an existing reconstruction).
    """
    image = pycolmap.Image(name=str(name), camera_id=int(camera_id))
    if image_id is not None:
        image.image_id = int(image_id)
    image_id = int(db.write_image(image, use_image_id=image_id is not None))
    frame = pycolmap.Frame()
    frame.rig_id = int(camera_id)
    frame.frame_id = image_id
    frame.add_data_id(pycolmap.data_t(pycolmap.sensor_t(pycolmap.SensorType.CAMERA, int(camera_id)), image_id))
    db.write_frame(frame, use_frame_id=True)
    return image_id


@contextlib.contextmanager
def open_database(path: str | os.PathLike) -> Iterator[pycolmap.Database]:
    """An existing COLMAP database, closed on exit."""
    db = pycolmap.Database.open(str(path))
    try:
        yield db
    finally:
        db.close()


#: bytes a database's disk must keep free beyond the write at hand (SQLite's journal, pages, the mapper's models)
SPACE_MARGIN = 64 << 20
_WATCHED: list[Path] = []


@contextlib.contextmanager
def watch_space(database_path: str | os.PathLike):
    """Check the free space of ``database_path``'s disk before every import in the block (:func:`need_space`)."""
    _WATCHED.append(Path(database_path))
    try:
        yield
    finally:
        _WATCHED.pop()


def need_space(nbytes: int) -> None:
    """Inside :func:`watch_space`: :func:`check_space` of the watched database; outside it, nothing."""
    if _WATCHED:
        check_space(_WATCHED[-1], nbytes)


def check_space(path: str | os.PathLike, nbytes: int) -> None:
    """A :class:`DataError` naming the database ``path`` unless its disk has ``nbytes`` (twice, for SQLite's
    journal) plus :data:`SPACE_MARGIN` free."""
    path = Path(path)
    free = shutil.disk_usage(path.parent).free
    need = 2 * int(nbytes) + SPACE_MARGIN
    if free < need:
        raise DataError(
            f"{path}: not written, no space left: {free / 1e6:.0f} MB free on its disk, the next write needs "
            f"{need / 1e6:.0f} MB; free space or put the work folder elsewhere, then rerun"
        )


def import_keypoints(db: pycolmap.Database, image_id: int, keypoints_xy: np.ndarray) -> int:
    """Store an image's keypoints (our convention, N×2) in COLMAP's convention; returns N."""
    kp = to_colmap_keypoints(keypoints_xy)
    need_space(kp.nbytes)
    db.write_keypoints(int(image_id), kp)
    return len(kp)


def import_matches(db: pycolmap.Database, image_id1: int, image_id2: int, matches: np.ndarray) -> int:
    """Store the raw matches (M×2 keypoint indices, image 1 then image 2); returns M (0: nothing written)."""
    m = np.asarray(matches).reshape(-1, 2)
    if len(m) == 0:
        return 0
    if image_id1 == image_id2:
        raise ValueError(f"cannot match image {image_id1} with itself")
    need_space(m.shape[0] * 8)
    db.write_matches(int(image_id1), int(image_id2), np.ascontiguousarray(m, dtype=np.uint32))
    return len(m)


def read_matches(db: pycolmap.Database, image_id1: int, image_id2: int) -> np.ndarray:
    """Raw matches of a pair as M×2 (columns in the order of the arguments)."""
    if not db.exists_matches(int(image_id1), int(image_id2)):
        return np.zeros((0, 2), np.int64)
    return np.asarray(db.read_matches(int(image_id1), int(image_id2)), np.int64).reshape(-1, 2)


def read_inlier_matches(db: pycolmap.Database, image_id1: int, image_id2: int) -> np.ndarray:
    """Geometrically verified matches of a pair as M×2 (columns in the order of the arguments)."""
    if not db.exists_two_view_geometry(int(image_id1), int(image_id2)):
        return np.zeros((0, 2), np.int64)
    tvg = db.read_two_view_geometry(int(image_id1), int(image_id2))
    return np.asarray(tvg.inlier_matches, np.int64).reshape(-1, 2)


def write_pairs_file(path: str | os.PathLike, pairs: Iterable[tuple[str, str]]) -> int:
    """Write ``nameA nameB`` lines (COLMAP's match list); returns the number of pairs."""
    lines = []
    for a, b in pairs:
        if " " in a or " " in b:
            raise DataError(f"{path}: image names with spaces cannot go into a COLMAP pair list ({a!r}, {b!r})")
        lines.append(f"{a} {b}")
    Path(path).write_text("\n".join(lines) + ("\n" if lines else ""))
    return len(lines)


def ensure_rigs_and_frames(db: pycolmap.Database) -> int:
    """Give a database of the pre-4.0 schema (cameras and images only) COLMAP 4's trivial rigs and frames.

    Databases written by COLMAP 3 (such as the ETH benchmark's ``database.db``) have no rigs or frames,
    and pycolmap 4's mapper reads images through their frames. Each camera gets a rig with itself as
    the reference sensor and each image a frame of that rig (what COLMAP 4's image importer writes).
    Returns the number of frames added (0 when the database already has frames).
    """
    if db.num_frames() > 0:
        return 0
    for cam in db.read_all_cameras():
        if not db.exists_rig(int(cam.camera_id)):
            rig = pycolmap.Rig()
            rig.add_ref_sensor(pycolmap.sensor_t(pycolmap.SensorType.CAMERA, int(cam.camera_id)))
            rig.rig_id = int(cam.camera_id)
            db.write_rig(rig, use_rig_id=True)
    n = 0
    for im in db.read_all_images():
        frame = pycolmap.Frame()
        frame.rig_id = int(im.camera_id)
        frame.frame_id = int(im.image_id)
        frame.add_data_id(
            pycolmap.data_t(pycolmap.sensor_t(pycolmap.SensorType.CAMERA, int(im.camera_id)), int(im.image_id))
        )
        db.write_frame(frame, use_frame_id=True)
        n += 1
    return n


def copy_database_without_features(src: str | os.PathLike, dst: str | os.PathLike) -> pycolmap.Database:
    """Copy a COLMAP database (a benchmark's ``database.db``) and empty its feature tables.

    Cameras (with their prior focal lengths), images (names and ids) and pose priors are kept;
    keypoints, descriptors, matches and two-view geometries are cleared (as the ETH kit's script does),
    and pre-4.0 databases get trivial rigs and frames (:func:`ensure_rigs_and_frames`). Returns the
    open copy.
    """
    import shutil

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise DataError(f"{src}: COLMAP database not found")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    try:
        db = pycolmap.Database.open(str(dst))
        db.num_images()
    except Exception as e:  # pycolmap raises ValueError/RuntimeError on a file that is not a database
        raise DataError(
            f"{src}: expected a COLMAP database (sqlite with cameras/images tables), could not open it ({e})"
        ) from e
    db.clear_two_view_geometries()
    db.clear_matches()
    db.clear_descriptors()
    db.clear_keypoints()
    ensure_rigs_and_frames(db)
    return db


# ------------------------------------------------------------------------------------ reconstructions
def reconstruction_stats(rec: pycolmap.Reconstruction | None) -> dict[str, float]:
    """The ETH benchmark's statistics of a model (what ``colmap model_analyzer`` prints); zeros for None."""
    if rec is None or rec.num_reg_images() == 0:
        return {
            "num_reg_images": 0,
            "num_sparse_points": 0,
            "num_observations": 0,
            "mean_track_length": 0.0,
            "num_observations_per_image": 0.0,
            "mean_reproj_error": 0.0,
        }
    return {
        "num_reg_images": int(rec.num_reg_images()),
        "num_sparse_points": int(rec.num_points3D()),
        "num_observations": int(rec.compute_num_observations()),
        "mean_track_length": float(rec.compute_mean_track_length()),
        "num_observations_per_image": float(rec.compute_mean_observations_per_reg_image()),
        "mean_reproj_error": float(rec.compute_mean_reprojection_error()),
    }


def largest_model(models: Mapping[int, pycolmap.Reconstruction]) -> pycolmap.Reconstruction | None:
    """The model with the most registered images (ties: more 3D points, then the lowest index)."""
    best = None
    for _, rec in sorted(models.items()):
        if best is None or (rec.num_reg_images(), rec.num_points3D()) > (best.num_reg_images(), best.num_points3D()):
            best = rec
    return best


def registered_poses(rec: pycolmap.Reconstruction) -> dict[str, pycolmap.Rigid3d]:
    """``{image name: cam_from_world}`` of the registered images of a model."""
    return {rec.image(i).name: rec.image(i).cam_from_world() for i in rec.reg_image_ids()}


def mapper_options(
    num_threads: int = -1,
    seed: int | None = 0,
    min_num_matches: int = 15,
    refine_intrinsics: bool = True,
    structure_less_fallback: bool = True,
) -> pycolmap.IncrementalPipelineOptions:
    """Incremental mapper options (COLMAP defaults), seeded for repeatable runs.

    ``structure_less_fallback``: when no image can be registered from its 2D–3D matches, try registration from
    2D–2D matches (COLMAP 3.13 and later).
    """
    opts = pycolmap.IncrementalPipelineOptions()
    opts.num_threads = int(num_threads)
    opts.min_num_matches = int(min_num_matches)
    opts.extract_colors = False
    opts.structure_less_registration_fallback = bool(structure_less_fallback)
    if seed is not None:
        opts.random_seed = int(seed)
    opts.ba_refine_focal_length = bool(refine_intrinsics)
    opts.ba_refine_extra_params = bool(refine_intrinsics)
    opts.ba_refine_principal_point = False
    return opts
