"""The COLMAP steps the ETH and Aachen evaluations share, written once: open the database, import keypoints,
verify, each phase timed (matching itself is :func:`posfeat.sfm.matching.match_and_import`).

Both pipelines are short sequences of these calls (:func:`posfeat.evaluation.eth.evaluate.evaluate_scene`,
:func:`posfeat.evaluation.aachen.evaluate.evaluate_aachen`); the reconstruction itself is
:mod:`posfeat.sfm.reconstruction` (ETH, own photos) or a triangulation of known poses (Aachen).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import pycolmap

from posfeat.io import FeatureReader
from posfeat.sfm import colmap, verification


class PhaseTimer:
    """Seconds per named phase: ``with timer("matching"): …``; a phase run twice adds up."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - t0

    def rounded(self, digits: int = 4) -> dict[str, float]:
        """The phases' seconds rounded (as the evaluations report them)."""
        return {k: round(v, digits) for k, v in self.seconds.items()}


open_database = colmap.open_database


def import_keypoints(db: pycolmap.Database, ids: Mapping[str, int], features: FeatureReader,
                     keys: Mapping[str, str]) -> None:  # fmt: skip
    """The keypoints of every image of ``ids`` (``{name: image id}``), read alone from ``features`` under
    ``keys[name]`` (the feature file's name of the image; the name itself when absent)."""
    for name, image_id in ids.items():
        colmap.import_keypoints(db, image_id, features.keypoints(keys.get(name, name)))


def verify(db_path: Path, matched_pairs: Sequence[tuple[str, str]], options: pycolmap.TwoViewGeometryOptions,
           work: Path) -> Path:  # fmt: skip
    """COLMAP's two-view verification of ``matched_pairs`` (their list written to ``work/pairs.txt``, which is
    returned)."""
    pairs_path = Path(work) / "pairs.txt"
    colmap.write_pairs_file(pairs_path, matched_pairs)
    colmap.check_space(db_path, Path(db_path).stat().st_size)  # verified geometries take at most what matches take
    with colmap.colmap_log_level(False):
        verification.verify_pairs(db_path, pairs_path, options)
    return pairs_path
