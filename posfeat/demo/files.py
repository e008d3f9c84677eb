"""What every demo writer writes alike: images (JPEG or PPM, by the name's suffix) and numbers and camera
lines in the project's text formats (``img_cam.txt`` / ``gt_cameras.txt``: centre of the top-left pixel at
``(0, 0)``, world→camera)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from posfeat.datasets.camera import Camera
from posfeat.io import DataError


def write_image(path: Path, rgb: np.ndarray, jpeg_quality: int) -> None:
    """Write an RGB image (JPEG at ``jpeg_quality`` or PPM, by suffix), creating its folder; a DataError if it fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if path.suffix.lower() in (".jpg", ".jpeg") else []
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params):
        raise DataError(f"{path}: could not write image")


def fmt_number(v: float) -> str:
    """A number as written in the text files (9 significant digits)."""
    return f"{v:.9g}"


def img_cam_line(name: str, cam: Camera) -> str:
    """One ``img_cam.txt`` line: ``name w h fx fy cx cy R11..R33 t1 t2 t3``."""
    K = cam.K
    vals = [K[0, 0], K[1, 1], K[0, 2], K[1, 2], *cam.R.reshape(-1), *cam.t.reshape(-1)]
    return f"{name} {cam.width} {cam.height} " + " ".join(fmt_number(v) for v in vals)


IMG_CAM_HEADER = (
    "# name w h fx fy cx cy R11 R12 R13 R21 R22 R23 R31 R32 R33 t1 t2 t3 "
    "(world->camera, pixel (0,0) = centre of the top-left pixel)"
)
