"""DVC stages ``extract_posfeat@<dataset>`` and ``extract_sift@<dataset>``: local features of one dataset's
images (:func:`posfeat.data.benchmarks.benchmark_images`) into HDF5 files.

    python -m stages.extract <dataset> <method>      # dataset: hpatches | aachen | eth
                                                     # method:  posfeat | sift | rootsift

Reads params ``datasets.<dataset>``, ``extract.<dataset>`` (max_keypoints, nms_radius, threshold,
threshold_mode, scales, pyramid, rotations), ``device`` and, for HPatches, ``eval.hpatches.exclude``; PoSFeat
loads ``models/posfeat.pt``. ``posfeat`` writes two files from one network pass per view: PoSFeat's own
keypoints (``features/posfeat/``) and PoSFeat's descriptors on OpenCV SIFT keypoints
(``features/posfeat_sift/``, the official code's ``use_sift: True``), so that detector and descriptor quality
read separately. Writes ``features/<method>/<dataset>.h5`` (hloc layout).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from posfeat.data.benchmarks import BENCHMARKS as DATASETS
from posfeat.data.benchmarks import benchmark_images
from posfeat.entry import run_entry
from posfeat.extraction import METHODS, ExtractConfig, extract_dataset, load_model
from posfeat.utils import get_logger
from stages.common import ROOT, dataset_root, load_params, param

MODEL_PATH = Path("models/posfeat.pt")


def main(dataset: str, method: str, params: dict | None = None, base_dir: Path = ROOT) -> dict:
    """Run the stage; relative paths (dataset roots, model, output) are taken from ``base_dir``."""
    if dataset not in DATASETS:
        raise SystemExit(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if method not in METHODS:
        raise SystemExit(f"method must be one of {METHODS}, got {method!r}")
    log = get_logger("stages.extract")
    params = load_params() if params is None else params
    base_dir = Path(base_dir)
    root = dataset_root(params, dataset, base_dir)
    exclude = param(params, "eval.hpatches.exclude", list[str]) if dataset == "hpatches" else ()
    cfg = ExtractConfig.from_dict(param(params, f"extract.{dataset}", dict), what=f"extract.{dataset}")
    device = param(params, "device", str, "auto") if method == "posfeat" else "cpu"
    image_root, names = benchmark_images(dataset, root, exclude)
    model = load_model(base_dir / MODEL_PATH, device) if method == "posfeat" else None
    out = base_dir / "features" / method / f"{dataset}.h5"
    sift_out = base_dir / "features" / "posfeat_sift" / f"{dataset}.h5" if method == "posfeat" else None
    summary = extract_dataset(method, image_root, names, out, model=model, config=cfg, device=device, sift_out=sift_out)
    log.info("summary: %s", json.dumps({k: v for k, v in summary.items() if k != "config"}))
    return summary


def _cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="stages.extract", description=__doc__.splitlines()[0])
    ap.add_argument("dataset", choices=DATASETS)
    ap.add_argument("method", choices=METHODS)
    a = ap.parse_args(argv)
    main(a.dataset, a.method)
    return 0


if __name__ == "__main__":
    sys.exit(run_entry(_cli, prog="stages.extract"))
