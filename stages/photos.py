"""DVC stage ``photos@<name>``: your own photo collections as a MegaDepth-layout training set.

    python -m stages.photos <name>

Reads params ``photos.sources.<name>`` (a folder of photos of one place, or one such folder per place),
``photos.*`` (the reconstruction settings), ``prepare.rot_thr`` and ``seed``; writes ``data/photos/<name>/``
(``<place>/dense0/aligned/{images, img_cam.txt, pairs.txt}`` and ``photos_report.json``), its metadata
manifest ``data/photos/<name>_metadata.json`` (what ``datasets.megadepth_metadata`` names) and
``metrics/photos/<name>.json``. The stage exists only for the names in ``photos.sources`` (empty in the
demo): ``dvc exp run -S data=photos`` turns it on (``conf/data/photos.yaml``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from posfeat.entry import run_entry
from posfeat.io import write_json
from posfeat.photos.build import build_training_set
from posfeat.photos.config import PhotosConfig
from posfeat.settings import param
from stages.common import ROOT, load_params

OUT_DIR = Path("data/photos")
METRICS_DIR = Path("metrics/photos")


def main(name: str, params: dict | None = None, base_dir: Path = ROOT) -> dict:
    """Build the training set ``name``; relative paths are taken from ``base_dir``. Returns the report."""
    params = load_params() if params is None else params
    base_dir = Path(base_dir)
    source = Path(param(params, f"photos.sources.{name}", str))
    source = source if source.is_absolute() else base_dir / source
    settings = {k: v for k, v in param(params, "photos", dict).items() if k != "sources"}
    cfg = PhotosConfig.from_dict(
        {**settings, "rot_thr": float(param(params, "prepare.rot_thr", float)), "seed": param(params, "seed", int)},
        what="photos",
    )
    out = base_dir / OUT_DIR / name
    summary = build_training_set(source, out, cfg, manifest=base_dir / OUT_DIR / f"{name}_metadata.json")
    metrics = {k: summary[k] for k in ("collections", "scenes", "skipped", "images", "pairs")}
    metrics["per_collection"] = {
        c["name"]: {k: c[k] for k in ("num_images", "num_registered", "num_points3D", "num_pairs", "skipped")}
        for c in summary["per_collection"]
    }
    write_json(base_dir / METRICS_DIR / f"{name}.json", metrics)
    return summary


def _cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="stages.photos", description=__doc__.splitlines()[0])
    ap.add_argument("name", help="a key of photos.sources")
    a = ap.parse_args(argv)
    main(a.name)
    return 0


if __name__ == "__main__":
    sys.exit(run_entry(_cli, prog="stages.photos"))
