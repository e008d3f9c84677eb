"""MegaDepth in the CAPS release layout (docs/paper-scale.md#dataset-layouts).

``<root>/<scene_id>/dense*/aligned/`` holds ``images/*.jpg``, ``img_cam.txt`` and ``pairs.txt``:

* ``img_cam.txt``: one line per image, ``name w h fx fy cx cy R11..R33 t1 t2 t3`` (19 fields, R and t
  world→camera, R row-major);
* ``pairs.txt``: one pair per line, ``nameA nameB``.

In every text file read here, blank lines and lines starting with ``#`` are comments. Every reader
validates what it reads and raises :class:`posfeat.io.DataError` with ``<file>:<line>: expected …, found …``.

This module also holds the small text-record helpers (:func:`iter_records`, :func:`parse_float`,
:func:`parse_int`) that the other dataset readers share.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from posfeat.data.images import image_size
from posfeat.geometry import is_rotation
from posfeat.io import DataError

BANNED_SCENES = ("0008", "0021", "0024", "0063", "1589")
"""MegaDepth scenes that overlap the IMC test set; ``prepare`` drops them."""

IMG_CAM_FIELDS = "name w h fx fy cx cy R11 R12 R13 R21 R22 R23 R31 R32 R33 t1 t2 t3"

ROTATION_TOL = 1e-3
"""Tolerance of the orthonormality / determinant check (real files are rounded to ~6 digits)."""


# ------------------------------------------------------------------------------ text record helpers
def iter_records(path: str | os.PathLike, what: str = "text file") -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, fields)`` for every non-comment line of a whitespace-separated text file.

    Blank lines and lines whose first non-blank character is ``#`` are skipped; line numbers are
    1-based. A missing file raises :class:`DataError` saying what was expected (``what``).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected {what})")
    try:
        with open(path, "r", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                s = line.strip()
                if not s or s.startswith("#"):
                    continue
                yield lineno, s.split()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file (expected {what}): {e}") from e


def parse_float(text: str, where: str, field: str) -> float:
    """A finite float, or :class:`DataError` ``"<where>: expected <field> to be a finite number, found …"``."""
    try:
        v = float(text)
    except ValueError:
        raise DataError(f"{where}: expected {field} to be a number, found {text!r}") from None
    if not math.isfinite(v):
        raise DataError(f"{where}: expected {field} to be a finite number, found {text!r}")
    return v


def parse_int(text: str, where: str, field: str, positive: bool = True) -> int:
    """An integer (``640`` or ``640.0``), positive unless ``positive=False``; else :class:`DataError`."""
    try:
        v = float(text)
    except ValueError:
        raise DataError(f"{where}: expected {field} to be an integer, found {text!r}") from None
    if not math.isfinite(v) or v != int(v):
        raise DataError(f"{where}: expected {field} to be an integer, found {text!r}")
    if positive and v <= 0:
        raise DataError(f"{where}: expected {field} > 0, found {text!r}")
    return int(v)


def check_field_count(fields: list[str], n: int, where: str, layout: str) -> None:
    """Raise :class:`DataError` unless ``len(fields) == n``."""
    if len(fields) != n:
        raise DataError(f"{where}: expected {n} fields ({layout}), found {len(fields)}")


# ----------------------------------------------------------------------------------------- cameras
@dataclass(frozen=True, eq=False)
class Camera:
    """A pinhole camera with a world→camera pose: ``X_cam = R @ X_world + t``, ``x ~ K X_cam``."""

    name: str
    width: int
    height: int
    K: np.ndarray  # (3, 3) float64
    R: np.ndarray  # (3, 3) float64
    t: np.ndarray  # (3,) float64

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates, ``-R^T t``."""
        return -self.R.T @ self.t

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``."""
        return self.width, self.height

    def to_dict(self) -> dict:
        """JSON-friendly ``{"width", "height", "K", "R", "t"}`` (the pair-index entry)."""
        return {
            "width": int(self.width),
            "height": int(self.height),
            "K": self.K.tolist(),
            "R": self.R.tolist(),
            "t": self.t.tolist(),
        }


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
    """Read ``pairs.txt`` (``nameA nameB`` per line), in file order.

    A line with another field count, a pair of an image with itself, a pair listed twice (in either
    order), or (when ``known`` is given: a set, or a dict such as :func:`read_img_cam`'s result) a name
    not in ``known`` raises :class:`DataError`. An empty file gives an empty list.
    """
    path = Path(path)
    known_set = set(known) if known is not None else None
    pairs: list[tuple[str, str]] = []
    seen: dict[frozenset, int] = {}
    for lineno, fields in iter_records(path, "pairs.txt: nameA nameB"):
        where = f"{path}:{lineno}"
        check_field_count(fields, 2, where, "nameA nameB")
        a, b = fields
        if a == b:
            raise DataError(f"{where}: expected two different images, found {a!r} paired with itself")
        if known_set is not None:
            for n in (a, b):
                if n not in known_set:
                    raise DataError(f"{where}: expected an image listed in img_cam.txt, found unknown {n!r}")
        key = frozenset((a, b))
        if key in seen:
            raise DataError(f"{where}: expected each pair once, found ({a}, {b}) again (first on line {seen[key]})")
        seen[key] = lineno
        pairs.append((a, b))
    return pairs


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
