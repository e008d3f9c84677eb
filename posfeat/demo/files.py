"""What every demo writer writes alike: images (JPEG or PPM, by the name's suffix). Camera lines are
:func:`posfeat.datasets.megadepth.write_img_cam`'s, numbers :func:`posfeat.datasets.records.fmt_number`'s."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from posfeat.io import DataError


def write_image(path: Path, rgb: np.ndarray, jpeg_quality: int) -> None:
    """Write an RGB image (JPEG at ``jpeg_quality`` or PPM, by suffix), creating its folder; a DataError if it fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if path.suffix.lower() in (".jpg", ".jpeg") else []
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params):
        raise DataError(f"{path}: could not write image")
