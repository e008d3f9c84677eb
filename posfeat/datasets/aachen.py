"""Aachen Day-Night, v1.1 and v1.0 release layouts (docs/paper-scale.md#dataset-layouts).

Layout (paths relative to the dataset root)::

    images/images_upright/{db,query,sequences}/...       image names are relative to this folder
    3D-models/aachen_v_1_1/{cameras,images,points3D}.bin  v1.1 reference model (or .txt)
    3D-models/aachen_v_1_1/database_intrinsics_v1_1.txt
    3D-models/aachen_cvpr2018_db.nvm                      v1.0 reference poses (also under 3D-models/aachen_v_1/)
    3D-models/database_intrinsics.txt                     v1.0 intrinsics   (also under 3D-models/aachen_v_1/)
    queries/day_time_queries_with_intrinsics.txt          name MODEL w h params...
    queries/night_time_queries_with_intrinsics_v1_1.txt   (v1.1; v1.0: night_time_queries_with_intrinsics.txt)
    queries/ground_truth_queries.txt                      name qw qx qy qz tx ty tz (optional; world→camera)
    others/image_pairs_to_match_v1_1.txt                  (v1.0: others/image_pairs_to_match.txt)

Every reader validates what it reads and raises :class:`posfeat.io.DataError` naming file and line.
Camera models and their parameter counts come from pycolmap.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pycolmap

from posfeat.datasets.aachen_layout import MODEL_FILES, AachenLayout
from posfeat.datasets.camera import qvec_to_rotmat
from posfeat.datasets.records import check_field_count, iter_records, parse_float, parse_int, read_pair_list
from posfeat.io import DataError

QUAT_NORM_TOL = 1e-3
"""|‖q‖ − 1| allowed for a quaternion read from text (files are rounded)."""

CAMERA_LINE = "name MODEL w h params..."


# ------------------------------------------------------------------------------------ camera models
def camera_model_num_params(model: str) -> int | None:
    """Number of parameters of a COLMAP camera model (``None`` if pycolmap does not know the name)."""
    if model not in pycolmap.CameraModelId.__members__ or model == "INVALID":
        return None
    return len(pycolmap.Camera.create_from_model_name(1, model, 1.0, 1, 1).params)


def _parse_camera_fields(fields: list[str], where: str) -> tuple[str, str, int, int, np.ndarray]:
    """``name MODEL w h params…`` → ``(name, model, w, h, params)``, validated."""
    if len(fields) < 5:
        raise DataError(f"{where}: expected at least 5 fields ({CAMERA_LINE}), found {len(fields)}")
    name, model = fields[0], fields[1]
    n = camera_model_num_params(model)
    if n is None:
        raise DataError(f"{where}: expected a COLMAP camera model (e.g. SIMPLE_RADIAL, PINHOLE), found {model!r}")
    w = parse_int(fields[2], where, "width")
    h = parse_int(fields[3], where, "height")
    if len(fields) - 4 != n:
        raise DataError(f"{where}: expected {n} parameters for camera model {model}, found {len(fields) - 4}")
    params = np.array([parse_float(x, where, f"parameter {i + 1}") for i, x in enumerate(fields[4:])], np.float64)
    cam = pycolmap.Camera.create_from_model_name(1, model, 1.0, w, h)
    for i in cam.focal_length_idxs():
        if params[i] <= 0:
            raise DataError(f"{where}: expected a focal length > 0 for {model}, found {params[i]:g}")
    return name, model, w, h, params


def make_camera(model: str, width: int, height: int, params: np.ndarray, camera_id: int = 1) -> pycolmap.Camera:
    """A ``pycolmap.Camera`` from a parsed intrinsics line."""
    return pycolmap.Camera(
        camera_id=camera_id, model=model, width=int(width), height=int(height), params=np.asarray(params, float)
    )


# ------------------------------------------------------------------------------------------ queries
@dataclass
class QueryCamera:
    """A query image with its intrinsics (``name`` is relative to ``images/images_upright``)."""

    name: str  # e.g. "query/night/nexus5x/x.jpg"
    model: str
    width: int
    height: int
    params: np.ndarray
    condition: str  # 'day' | 'night'

    def to_pycolmap(self, camera_id: int = 1) -> pycolmap.Camera:
        return make_camera(self.model, self.width, self.height, self.params, camera_id)


def _check_image(image_dir: str | os.PathLike | None, name: str, where: str) -> None:
    """Raise :class:`DataError` at ``where`` unless ``image_dir/name`` exists (no check if ``image_dir`` is None)."""
    if image_dir is not None and not (Path(image_dir) / name).is_file():
        raise DataError(f"{where}: expected image {name!r} under {image_dir}, found no such file")


def read_query_list(
    path: str | os.PathLike, condition: str, image_dir: str | os.PathLike | None = None
) -> list[QueryCamera]:
    """Read a ``*_queries_with_intrinsics*.txt`` file (``name MODEL w h params…``) as ``condition`` queries.

    With ``image_dir`` (``images/images_upright``) every query image must exist there (existence only).
    """
    if condition not in ("day", "night"):
        raise ValueError(f"condition must be 'day' or 'night', got {condition!r}")
    path = Path(path)
    out: list[QueryCamera] = []
    seen: dict[str, int] = {}
    for lineno, fields in iter_records(path, f"a query list ({CAMERA_LINE})"):
        where = f"{path}:{lineno}"
        name, model, w, h, params = _parse_camera_fields(fields, where)
        if name in seen:
            raise DataError(f"{where}: expected unique query names, found {name!r} again (first on line {seen[name]})")
        _check_image(image_dir, name, where)
        seen[name] = lineno
        out.append(QueryCamera(name=name, model=model, width=w, height=h, params=params, condition=condition))
    return out


def read_pairs(path: str | os.PathLike, known: set[str] | None = None) -> list[tuple[str, str]]:
    """An Aachen pair list (``image_pairs_to_match*.txt``): :func:`~posfeat.datasets.records.read_pair_list`,
    every name (given ``known``) a database or query image."""
    return read_pair_list(path, known, known_as="a database or query image name")


def _parse_unit_quaternion(fields: list[str], where: str, names: str = "qw qx qy qz") -> np.ndarray:
    q = np.array([parse_float(x, where, n) for x, n in zip(fields, names.split())], np.float64)
    norm = float(np.linalg.norm(q))
    if abs(norm - 1.0) > QUAT_NORM_TOL:
        raise DataError(f"{where}: expected a unit quaternion ({names}), found norm {norm:.6g}")
    return q / norm


def read_ground_truth(path: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read query poses ``name qw qx qy qz tx ty tz`` (world→camera) → ``{name: (qvec (w,x,y,z), tvec)}``.

    The quaternion must have unit norm (±1e-3); it is returned renormalised.
    """
    path = Path(path)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    seen: dict[str, int] = {}
    layout = "name qw qx qy qz tx ty tz"
    for lineno, fields in iter_records(path, f"query ground truth ({layout})"):
        where = f"{path}:{lineno}"
        check_field_count(fields, 8, where, layout)
        name = fields[0]
        if name in seen:
            raise DataError(f"{where}: expected unique names, found {name!r} again (first on line {seen[name]})")
        seen[name] = lineno
        q = _parse_unit_quaternion(fields[1:5], where)
        t = np.array([parse_float(x, where, n) for x, n in zip(fields[5:8], ("tx", "ty", "tz"))], np.float64)
        out[name] = (q, t)
    return out


# ----------------------------------------------------------------------------------- v1.0 reference
def read_database_intrinsics(
    path: str | os.PathLike, image_dir: str | os.PathLike | None = None
) -> dict[str, tuple[str, int, int, np.ndarray]]:
    """Read ``database_intrinsics*.txt`` (``name MODEL w h params…``) → ``{name: (model, w, h, params)}``.

    With ``image_dir`` every named image must exist there (existence only).
    """
    path = Path(path)
    out: dict[str, tuple[str, int, int, np.ndarray]] = {}
    seen: dict[str, int] = {}
    for lineno, fields in iter_records(path, f"database intrinsics ({CAMERA_LINE})"):
        where = f"{path}:{lineno}"
        name, model, w, h, params = _parse_camera_fields(fields, where)
        if name in seen:
            raise DataError(f"{where}: expected unique names, found {name!r} again (first on line {seen[name]})")
        _check_image(image_dir, name, where)
        seen[name] = lineno
        out[name] = (model, w, h, params)
    if not out:
        raise DataError(f"{path}: expected at least one intrinsics line ({CAMERA_LINE}), found none")
    return out


NVM_CAMERA = "name f qw qx qy qz cx cy cz d 0"


def read_nvm(path: str | os.PathLike, intrinsics: dict | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read the cameras of an NVM_V3 file → ``{name: (R, t)}`` world→camera, with ``t = −R(q)·c``.

    Camera lines are ``name f qw qx qy qz cx cy cz d 0`` (q rotates world to camera, c is the centre);
    the 3D points after them are not read. With ``intrinsics`` (from :func:`read_database_intrinsics`)
    every camera name must appear in it (Aachen v1.0 names are ``db/123.jpg`` in both files).
    """
    path = Path(path)
    records = iter_records(path, "an NVM_V3 model")
    try:
        lineno, fields = next(records)
    except StopIteration:
        raise DataError(f"{path}: expected an NVM_V3 header, found an empty file") from None
    if fields[0] != "NVM_V3":
        raise DataError(f"{path}:{lineno}: expected the header NVM_V3, found {fields[0]!r}")
    try:
        lineno, fields = next(records)
    except StopIteration:
        raise DataError(f"{path}: expected the number of cameras after the header, found end of file") from None
    check_field_count(fields, 1, f"{path}:{lineno}", "number of cameras")
    n = parse_int(fields[0], f"{path}:{lineno}", "number of cameras")
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    seen: dict[str, int] = {}
    for _ in range(n):
        try:
            lineno, fields = next(records)
        except StopIteration:
            raise DataError(f"{path}: expected {n} camera lines, found {len(out)} before the end of file") from None
        where = f"{path}:{lineno}"
        check_field_count(fields, 11, where, NVM_CAMERA)
        name = fields[0]
        if name in seen:
            raise DataError(f"{where}: expected unique camera names, found {name!r} again (first on line {seen[name]})")
        seen[name] = lineno
        f = parse_float(fields[1], where, "f")
        if f <= 0:
            raise DataError(f"{where}: expected focal length f > 0, found {f:g}")
        q = _parse_unit_quaternion(fields[2:6], where)
        c = np.array([parse_float(x, where, k) for x, k in zip(fields[6:9], ("cx", "cy", "cz"))], np.float64)
        parse_float(fields[9], where, "d")
        if intrinsics is not None and name not in intrinsics:
            raise DataError(f"{where}: expected a camera listed in the database intrinsics, found unknown {name!r}")
        R = qvec_to_rotmat(q)
        out[name] = (R, -R @ c)
    return out


def load_queries(root: str | os.PathLike, check_images: bool = True) -> list[QueryCamera]:
    """All queries of the present query lists (day first, then night); at least one list is required.

    With ``check_images`` every query image must exist under ``images/images_upright``.
    """
    layout = AachenLayout.detect(root)
    lists = layout.query_lists
    if not lists:
        raise DataError(
            f"{layout.root / 'queries'}: expected *_time_queries_with_intrinsics*.txt query lists, found none"
        )
    image_dir = layout.image_dir if check_images else None
    out: list[QueryCamera] = []
    for cond in ("day", "night"):
        if cond in lists:
            out += read_query_list(lists[cond], cond, image_dir)
    names = [q.name for q in out]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})[:3]
        raise DataError(f"{layout.root / 'queries'}: expected each query in one list only, found {dup} in both")
    return out


def _model_files_present(d: Path) -> str | None:
    for ext in (".bin", ".txt"):
        if all((d / f"{n}{ext}").is_file() for n in MODEL_FILES):
            return ext
    return None


def reconstruction_from_poses(
    poses: dict[str, tuple[np.ndarray, np.ndarray]], intrinsics: dict[str, tuple[str, int, int, np.ndarray]]
) -> pycolmap.Reconstruction:
    """A point-less ``pycolmap.Reconstruction`` with one camera (and trivial rig/frame) per image.

    Images get ids ``1..N`` in sorted-name order; ``camera_id == image_id``.
    """
    rec = pycolmap.Reconstruction()
    for i, name in enumerate(sorted(poses), 1):
        if name not in intrinsics:
            raise DataError(f"no intrinsics for reference image {name!r}")
        model, w, h, params = intrinsics[name]
        rec.add_camera_with_trivial_rig(make_camera(model, w, h, params, camera_id=i))
        R, t = poses[name]
        pose = pycolmap.Rigid3d(np.concatenate([np.asarray(R, float), np.asarray(t, float).reshape(3, 1)], 1))
        rec.add_image_with_trivial_frame(pycolmap.Image(name=name, camera_id=i, image_id=i), pose)
    return rec


def load_reference(root: str | os.PathLike, check_images: bool = True) -> pycolmap.Reconstruction:
    """The reference (database) model with known poses.

    v1.1: ``pycolmap.Reconstruction`` of ``3D-models/aachen_v_1_1`` (cameras/images/points3D, .bin or .txt).
    v1.0: built from ``aachen_cvpr2018_db.nvm`` + ``database_intrinsics.txt`` (no 3D points).
    With ``check_images`` every reference image must exist under ``images/images_upright``.
    """
    layout = AachenLayout.detect(root)
    rec = _load_reference_model(layout)
    if check_images:
        missing = sorted(im.name for im in rec.images.values() if not (layout.image_dir / im.name).is_file())
        if missing:
            raise DataError(
                f"{layout.model_dir}: expected the {rec.num_images()} reference images under {layout.image_dir}, "
                f"found {len(missing)} missing, e.g. {missing[:3]}"
            )
    return rec


def _load_reference_model(layout: AachenLayout) -> pycolmap.Reconstruction:
    d = layout.model_dir
    if layout.version == "1.1":
        if _model_files_present(d) is None:
            raise DataError(
                f"{d}: expected a COLMAP model ({', '.join(MODEL_FILES)} as .bin or .txt), "
                f"found {sorted(p.name for p in d.iterdir())}"
            )
        try:
            rec = pycolmap.Reconstruction(str(d))
        except Exception as e:  # pycolmap raises ValueError/RuntimeError on corrupt files
            raise DataError(f"{d}: cannot read the COLMAP model: {e}") from e
        if rec.num_images() == 0:
            raise DataError(f"{d}: expected a reference model with images, found none")
        return rec
    intr = read_database_intrinsics(layout.database_intrinsics)
    poses = read_nvm(layout.nvm, intr)
    if not poses:
        raise DataError(f"{layout.nvm}: expected at least one camera, found none")
    return reconstruction_from_poses(poses, intr)
