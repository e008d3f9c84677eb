"""DVC stage ``imagenet``: the record of the ImageNet weights the training starts from, which ``train_desc``
depends on (``models/imagenet.json``: ``{"pretrained": false}``, or the file name, URL and SHA-256 of the weights
in torch's cache, fetched checksum-verified by the ``preflight`` stage when absent).

Reads params ``model.pretrained`` and ``model.encoder``. Run: ``python -m stages.imagenet``.
"""

from __future__ import annotations

from pathlib import Path

from posfeat.io import write_json
from posfeat.models.imagenet import weights_record
from posfeat.settings import param
from stages.common import ROOT, load_params, stage_entry

OUT_PATH = Path("models/imagenet.json")


def main(params: dict | None = None, base_dir: Path = ROOT) -> dict:
    """Write the record of the ImageNet weights (none in the demo) to ``OUT_PATH``."""
    params = load_params() if params is None else params
    record = weights_record(param(params, "model.encoder", str), param(params, "model.pretrained", bool, False))
    write_json(Path(base_dir) / OUT_PATH, record)
    return record


if __name__ == "__main__":
    stage_entry(main, "stages.imagenet")
