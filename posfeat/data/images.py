"""Image reading with clear errors (OpenCV does the decoding)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from posfeat.io import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff")


def read_image(path: str | os.PathLike, grayscale: bool = False) -> np.ndarray:
    """Read an image as uint8 RGB ``(H, W, 3)`` (or ``(H, W)`` grey).

    Greyscale files are expanded to RGB unless ``grayscale``. A missing or undecodable file raises
    :class:`posfeat.io.DataError` naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image not found")
    flag = cv2.IMREAD_GRAYSCALE if grayscale else cv2.IMREAD_COLOR
    img = cv2.imread(str(path), flag)
    if img is None or img.size == 0:
        raise DataError(f"{path}: cannot decode image (corrupt or unsupported format)")
    if not grayscale:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of an image file (decodes it; raises DataError if it cannot)."""
    img = read_image(path, grayscale=True)
    return int(img.shape[1]), int(img.shape[0])


def list_images(root: str | os.PathLike) -> list[str]:
    """All image files under ``root`` (recursive), as sorted POSIX paths relative to ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found")
    names = [
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    ]
    return sorted(names)
