"""ETH local feature benchmark (docs/paper-scale.md#dataset-layouts): ``<root>/<Scene>/images/*``.

A ``database.db`` may be present and is not required. An optional ``gt_cameras.txt`` in the scene folder
uses the ``img_cam.txt`` line format (``name w h fx fy cx cy R11..R33 t1 t2 t3``, world→camera).
Its names are bare image file names (``x.jpg``, as in ``img_cam.txt``); ``images/x.jpg`` is accepted
too and stored under the bare name.
"""

from __future__ import annotations

import os
from pathlib import Path

from posfeat.datasets.camera import Camera
from posfeat.datasets.images import list_images
from posfeat.datasets.megadepth import IMG_CAM_FIELDS, parse_camera_line
from posfeat.datasets.records import iter_records
from posfeat.io import DataError

GT_CAMERAS = "gt_cameras.txt"


def list_scenes(root: str | os.PathLike) -> list[str]:
    """Sorted names of the scene folders under ``root`` that contain ``images/``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: ETH benchmark root not found (expected <root>/<Scene>/images/)")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "images").is_dir())


def list_scene_images(scene_dir: str | os.PathLike) -> list[str]:
    """Image names relative to the scene folder (``"images/x.jpg"``), sorted; none is an error."""
    scene_dir = Path(scene_dir)
    names = ["images/" + n for n in list_images(scene_dir / "images")]
    if not names:
        raise DataError(f"{scene_dir / 'images'}: expected images, found none")
    return names


def read_gt_cameras(scene_dir: str | os.PathLike, check_images: bool = True) -> dict[str, Camera] | None:
    """Ground-truth cameras of a scene from ``gt_cameras.txt``, keyed by bare file name; ``None`` if absent.

    Lines are validated like ``img_cam.txt`` (19 fields, rotation, positive sizes and focals, unique
    names). With ``check_images`` every named image must exist in ``images/``.
    """
    scene_dir = Path(scene_dir)
    path = scene_dir / GT_CAMERAS
    if not path.is_file():
        return None
    cams: dict[str, Camera] = {}
    seen: dict[str, int] = {}
    for lineno, fields in iter_records(path, f"{GT_CAMERAS}: {IMG_CAM_FIELDS}"):
        where = f"{path}:{lineno}"
        cam = parse_camera_line(fields, where)
        name = cam.name[len("images/") :] if cam.name.startswith("images/") else cam.name
        if not name or "/" in name:
            raise DataError(f"{where}: expected an image file name (x.jpg or images/x.jpg), found {cam.name!r}")
        if name in seen:
            raise DataError(f"{where}: expected unique image names, found {name!r} again (first on line {seen[name]})")
        if check_images and not (scene_dir / "images" / name).is_file():
            raise DataError(f"{where}: expected image {name!r} in {scene_dir / 'images'}, found no such file")
        seen[name] = lineno
        cams[name] = Camera(name=name, width=cam.width, height=cam.height, K=cam.K, R=cam.R, t=cam.t)
    if not cams:
        raise DataError(f"{path}: expected at least one camera line ({IMG_CAM_FIELDS}), found none")
    return cams
