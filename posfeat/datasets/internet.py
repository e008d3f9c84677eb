"""Internet-style test collections cut from a calibrated scene: the photos of one place as different cameras
would have taken them, without EXIF, with exact ground truth.

A calibrated scene (MegaDepth layout: ``images/`` and ``img_cam.txt``) becomes a collection in the ETH
layout (``images/*.jpg`` and ``gt_cameras.txt``): each image is centre-cropped to a random 30–100 % of its
width (aspect kept), so its field of view and hence its focal length change, then rescaled to a random long
side, so its pixel count changes too, and written by OpenCV, which writes no EXIF. The intrinsics follow the
crop and the resize exactly, the poses are unchanged. This is what reconstruction without camera priors must
handle: the true focal lengths range over about 0.7× to 2.4× COLMAP's guess 1.2·max(w, h).

Use it on scenes you evaluate, never on ones you train on.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from posfeat.datasets.records import check_field_count, iter_records
from posfeat.io import DataError
from posfeat.trainset.pairs import scale_intrinsics

#: COLMAP's focal guess without EXIF, as a factor of max(w, h)
COLMAP_FOCAL_GUESS = 1.2


def _img_cam_rows(path: Path) -> list[list[str]]:
    """The rows of an ``img_cam.txt`` (``name w h fx fy cx cy R t``) as text fields, so they are copied exactly."""
    rows = []
    for lineno, fields in iter_records(path, "img_cam.txt: name w h fx fy cx cy R(9) t(3)"):
        check_field_count(fields, 19, f"{path}:{lineno}", "name w h fx fy cx cy R(9) t(3)")
        rows.append(fields)
    return rows


def make_collection(
    aligned: str | os.PathLike,
    out: str | os.PathLike,
    seed: int = 1,
    crop: tuple[float, float] = (0.3, 1.0),
    long_side: tuple[int, int] = (600, 1100),
    jpeg_quality: int = 92,
) -> list[float]:
    """Write ``out/images/*.jpg`` and ``out/gt_cameras.txt`` from the calibrated scene ``aligned``.

    Args:
        aligned: a folder with ``images/`` and ``img_cam.txt`` (MegaDepth layout).
        out: the collection's folder (created).
        seed: the random crops and sizes.
        crop: range of the crop's width as a fraction of the image's (centre crops, aspect kept).
        long_side: range of the written image's long side in pixels.
        jpeg_quality: JPEG quality.

    Returns:
        Each image's true focal length over COLMAP's guess 1.2·max(w, h), in ``img_cam.txt`` order.
    """
    aligned, out = Path(aligned), Path(out)
    rows = _img_cam_rows(aligned / "img_cam.txt")
    (out / "images").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    lines, ratios = [], []
    for r in rows:
        img = cv2.imread(str(aligned / "images" / r[0]), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if img is None:
            raise DataError(f"{aligned / 'images' / r[0]}: not a readable image")
        h, w = img.shape[:2]
        fx, fy, cx, cy = map(float, r[3:7])
        cw = int(w * rng.uniform(*crop))
        rng.uniform(*crop)  # a second draw: the crops of a seed stay those the measurements used
        ch = int(round(cw * h / w))
        x0, y0 = int(np.clip(round(cx - cw / 2), 0, w - cw)), int(np.clip(round(cy - ch / 2), 0, h - ch))
        K = np.array([[fx, 0, cx - x0], [0, fy, cy - y0], [0, 0, 1.0]])
        s = rng.uniform(*long_side) / max(cw, ch)
        nw, nh = int(round(cw * s)), int(round(ch * s))
        res = cv2.resize(np.ascontiguousarray(img[y0 : y0 + ch, x0 : x0 + cw]), (nw, nh), interpolation=cv2.INTER_AREA)
        K = scale_intrinsics(K, nw / cw, nh / ch)
        cv2.imwrite(str(out / "images" / r[0]), res, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
        ratios.append(float(K[0, 0] / (COLMAP_FOCAL_GUESS * max(nw, nh))))
        lines.append(
            " ".join([r[0], str(nw), str(nh)] + [f"{v:.4f}" for v in (K[0, 0], K[1, 1], K[0, 2], K[1, 2])] + r[7:])
        )
    (out / "gt_cameras.txt").write_text("\n".join(lines) + "\n")
    return ratios


__all__ = ["COLMAP_FOCAL_GUESS", "make_collection"]
