"""DVC stages ``extract_<dataset>@<method>``: one method's local features of one benchmark's images
(:func:`posfeat.datasets.benchmarks.benchmark_images`) into ``features/<method>/<dataset>.h5`` (hloc layout).

    python -m stages.extract <dataset> <method>      # dataset: hpatches | aachen | eth
                                                     # method:  a name in extract.methods

Reads params ``extract.methods.<method>`` (its kind and, per benchmark, the file its features are made from:
:mod:`posfeat.extraction.methods`), ``datasets.<dataset>``, ``extract.<dataset>`` (max_keypoints, nms_radius,
threshold, scales, pyramid, rotations, …), ``device`` and, for HPatches, ``eval.hpatches.exclude``. By kind:
``posfeat`` extracts PoSFeat's keypoints and descriptors with the checkpoint the spec names, ``posfeat_sift``
PoSFeat's descriptors on OpenCV SIFT keypoints (the official code's ``use_sift``), ``sift`` / ``rootsift``
OpenCV's, and ``given`` imports the spec's hloc feature file after checking that it holds every image the
benchmark needs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from posfeat.datasets.benchmarks import BENCHMARKS as DATASETS
from posfeat.datasets.benchmarks import benchmark_images
from posfeat.entry import run_entry
from posfeat.extraction.config import ExtractConfig
from posfeat.extraction.methods import MethodSpec, method_specs
from posfeat.settings import ParamError, dataset_root, param
from posfeat.utils import get_logger
from stages.common import ROOT, load_params


def feature_path(method: str, dataset: str, base_dir: Path = ROOT) -> Path:
    """Where the study keeps ``method``'s features of ``dataset``."""
    return Path(base_dir) / "features" / method / f"{dataset}.h5"


def study_method(params: dict, method: str) -> MethodSpec:
    """The spec of ``method`` from ``extract.methods``; a :class:`ParamError` when the study has no such method."""
    specs = method_specs(param(params, "extract.methods"))
    if method not in specs:
        raise ParamError(f"params.yaml: extract.methods has no method {method!r} (have {', '.join(specs)})")
    return specs[method]


def _extract(
    spec: MethodSpec, dataset: str, cfg: ExtractConfig, names: list[str], image_root: Path, out: Path, params, base_dir
) -> dict:
    """Extract (posfeat, posfeat_sift, sift, rootsift) the images into ``out``."""
    from posfeat.extraction import extract_dataset, load_model

    cfg = dataclasses.replace(cfg, sift_keypoints=spec.kind == "posfeat_sift")
    device = param(params, "device", str, "auto") if spec.needs_model else "cpu"
    model = None
    if spec.needs_model:
        model = load_model(Path(base_dir) / spec.source(dataset), device)
    method = "posfeat" if spec.needs_model else spec.kind
    return extract_dataset(method, image_root, names, out, model=model, config=cfg, device=device)


def main(dataset: str, method: str, params: dict | None = None, base_dir: Path = ROOT) -> dict:
    """Run the stage; relative paths (dataset roots, sources, output) are taken from ``base_dir``."""
    if dataset not in DATASETS:
        raise SystemExit(f"dataset must be one of {DATASETS}, got {dataset!r}")
    log = get_logger("stages.extract")
    params = load_params() if params is None else params
    base_dir = Path(base_dir)
    spec = study_method(params, method)
    cfg = None
    if spec.kind != "given":  # the settings are checked before any image is listed
        cfg = ExtractConfig.from_dict(param(params, f"extract.{dataset}", dict), what=f"extract.{dataset}")
    exclude = param(params, "eval.hpatches.exclude", list[str]) if dataset == "hpatches" else ()
    image_root, names = benchmark_images(dataset, dataset_root(params, dataset, base_dir), exclude)
    out = feature_path(method, dataset, base_dir)
    if spec.kind == "given":
        from posfeat.extraction.given import import_features

        summary = import_features(base_dir / spec.source(dataset), names, out, method)
    else:
        summary = _extract(spec, dataset, cfg, names, image_root, out, params, base_dir)
    log.info("summary: %s", json.dumps({k: v for k, v in summary.items() if k != "config"}))
    return summary


def _cli(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="stages.extract", description=__doc__.splitlines()[0])
    ap.add_argument("dataset", choices=DATASETS)
    ap.add_argument("method")
    a = ap.parse_args(argv)
    main(a.dataset, a.method)
    return 0


if __name__ == "__main__":
    sys.exit(run_entry(_cli, prog="stages.extract"))
