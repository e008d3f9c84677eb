"""MegaDepth in the CAPS release layout (docs/paper-scale.md#dataset-layouts).

``<root>/<scene_id>/dense*/aligned/`` holds ``images/*.jpg``, ``img_cam.txt`` and ``pairs.txt``:

* ``img_cam.txt``: one line per image, ``name w h fx fy cx cy R11..R33 t1 t2 t3`` (19 fields, R and t
  world→camera, R row-major);
* ``pairs.txt``: one pair per line, ``nameA nameB``.

In every text file read here, blank lines and lines starting with ``#`` are comments. Every reader
validates what it reads and raises :class:`posfeat.io.DataError` with ``<file>:<line>: expected …, found …``.

The text-record helpers are :mod:`posfeat.datasets.records`'s, the camera :class:`posfeat.datasets.camera.Camera`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from posfeat.datasets.camera import Camera, is_rotation
from posfeat.datasets.images import image_size
from posfeat.datasets.records import check_field_count, fmt_number, iter_records, parse_float, parse_int, read_pair_list
from posfeat.io import DataError

BANNED_SCENES = ("0008", "0021", "0024", "0063", "1589")
"""MegaDepth scenes that overlap the IMC test set; ``prepare`` drops them."""

IMG_CAM_FIELDS = "name w h fx fy cx cy R11 R12 R13 R21 R22 R23 R31 R32 R33 t1 t2 t3"

IMG_CAM_HEADER = (
    "# name w h fx fy cx cy R11 R12 R13 R21 R22 R23 R31 R32 R33 t1 t2 t3 "
    "(world->camera, pixel (0,0) = centre of the top-left pixel)"
)
"""The comment line that starts every ``img_cam.txt`` (and ``gt_cameras.txt``) the project writes."""

ROTATION_TOL = 1e-3
"""Tolerance of the orthonormality / determinant check (real files are rounded to ~6 digits)."""


# ----------------------------------------------------------------------------------------- cameras
def parse_camera_line(fields: list[str], where: str) -> Camera:
    """Parse and validate one ``img_cam.txt`` record (19 fields) into a :class:`Camera`."""
    check_field_count(fields, 19, where, IMG_CAM_FIELDS)
    names = IMG_CAM_FIELDS.split()
    name = fields[0]
    w = parse_int(fields[1], where, "w")
    h = parse_int(fields[2], where, "h")
    vals = [parse_float(x, where, names[i]) for i, x in enumerate(fields[3:], 3)]
    fx, fy, cx, cy = vals[:4]
    if fx <= 0 or fy <= 0:
        raise DataError(f"{where}: expected focal lengths fx, fy > 0, found fx={fx:g} fy={fy:g}")
    R = np.array(vals[4:13], dtype=np.float64).reshape(3, 3)
    t = np.array(vals[13:16], dtype=np.float64)
    if not is_rotation(R, tol=ROTATION_TOL):
        err = np.abs(R @ R.T - np.eye(3)).max()
        raise DataError(
            f"{where}: expected R11..R33 to form a rotation matrix (orthonormal, det +1, tolerance {ROTATION_TOL:g}), "
            f"found det={np.linalg.det(R):.6g}, max|R R^T - I|={err:.3g}"
        )
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    return Camera(name=name, width=w, height=h, K=K, R=R, t=t)


def img_cam_line(name: str, cam: Camera) -> str:
    """One ``img_cam.txt`` line: ``name w h fx fy cx cy R11..R33 t1 t2 t3``."""
    K = cam.K
    vals = [K[0, 0], K[1, 1], K[0, 2], K[1, 2], *np.asarray(cam.R).reshape(-1), *np.asarray(cam.t).reshape(-1)]
    return f"{name} {cam.width} {cam.height} " + " ".join(fmt_number(v) for v in vals)


def write_img_cam(path: str | os.PathLike, cameras: Iterable[tuple[str, Camera]]) -> None:
    """Write an ``img_cam.txt`` (or ETH's ``gt_cameras.txt``): :data:`IMG_CAM_HEADER`, then one
    :func:`img_cam_line` per ``(name, camera)``, the layout :func:`read_img_cam` reads."""
    lines = [IMG_CAM_HEADER, *(img_cam_line(name, cam) for name, cam in cameras)]
    Path(path).write_text("\n".join(lines) + "\n")


def read_img_cam(path: str | os.PathLike) -> dict[str, Camera]:
    """Read ``img_cam.txt``: image name → :class:`Camera`, validated (19 fields, rotations, sizes, unique names)."""
    return read_img_cam_lines(path)[0]


def read_img_cam_lines(path: str | os.PathLike) -> tuple[dict[str, Camera], dict[str, int]]:
    """:func:`read_img_cam` plus each image's line number (for error messages about that image)."""
    path = Path(path)
    cams: dict[str, Camera] = {}
    first_line: dict[str, int] = {}
    for lineno, fields in iter_records(path, "img_cam.txt: " + IMG_CAM_FIELDS):
        where = f"{path}:{lineno}"
        cam = parse_camera_line(fields, where)
        if cam.name in cams:
            raise DataError(
                f"{where}: expected unique image names, found {cam.name!r} again (first on line {first_line[cam.name]})"
            )
        cams[cam.name] = cam
        first_line[cam.name] = lineno
    if not cams:
        raise DataError(f"{path}: expected at least one camera line ({IMG_CAM_FIELDS}), found none")
    return cams, first_line


def read_pairs(path: str | os.PathLike, known: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """Read ``pairs.txt`` (``nameA nameB`` per line), in file order: :func:`~posfeat.datasets.records.read_pair_list`
    with every pair listed once and (given ``known``: a set, or :func:`read_img_cam`'s dict) only images of
    ``img_cam.txt``. An empty file gives an empty list."""
    return read_pair_list(
        path, known, what="pairs.txt: nameA nameB", known_as="an image listed in img_cam.txt", unique=True
    )


# ------------------------------------------------------------------------------------------ scenes
@dataclass
class SceneDir:
    """One ``<root>/<scene_id>/<dense>/aligned`` folder."""

    scene_id: str
    dense: str
    path: Path  # <root>/<scene_id>/<dense>/aligned

    @property
    def key(self) -> str:
        """``"<scene_id>/<dense>"``."""
        return f"{self.scene_id}/{self.dense}"

    @property
    def image_dir(self) -> Path:
        return self.path / "images"


def find_scenes(root: str | os.PathLike) -> list[SceneDir]:
    """All ``<root>/<scene_id>/dense*/aligned`` folders, sorted by (scene_id, dense).

    A missing root raises :class:`DataError`; scene folders without any ``dense*/aligned`` are ignored.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: MegaDepth root not found (expected <root>/<scene_id>/dense*/aligned)")
    out = []
    for scene in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for dense in sorted(p for p in scene.glob("dense*") if p.is_dir()):
            aligned = dense / "aligned"
            if aligned.is_dir():
                out.append(SceneDir(scene_id=scene.name, dense=dense.name, path=aligned))
    return out


def load_scene(
    scene: SceneDir, check_images: bool = True, check_sizes: bool = False
) -> tuple[dict[str, Camera], list[tuple[str, str]]]:
    """Read and validate one scene folder's ``img_cam.txt`` and ``pairs.txt``.

    Args:
        scene: the folder.
        check_images: every image that ``img_cam.txt`` names must exist under ``aligned/images``
            (existence only; nothing is opened).
        check_sizes: also decode each image and compare its size with ``w h`` (slow on real data).

    Returns:
        ``(cameras, pairs)``.
    """
    img_cam = scene.path / "img_cam.txt"
    cams, lines = read_img_cam_lines(img_cam)
    pairs = read_pairs(scene.path / "pairs.txt", known=cams)
    if check_images or check_sizes:
        for name, cam in cams.items():
            p = scene.image_dir / name
            if not p.is_file():
                raise DataError(f"{img_cam}:{lines[name]}: expected image {name!r} at {p}, found no such file")
            if check_sizes:
                size = image_size(p)
                if size != cam.size:
                    raise DataError(
                        f"{img_cam}:{lines[name]}: expected image {name!r} to be {cam.width}x{cam.height} (w h), "
                        f"found {size[0]}x{size[1]} in {p}"
                    )
    return cams, pairs
