"""Features given as a file: a method whose features someone else made (hloc, kornia, a script), imported into the
study's feature file of one benchmark.

The given file uses hloc's HDF5 layout: one group per image name (nested groups for ``/``), each with
``keypoints`` (N×2, pixels), ``descriptors`` (D×N, hloc's orientation), ``image_size`` ((w, h)) and optionally
``scores`` (N; 1 when absent). Image names may carry more or fewer leading folders than the benchmark's
(:func:`posfeat.feature_names.resolve_feature_names`). :func:`import_features` checks every image the benchmark
needs and writes the study's file, under the benchmark's names, with only those images.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from posfeat.feature_names import resolve_feature_names
from posfeat.io import DataError, FeatureWriter

logger = logging.getLogger(__name__)

LAYOUT = "hloc layout: one group per image with keypoints (N×2), descriptors (D×N), image_size (2) and scores (N)"


def _open(path: Path) -> h5py.File:
    """The given file opened for reading, or a :class:`DataError` naming it."""
    if not path.is_file():
        raise DataError(f"{path}: given feature file not found")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise DataError(f"{path}: not a readable HDF5 feature file ({e}); expected {LAYOUT}") from None


def _groups(h5: h5py.File) -> list[str]:
    """Names of the groups that hold keypoints (the images of the file)."""
    names: list[str] = []
    h5.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Group) and "keypoints" in obj else None)
    return names


def _first_missing(available: set[str], expected: Sequence[str]) -> str:
    """The first expected image without a group of that name, its leading folders dropped, or below a prefix."""
    for name in expected:
        parts = name.split("/")
        if not any("/".join(parts[k:]) in available for k in range(len(parts))) and not any(
            a.endswith("/" + name) for a in available
        ):
            return name
    return expected[0]


def read_given(path: Path, h5: h5py.File, name: str, group: str) -> dict[str, np.ndarray]:
    """One image's features from the given file, checked: ``keypoints`` N×2, ``descriptors`` D×N,
    ``image_size`` (2,), ``scores`` N (ones when absent). A wrong shape is a :class:`DataError`."""
    g = h5[group]
    missing = [k for k in ("keypoints", "descriptors", "image_size") if k not in g]
    if missing:
        raise DataError(f"{path}: image {group!r} has no {', '.join(missing)}; expected {LAYOUT}")
    kp, de, size = np.asarray(g["keypoints"][()]), np.asarray(g["descriptors"][()]), np.asarray(g["image_size"][()])
    n = len(kp) if kp.ndim == 2 and kp.shape[1] == 2 else -1
    sc = np.asarray(g["scores"][()]) if "scores" in g else np.ones(max(n, 0), np.float32)
    if n < 0 or de.ndim != 2 or de.shape[1] != n or sc.shape != (n,) or size.size != 2:
        raise DataError(
            f"{path}: image {group!r}: keypoints {kp.shape}, descriptors {de.shape}, scores {sc.shape}, "
            f"image_size {size.shape}; expected N×2, D×N (hloc's orientation), N and 2"
        )
    if not np.isfinite(kp).all() or not np.isfinite(de.astype(np.float32)).all():
        raise DataError(f"{path}: image {group!r} has non-finite keypoints or descriptors")
    return {"keypoints": kp, "descriptors": de.T, "scores": sc, "image_size": size.reshape(2)}


def import_features(given: str | os.PathLike, names: Sequence[str], out_path: str | os.PathLike, method: str) -> dict:
    """Write the features of ``names`` (the benchmark's image names) from the ``given`` hloc file to
    ``out_path``, under those names; descriptors keep their storage type (float16 or float32).

    Raises:
        DataError: the file is missing or unreadable, lacks an image the benchmark needs (the first one is
            named), or an image's datasets have the wrong layout.

    Returns:
        A summary: method, source file, images, keypoints per image (mean/min/max), descriptor width.
    """
    path = Path(given)
    with _open(path) as h5:
        available = _groups(h5)
        try:
            groups = resolve_feature_names(available, names, str(path))
        except DataError:
            first = _first_missing(set(available), names)
            raise DataError(
                f"{path}: no features for image {first!r} (needed by the benchmark; "
                f"{len(available)} images in the file; {LAYOUT})"
            ) from None
        dtypes = {np.dtype(h5[g]["descriptors"].dtype) for g in groups.values() if "descriptors" in h5[g]}
        storage = "float16" if dtypes == {np.dtype(np.float16)} else "float32"
        counts, dims = [], set()
        attrs = {"method": method, "source": str(path)}
        with FeatureWriter(out_path, attrs=attrs, descriptor_dtype=storage) as writer:
            for name in names:
                f = read_given(path, h5, name, groups[name])
                dims.add(f["descriptors"].shape[1])
                if len(dims) > 1:
                    raise DataError(f"{path}: image {groups[name]!r}: descriptor widths differ ({sorted(dims)})")
                writer.add(name, f["keypoints"], f["scores"], f["descriptors"], f["image_size"])
                counts.append(len(f["keypoints"]))
    logger.info(
        "%s: %d images from %s (%.0f keypoints/image) → %s", method, len(names), path, np.mean(counts), out_path
    )
    return {
        "method": method,
        "source": str(path),
        "num_images": len(names),
        "keypoints_mean": float(np.mean(counts)),
        "keypoints_min": int(np.min(counts)),
        "keypoints_max": int(np.max(counts)),
        "descriptor_dim": dims.pop(),
    }


__all__ = ["import_features", "read_given"]
