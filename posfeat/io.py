"""File I/O in one place: atomic writes, JSON, and the hloc-layout HDF5 feature files (DESIGN.md §3)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np


class DataError(ValueError):
    """Bad input: the message names the file (and line) and what was expected."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Works for files and directories. On error the temporary is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.is_dir() and path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def fresh_workdir(path: str | os.PathLike, marker: str, owner: str, also_ours: tuple[str, ...] = ()) -> Path:
    """Make ``path`` an empty work folder of ``owner``; an earlier run's folder is removed first.

    Ours = it holds the file ``marker`` (written here) or one of ``also_ours``. A non-empty folder that
    is not ours is never deleted: :class:`DataError`. Reruns therefore never trip over old work.
    """
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise DataError(f"{path}: expected a work folder, found a file")
        ours = (path / marker).exists() or any((path / name).exists() for name in also_ours)
        if any(path.iterdir()) and not ours:
            raise DataError(f"{path}: not empty and not a {owner} work folder ({marker} missing); refusing to delete it")
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / marker).write_text(f"work folder of {owner}; deleted by the next run\n")
    return path


def write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike):
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected a JSON file)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e


# ------------------------------------------------------------------------------------ feature files
class FeatureWriter:
    """Write hloc-layout features: one group per image name (path relative to the dataset root).

    Each group holds ``keypoints`` (N×2 float32, pixels, centre of the top-left pixel = (0, 0)),
    ``scores`` (N float32), ``descriptors`` (D×N float32) and ``image_size`` ((w, h) int64).
    The file appears under its final name only when :meth:`close` succeeds (use as a context manager).
    """

    def __init__(self, path: str | os.PathLike, attrs: dict | None = None):
        self.path = Path(path)
        self._ctx = atomic_path(self.path, suffix=".h5")
        self._tmp = self._ctx.__enter__()
        self._h5 = h5py.File(self._tmp, "w")
        for k, v in (attrs or {}).items():
            self._h5.attrs[k] = v

    def add(self, name: str, keypoints: np.ndarray, scores: np.ndarray, descriptors: np.ndarray, image_size,
            **per_keypoint: np.ndarray) -> None:
        """Add one image. ``descriptors`` is N×D (as produced) and stored D×N (hloc).

        ``per_keypoint``: further N-vectors stored under their names (SIFT: ``scales``, ``oris``).
        """
        kp = np.asarray(keypoints, np.float32).reshape(-1, 2)
        sc = np.asarray(scores, np.float32).reshape(-1)
        de = np.asarray(descriptors, np.float32)
        if de.ndim != 2 or de.shape[0] != len(kp) or len(sc) != len(kp):
            raise ValueError(f"{name}: inconsistent shapes keypoints {kp.shape}, scores {sc.shape}, descriptors {de.shape}")
        if name in self._h5:
            raise ValueError(f"{self.path}: duplicate image name {name!r}")
        g = self._h5.create_group(name)
        g.create_dataset("keypoints", data=kp)
        g.create_dataset("scores", data=sc)
        g.create_dataset("descriptors", data=np.ascontiguousarray(de.T))
        g.create_dataset("image_size", data=np.asarray(image_size, np.int64).reshape(2))
        for key, v in per_keypoint.items():
            v = np.asarray(v, np.float32).reshape(-1)
            if len(v) != len(kp):
                raise ValueError(f"{name}: {key} has {len(v)} values for {len(kp)} keypoints")
            g.create_dataset(key, data=v)

    def close(self, ok: bool = True) -> None:
        self._h5.close()
        if ok:
            self._ctx.__exit__(None, None, None)
        else:
            self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> "FeatureWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(ok=exc_type is None)


def _visit_groups(h5: h5py.File) -> list[str]:
    names: list[str] = []

    def visit(name, obj):
        if isinstance(obj, h5py.Group) and "keypoints" in obj:
            names.append(name)

    h5.visititems(visit)
    return sorted(names)


def list_feature_names(path: str | os.PathLike) -> list[str]:
    """Names of the images stored in a feature file."""
    with FeatureReader(path) as reader:
        return reader.names()


def read_features(path: str | os.PathLike, name: str) -> dict[str, np.ndarray]:
    """Read one image's features; ``descriptors`` are returned N×D (transposed back from hloc's D×N)."""
    with FeatureReader(path) as reader:
        return reader[name]


class FeatureReader:
    """Keeps one HDF5 file open for many reads (evaluation loops)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: feature file not found")
        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError as e:
            raise DataError(f"{self.path}: not a readable HDF5 feature file ({e})") from e

    def names(self) -> list[str]:
        return _visit_groups(self._h5)

    def __contains__(self, name: str) -> bool:
        return name in self._h5

    def __getitem__(self, name: str) -> dict[str, np.ndarray]:
        if name not in self._h5:
            raise DataError(f"{self.path}: no features for image {name!r}")
        g = self._h5[name]
        return {
            "keypoints": g["keypoints"][()],
            "scores": g["scores"][()],
            "descriptors": g["descriptors"][()].T.copy(),
            "image_size": g["image_size"][()],
        }

    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> "FeatureReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
