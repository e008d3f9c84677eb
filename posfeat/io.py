"""File I/O in one place: atomic writes, JSON, YAML parameters, and the hloc-layout HDF5 feature files
(docs/evaluation.md#feature-files)."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np


class DataError(ValueError):
    """Bad input: the message names the file (and line) and what was expected."""


NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
"""A full disk, a full quota, a file-size limit."""
_NO_SPACE_WORDS = ("no space left", "disk is full", "file too large", "quota exceeded", "errno = 28", "errno = 27",
                   "errno = 122")  # fmt: skip
"""How the C libraries that write for us (HDF5, SQLite under COLMAP) report the same."""


def is_no_space(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says the disk, a quota or a file-size limit is full."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
            return True
        if any(w in str(exc).lower() for w in _NO_SPACE_WORDS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def no_space_error(path: str | os.PathLike, exc: BaseException) -> DataError:
    """The one-line error of a write of ``path`` that ran out of space (``exc``: what the writer raised)."""
    first = " ".join(str(exc).split())[:160]
    return DataError(
        f"{path}: not written, no space left (the disk or quota is full, or a file-size limit was hit: {first}); "
        "nothing half-written was kept: free space or write elsewhere, then rerun"
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's) or cannot tell: keep its file
    return True


def remove_stale_temporaries(path: str | os.PathLike, suffix: str | None = None) -> list[Path]:
    """Remove temporaries of :func:`atomic_path` for ``path`` that a killed process left behind.

    They are named ``.<name>.<pid>-<random><suffix>`` beside ``path``; one whose process no longer runs is
    removed (``.<name>.<random><suffix>`` without a pid, from before pids were recorded, too). A temporary
    of a live process (a concurrent writer) is kept. Returns the removed paths.
    """
    path = Path(path)
    removed: list[Path] = []
    if not path.parent.is_dir():
        return removed
    prefix, end = f".{path.name}.", suffix or ".tmp"
    for p in path.parent.iterdir():
        name = p.name
        if not (name.startswith(prefix) and name.endswith(end)) or len(name) <= len(prefix) + len(end):
            continue
        middle = name[len(prefix) : len(name) - len(end)]
        pid_text, sep, rand = middle.partition("-")
        if sep and pid_text.isdigit():
            if int(pid_text) == os.getpid() or _pid_alive(int(pid_text)):
                continue
        elif not (len(middle) == 8 and middle.replace("_", "").isalnum()):  # mkstemp's 8 characters
            continue
        try:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            removed.append(p)
        except FileNotFoundError:
            pass
    if removed:
        logging.getLogger(__name__).info(
            "removed %d temporary file(s) of an interrupted write of %s: %s",
            len(removed),
            path,
            ", ".join(p.name for p in removed),
        )
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Works for files and directories. On error the temporary is removed and ``path`` is untouched. The
    temporary is ``.<name>.<pid>-<random><suffix>``; one left by a killed process is removed by the next
    write of ``path`` (:func:`remove_stale_temporaries`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path, suffix)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.is_dir() and path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except Exception as e:
        if is_no_space(e) and not isinstance(e, DataError):
            raise no_space_error(path, e) from e
        raise
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
            raise DataError(
                f"{path}: not empty and not a {owner} work folder ({marker} missing); refusing to delete it"
            )
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


def read_yaml_mapping(path: str | os.PathLike, what: str = "parameter file") -> dict:
    """A YAML file holding a mapping (``params.yaml``); a missing file, a syntax error (with its line and
    column) or another top-level type is a :class:`DataError` naming the file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        col = f", column {mark.column + 1}" if mark is not None else ""
        raise DataError(
            f"{where}: not valid YAML{col} ({getattr(e, 'problem', None) or e}); fix the syntax there "
            f"(a bracket or quote left open, a tab, a missing ': '); `git diff {path.name}` shows the "
            "edit"
        ) from e
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping of parameters, got {type(data).__name__}")
    return data


# ------------------------------------------------------------------------------------ feature files
def feature_method_name(path: str | os.PathLike) -> str:
    """The method a feature file holds, as the study names it: ``sift``, ``posfeat``, or ``posfeat_sift``
    (PoSFeat's descriptors on SIFT keypoints), from the attributes ``extract`` writes; else the file's stem."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as h5:
            method = h5.attrs.get("method")
            config = json.loads(h5.attrs.get("config", "{}"))
    except (OSError, ValueError):
        return path.stem
    if not method:
        return path.stem
    method = method.decode() if isinstance(method, bytes) else str(method)
    return f"{method}_sift" if method == "posfeat" and config.get("sift_keypoints") else method


#: storage types of descriptors in a feature file (read back as float32 either way)
DESCRIPTOR_DTYPES: tuple[str, ...] = ("float16", "float32")


class FeatureWriter:
    """Write hloc-layout features: one group per image name (path relative to the dataset root).

    Each group holds ``keypoints`` (N×2 float32, pixels, centre of the top-left pixel = (0, 0)),
    ``scores`` (N float32), ``descriptors`` (D×N, ``descriptor_dtype``: float32, or float16 as hloc stores
    them, half the disk) and ``image_size`` ((w, h) int64).
    The file appears under its final name only when :meth:`close` succeeds (use as a context manager).
    """

    def __init__(self, path: str | os.PathLike, attrs: dict | None = None, descriptor_dtype: str = "float32"):
        if descriptor_dtype not in DESCRIPTOR_DTYPES:
            raise ValueError(f"descriptor_dtype must be one of {DESCRIPTOR_DTYPES}, got {descriptor_dtype!r}")
        self.descriptor_dtype = np.dtype(descriptor_dtype)
        self.path = Path(path)
        self._ctx = atomic_path(self.path, suffix=".h5")
        self._tmp = self._ctx.__enter__()
        self._h5 = h5py.File(self._tmp, "w")
        for k, v in (attrs or {}).items():
            self._h5.attrs[k] = v

    def add(
        self,
        name: str,
        keypoints: np.ndarray,
        scores: np.ndarray,
        descriptors: np.ndarray,
        image_size,
        **per_keypoint: np.ndarray,
    ) -> None:
        """Add one image. ``descriptors`` is N×D (as produced) and stored D×N (hloc).

        ``per_keypoint``: further N-vectors stored under their names (SIFT: ``scales``, ``oris``).
        """
        kp = np.asarray(keypoints, np.float32).reshape(-1, 2)
        sc = np.asarray(scores, np.float32).reshape(-1)
        de = np.asarray(descriptors, np.float32)
        if de.ndim != 2 or de.shape[0] != len(kp) or len(sc) != len(kp):
            raise ValueError(
                f"{name}: inconsistent shapes keypoints {kp.shape}, scores {sc.shape}, descriptors {de.shape}"
            )
        if name in self._h5:
            raise ValueError(f"{self.path}: duplicate image name {name!r}")
        g = self._h5.create_group(name)
        g.create_dataset("keypoints", data=kp)
        g.create_dataset("scores", data=sc)
        g.create_dataset("descriptors", data=np.ascontiguousarray(de.T, dtype=self.descriptor_dtype))
        g.create_dataset("image_size", data=np.asarray(image_size, np.int64).reshape(2))
        for key, v in per_keypoint.items():
            v = np.asarray(v, np.float32).reshape(-1)
            if len(v) != len(kp):
                raise ValueError(f"{name}: {key} has {len(v)} values for {len(kp)} keypoints")
            g.create_dataset(key, data=v)

    def close(self, ok: bool = True) -> None:
        """Close the file; it appears under its name if ``ok``, else the temporary is removed."""
        self._end(None if ok else RuntimeError("aborted"))

    def _end(self, error: BaseException | None) -> None:
        """Close the HDF5 file and end the atomic write with ``error`` (None: keep the file). Errors go through
        :func:`atomic_path`, which removes the temporary and turns running out of space into one naming the file."""
        if self._h5 is None:
            return
        h5, self._h5 = self._h5, None
        try:
            h5.close()
        except Exception as e:
            self._ctx.__exit__(type(e), e, e.__traceback__)
            raise
        if error is None:
            self._ctx.__exit__(None, None, None)
        else:
            self._ctx.__exit__(type(error), error, error.__traceback__)

    def __enter__(self) -> "FeatureWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._end(exc)


FEATURE_DATASETS = ("keypoints", "scores", "descriptors", "image_size")
"""The datasets every image group of a feature file holds."""


def check_descriptor_dims(
    path1: str | os.PathLike, d1: np.ndarray, path2: str | os.PathLike, d2: np.ndarray, name1: str = "", name2: str = ""
) -> None:
    """N×D descriptors to be matched must share D: otherwise :class:`DataError` naming both files (and images).

    Call it where descriptors of two images (of one file or of two) meet, before matching.
    """
    if d1.ndim == 2 and d2.ndim == 2 and len(d1) and len(d2) and d1.shape[1] != d2.shape[1]:
        a = f"{path1}" + (f" ({name1!r})" if name1 else "")
        b = f"{path2}" + (f" ({name2!r})" if name2 else "")
        raise DataError(
            f"descriptor widths differ: {a} has {d1.shape[1]}-dimensional descriptors, "
            f"{b} has {d2.shape[1]}; both files must come from the same method"
        )


def _visit_groups(h5: h5py.File) -> list[str]:
    names: list[str] = []

    def visit(name, obj):
        if isinstance(obj, h5py.Group) and "keypoints" in obj:
            names.append(name)

    h5.visititems(visit)
    return sorted(names)


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
        if not isinstance(g, h5py.Group):
            raise DataError(f"{self.path}: {name!r} is a dataset, expected a group of features for that image")
        out = {}
        for key in FEATURE_DATASETS:
            if key not in g:
                raise DataError(
                    f"{self.path}: image {name!r} has no dataset {key!r} "
                    f"(expected {', '.join(FEATURE_DATASETS)}; has {', '.join(sorted(g)) or 'nothing'})"
                )
            try:
                out[key] = g[key][()]
            except (OSError, KeyError, TypeError) as e:
                raise DataError(f"{self.path}: image {name!r}: dataset {key!r} cannot be read ({e})") from e
        kp, sc, de = out["keypoints"], out["scores"], out["descriptors"]
        n = len(kp) if kp.ndim == 2 and kp.shape[1] == 2 else None
        if n is None or sc.shape != (n,) or de.ndim != 2 or de.shape[1] != n or out["image_size"].shape != (2,):
            raise DataError(
                f"{self.path}: image {name!r}: inconsistent shapes keypoints {kp.shape}, scores {sc.shape}, "
                f"descriptors {de.shape}, image_size {out['image_size'].shape} (expected N×2, N, D×N, 2)"
            )
        out["descriptors"] = np.ascontiguousarray(de.T, dtype=np.float32)
        return out

    def _dataset(self, name: str, key: str) -> np.ndarray:
        """One dataset of one image, read alone (no descriptor read for a keypoint lookup)."""
        g = self._h5.get(name)
        if not isinstance(g, h5py.Group) or key not in g:
            raise DataError(f"{self.path}: no {key} for image {name!r}")
        try:
            return g[key][()]
        except (OSError, KeyError, TypeError) as e:
            raise DataError(f"{self.path}: image {name!r}: dataset {key!r} cannot be read ({e})") from e

    def keypoints(self, name: str) -> np.ndarray:
        """Only the keypoints (``N×2`` float32, pixels) of image ``name``."""
        return np.asarray(self._dataset(name, "keypoints"), np.float32).reshape(-1, 2)

    def image_size(self, name: str) -> tuple[int, int]:
        """Only the ``(width, height)`` of image ``name``."""
        w, h = (int(v) for v in np.asarray(self._dataset(name, "image_size")).reshape(-1)[:2])
        return w, h

    def descriptor_dim(self, name: str | None = None) -> int | None:
        """Descriptor width D of image ``name`` (default: the first image); ``None`` for an empty file."""
        if name is None:
            names = self.names()
            if not names:
                return None
            name = names[0]
        return int(self[name]["descriptors"].shape[1])

    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> "FeatureReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
