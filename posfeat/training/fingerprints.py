"""What identifies a training run: digests of its inputs and code, and the fingerprint made of them.

A resumable checkpoint (:mod:`posfeat.training.checkpoint`) is only resumed by a run with the same
fingerprint: the same stage configuration (less :data:`~posfeat.training.config.NOT_FINGERPRINTED`), model,
optimiser, learning rate, seed, pair index, stage-1 model, checkpoint format, and the same training code
(:func:`code_digest`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

#: the ``posfeat`` package folder, that :data:`TRAINING_CODE` is relative to
PACKAGE_DIR = Path(__file__).resolve().parents[1]

TRAINING_CODE = (
    "__init__.py",
    "training",
    "geometry.py",
    "datasets/__init__.py",
    "datasets/camera.py",
    "datasets/images.py",
    "trainset/__init__.py",
    "trainset/batch_order.py",
    "trainset/pairs.py",
    "models",
    "losses",
    "matching.py",
    "visualize.py",
    "io.py",
    "settings.py",
    "utils.py",
)
"""Library code that a training run imports (relative to the ``posfeat`` package): every module of
:mod:`posfeat.training` and of the models and losses, and the other files of the training's import closure
(``tests/test_dvc_deps.py`` checks that nothing it imports is missing). A folder
stands for all the ``*.py`` files below it."""


def file_digest(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def index_digest(index: str | os.PathLike | dict) -> str:
    """sha256 of the pair index: of its sorted JSON when given as a dict, of the file otherwise."""
    if isinstance(index, dict):
        return hashlib.sha256(json.dumps(index, sort_keys=True).encode()).hexdigest()
    return file_digest(index)


def code_digest() -> str:
    """sha256 over the source files of :data:`TRAINING_CODE` (names and contents), part of the fingerprint.

    DVC reruns a training stage when its code changes; without this, the rerun would find the previous run's
    final checkpoint under the same parameters and "resume" at its last step instead of training anew.
    """
    h = hashlib.sha256()
    for rel in TRAINING_CODE:
        path = PACKAGE_DIR / rel
        for f in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            h.update(f.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0" + file_digest(f).encode())
    return h.hexdigest()


def fingerprint(**parts: Any) -> str:
    """sha256 of the JSON of everything that determines the training trajectory."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
