"""The COLMAP database of an ETH scene: its cameras and images, and where their features are
(docs/method.md#eth-local-feature-benchmark).

* the scene's own ``database.db`` when the release has one (as the ETH kit and the official PoSFeat script
  use it): a copy, keeping its cameras (and their prior focal lengths), image names and ids, with its
  keypoint/descriptor/match/geometry tables emptied (:func:`posfeat.sfm.colmap.copy_database_without_features`);
* otherwise one camera per image as COLMAP's image reader makes it (``pycolmap.infer_camera_from_image``):
  the focal length from the EXIF when there is one (a *prior* focal length), else COLMAP's guess
  f = 1.2·max(w, h) without a prior; ``SIMPLE_RADIAL``, principal point at the centre.

Features may be named relative to the ETH root (``<Scene>/images/x.jpg``), the scene (``images/x.jpg``)
or the image folder (``x.jpg``) (:func:`resolve_feature_keys`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import pycolmap

from posfeat.feature_names import resolve_feature_names
from posfeat.io import DataError, FeatureReader
from posfeat.sfm import colmap
from posfeat.utils import get_logger

if TYPE_CHECKING:
    from posfeat.evaluation.eth.config import ETHConfig

log = get_logger(__name__)

#: the scene's COLMAP database, when the release has one
SCENE_DATABASE = "database.db"


def open_scene_database(
    scene_dir: Path, db_path: Path, features: FeatureReader, names: Sequence[str], cfg: "ETHConfig", protocol: dict
) -> tuple[pycolmap.Database, dict[str, int], dict[str, str], list[str]]:
    """The scene's database at ``db_path``, open, with its cameras and images (:func:`scene_database`).

    Args:
        names: image names relative to the scene folder (``images/<file>``).
        protocol: gets the cameras' source and their focal priors.
    Returns:
        ``(db, {name: image id}, {name: feature group}, names in the database)``, names relative to the image
        folder (as COLMAP wants them), in the order of ``names``.
    """
    keys_by_scene_name = resolve_feature_keys(features, scene_dir.name, names)
    folder_names = [n[len("images/") :] for n in names]  # relative to the image folder, as COLMAP wants
    keys = {dn: keys_by_scene_name[n] for dn, n in zip(folder_names, names)}
    sizes = {dn: features.image_size(keys[dn]) for dn in folder_names}
    db, ids = scene_database(scene_dir, db_path, folder_names, sizes, cfg, protocol)
    db_names = [dn for dn in folder_names if dn in ids]
    return db, ids, keys, db_names


def resolve_feature_keys(features: FeatureReader, scene: str, names: Sequence[str]) -> dict[str, str]:
    """HDF5 group of every scene image, whatever folder the features were extracted from.

    Args:
        names: image names relative to the scene folder (``images/<file>``).
    Returns:
        ``{images/<file>: group name}``: ``<Scene>/images/<file>`` (extracted from the ETH root),
        ``images/<file>`` (the scene) or ``<file>`` (the image folder), or those below a common prefix;
        an image without features is a :class:`DataError` naming the file and the image.
    """
    expected = [f"{scene}/{n}" for n in names]
    found = resolve_feature_names(
        features.names(),
        expected,
        str(features.path),
        f"images of scene {scene}",
        "(extract every image of the scene: python -m posfeat extract --images SCENE)",
    )
    return {n: found[e] for n, e in zip(names, expected)}


def _cameras_from_database(
    db: pycolmap.Database, names: Sequence[str], sizes: dict[str, tuple[int, int]], db_file: Path
) -> dict[str, int]:
    """``{name: image id}`` of the database's images; their cameras must have the features' image sizes."""
    cams = {int(c.camera_id): c for c in db.read_all_cameras()}
    ids: dict[str, int] = {}
    for im in db.read_all_images():
        if im.name not in sizes:
            continue
        cam = cams.get(int(im.camera_id))
        if cam is None:
            raise DataError(
                f"{db_file}: image {im.name!r} refers to camera {im.camera_id}, which is not in the database"
            )
        if (int(cam.width), int(cam.height)) != sizes[im.name]:
            raise DataError(
                f"{db_file}: camera {cam.camera_id} of image {im.name!r} is {cam.width}×{cam.height}, "
                f"expected the features' image size {sizes[im.name][0]}×{sizes[im.name][1]}"
            )
        ids[im.name] = int(im.image_id)
    return ids


def _camera_for_image(path: Path, size: tuple[int, int], cfg: "ETHConfig") -> tuple[pycolmap.Camera, str]:
    """The camera COLMAP's image reader makes for ``path`` (EXIF focal prior) or the guess; and its source."""
    w, h = size
    if cfg.use_exif and path.is_file():
        opts = pycolmap.ImageReaderOptions()
        opts.camera_model = cfg.camera_model
        opts.default_focal_length_factor = float(cfg.focal_factor)
        try:
            with colmap.colmap_log_level(False):
                cam = pycolmap.infer_camera_from_image(str(path), opts)
        except Exception as e:  # an image format COLMAP's reader does not know: the guess
            log.debug("%s: no camera from COLMAP's image reader (%s); guessing", path, e)
            cam = None
        if cam is not None and cam.has_prior_focal_length:
            if (int(cam.width), int(cam.height)) != (w, h):
                raise DataError(f"{path}: image is {cam.width}×{cam.height}, expected the features' image size {w}×{h}")
            return cam, "exif"
    return colmap.guess_camera(w, h, cfg.camera_model, cfg.focal_factor), "guess"


def scene_database(scene_dir: Path, db_path: Path, folder_names: list[str], sizes: dict, cfg: "ETHConfig",
                   protocol: dict) -> tuple[pycolmap.Database, dict[str, int]]:  # fmt: skip
    """The open database with the scene's cameras and images (the release's ``database.db`` when present and
    ``cfg.use_scene_database``, else one camera per image from EXIF or the guess) → ``(db, {name: id})``."""
    if cfg.use_scene_database and (scene_dir / SCENE_DATABASE).is_file():
        return _copy_of_scene_database(scene_dir, db_path, folder_names, sizes, protocol)
    return _new_scene_database(scene_dir, db_path, folder_names, sizes, cfg, protocol)


def _copy_of_scene_database(scene_dir: Path, db_path: Path, folder_names: list[str], sizes: dict,
                            protocol: dict) -> tuple[pycolmap.Database, dict[str, int]]:  # fmt: skip
    """A copy of the release's ``database.db`` without features, open; the images of ``folder_names`` in it."""
    scene, scene_db = scene_dir.name, scene_dir / SCENE_DATABASE
    db = colmap.copy_database_without_features(scene_db, db_path)
    try:
        ids = _cameras_from_database(db, folder_names, sizes, scene_db)
        n_db = db.num_images()
        if not ids:
            raise DataError(
                f"{scene_db}: none of its {n_db} images is in {scene_dir / 'images'} "
                f"(expected names relative to images/, e.g. {folder_names[0]!r})"
            )
    except BaseException:
        db.close()
        raise
    if len(ids) < len(folder_names):
        log.warning("%s: %d of the %d images in images/ are not in %s and are left out", scene,
                    len(folder_names) - len(ids), len(folder_names), scene_db)  # fmt: skip
    if len(ids) < n_db:
        log.warning("%s: %d images of %s are not in images/ and get no features", scene, n_db - len(ids), scene_db)
    protocol.update(cameras="database.db", camera_priors={"database": len(ids)})
    return db, ids


def _new_scene_database(scene_dir: Path, db_path: Path, folder_names: list[str], sizes: dict, cfg: "ETHConfig",
                        protocol: dict) -> tuple[pycolmap.Database, dict[str, int]]:  # fmt: skip
    """A new database, open, with one camera per image (EXIF focal prior, else the guess)."""
    db = colmap.create_database(db_path)
    ids = {}
    sources = {"exif": 0, "guess": 0}
    for dn in folder_names:
        cam, src = _camera_for_image(scene_dir / "images" / dn, sizes[dn], cfg)
        sources[src] += 1
        ids[dn] = colmap.add_image(db, dn, colmap.add_camera(db, cam))
    protocol.update(cameras="one per image (EXIF focal prior, else guess)", camera_priors=sources)
    return db, ids


__all__ = ["SCENE_DATABASE", "open_scene_database", "resolve_feature_keys", "scene_database"]
