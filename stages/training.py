"""What the two training stages share: the pair index they read and the headline metrics they write."""

from __future__ import annotations

import os
from pathlib import Path

from stages.common import INDEX_PATH


def training_index(base_dir: Path) -> dict:
    """The prepared pair index (checked, :func:`posfeat.trainset.pairs.read_index`) with its relative dataset root
    made absolute against ``base_dir``."""
    from posfeat.trainset.pairs import read_index

    index, root = read_index(Path(base_dir) / INDEX_PATH, root_base=base_dir)
    return {**index, "root": str(root)}


def write_headline(summary: dict, path: Path) -> None:
    """A training stage's headline metrics (:func:`posfeat.evaluation.headline.training_headline`) to ``path``,
    by the main process only (under ``torchrun`` every rank returns the summary)."""
    from posfeat.evaluation.headline import training_headline
    from posfeat.io import write_json

    if int(os.environ.get("RANK", "0")) == 0:
        write_json(path, training_headline(summary))
