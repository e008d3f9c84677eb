"""Image reading with clear errors (OpenCV does the decoding)."""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from pathlib import Path

import cv2
import numpy as np

from posfeat.io import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff")


JPEG_TAIL = 1 << 16
"""Bytes at the end of a JPEG searched for its end-of-image marker."""
_DECODER_COMPLAINTS = ("premature end", "libpng error", "imread_(")
"""Words of the decoders' stderr messages (libjpeg, libpng, OpenCV) that mean the file is damaged. Other
decoder warnings (an unknown JFIF revision, extraneous bytes before a marker, an sRGB profile) are passed on."""
_STDERR_LOCK = threading.Lock()


def _pnm_header(data: bytes) -> tuple[str, list[int], int] | None:
    """``(magic, [w, h(, maxval)], offset of the pixel data)`` of a binary PNM header, None if not one."""
    if len(data) < 2 or data[:1] != b"P" or data[1:2] not in b"123456":
        return None
    magic = data[:2].decode()
    want = 2 if magic in ("P1", "P4") else 3
    values: list[int] = []
    i = 2
    while len(values) < want:
        while i < len(data) and (data[i : i + 1].isspace() or data[i : i + 1] == b"#"):
            if data[i : i + 1] == b"#":
                while i < len(data) and data[i : i + 1] not in (b"\n", b"\r"):
                    i += 1
            else:
                i += 1
        j = i
        while j < len(data) and data[j : j + 1].isdigit():
            j += 1
        if j == i:
            raise ValueError(f"header field {len(values) + 1} is not a number")
        values.append(int(data[i:j]))
        i = j
    return magic, values, i + 1  # exactly one whitespace byte ends the header


def check_image_file(path: Path) -> None:
    """Structural checks OpenCV does not make: a JPEG must end with its end-of-image marker (EOI), a
    PPM/PGM/PBM header must match the size of the file. Raises :class:`DataError` naming the file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(512)
        if head[:3] == b"\xff\xd8\xff":  # JPEG: EOI after the last start-of-scan (markers are not in the data)
            f.seek(max(0, size - JPEG_TAIL))
            tail = f.read()
            eoi, sos = tail.rfind(b"\xff\xd9"), tail.rfind(b"\xff\xda")
            if eoi < 0 or eoi < sos:
                raise DataError(
                    f"{path}: truncated JPEG ({size} bytes, no end-of-image marker FFD9 after the "
                    f"image data); the file was cut short, re-copy it"
                )
            return
        try:
            pnm = _pnm_header(head)
        except ValueError as e:
            raise DataError(f"{path}: malformed PNM header ({e})") from e
        if pnm is None:
            return
        magic, values, offset = pnm
        w, h = values[0], values[1]
        maxval = values[2] if len(values) > 2 else 1
        channels = 3 if magic in ("P3", "P6") else 1
        if magic in ("P4", "P5", "P6"):
            expected = (h * ((w + 7) // 8)) if magic == "P4" else w * h * channels * (1 if maxval < 256 else 2)
            held = size - offset
            what = "bits" if magic == "P4" else "pixel bytes"
        else:  # ASCII: one number per sample (P1 may pack its bits without spaces: not checked)
            if magic == "P1":
                return
            f.seek(offset)
            held = len(f.read().split())
            expected = w * h * channels
            what = "samples"
        if held != expected:
            raise DataError(
                f"{path}: {magic} header declares {w}x{h} (maxval {maxval}), that is {expected} {what}, but the file "
                f"holds {held}; the header does not match the file ({'truncated' if held < expected else 'extra data'})"
            )


def _imread_checked(path: Path, flag: int) -> tuple[np.ndarray | None, str]:
    """``cv2.imread`` with the decoders' stderr messages (libjpeg warns of a premature end there) captured.

    Other text written to stderr meanwhile (another thread's logging) is passed on.
    """
    with _STDERR_LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no usable fd 2: decode without capture
            return cv2.imread(str(path), flag), ""
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                img = cv2.imread(str(path), flag)
            finally:
                try:
                    sys.stderr.flush()
                except (OSError, ValueError):
                    pass
                os.dup2(saved, 2)
                os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
    complaints, others = [], []
    for line in text.splitlines(keepends=True):
        (complaints if any(w in line.lower() for w in _DECODER_COMPLAINTS) else others).append(line)
    if others:
        os.write(2, "".join(others).encode())
    return img, " ".join(c.strip() for c in complaints)


def read_image(path: str | os.PathLike, grayscale: bool = False) -> np.ndarray:
    """Read an image as uint8 RGB ``(H, W, 3)`` (or ``(H, W)`` grey), its pixels as stored.

    A JPEG's EXIF orientation tag is ignored, as COLMAP, pycolmap and the benchmarks' ``database.db`` and
    ground-truth cameras ignore it: keypoints are then in the frame of the image's camera. (OpenCV's default
    would turn a photo tagged "rotate 90°" upright and put its keypoints 90° off its camera.)

    Greyscale files are expanded to RGB unless ``grayscale``. A missing, undecodable or damaged file raises
    :class:`posfeat.io.DataError` naming it: a JPEG without its end marker, one the decoder reports a
    premature end of, a PNM whose header does not match its size (:func:`check_image_file`), never a
    half-decoded image.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image not found")
    check_image_file(path)
    flag = (cv2.IMREAD_GRAYSCALE if grayscale else cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION
    img, complaint = _imread_checked(path, flag)
    if complaint:
        raise DataError(f"{path}: damaged image, the decoder reports: {complaint[:300]}")
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
