"""DVC stages ``eval_hpatches@<method>``: HPatches MMA (D2-Net protocol) of one method's features.

Reads params ``datasets.hpatches``, ``eval.hpatches`` (``exclude``, ``max_threshold``) and ``device``, and
``features/<method>/hpatches.h5``; writes ``results/hpatches/<method>.json`` (MMA at every threshold, overall,
illumination and viewpoint, with features per image and matches per pair) and the headline
``metrics/hpatches/<method>.json`` (:func:`posfeat.evaluation.headline.hpatches_headline`).
Run: ``python -m stages.eval_hpatches <method>``; ``stages.report`` draws the methods together.
"""

from __future__ import annotations

from pathlib import Path

from posfeat.evaluation.headline import hpatches_headline
from posfeat.evaluation.hpatches import evaluate_hpatches, format_table
from posfeat.io import write_json
from posfeat.settings import dataset_root, param
from posfeat.utils import get_logger
from stages.common import ROOT, load_params, method_entry

RESULTS_DIR = Path("results/hpatches")
METRICS_DIR = Path("metrics/hpatches")


def main(method: str, params: dict | None = None, base_dir: Path = ROOT) -> dict:
    """Evaluate ``method`` with ``params`` (default: ``params.yaml``); relative paths are taken from ``base_dir``."""
    get_logger("stages.eval_hpatches")
    params = load_params() if params is None else params
    base_dir = Path(base_dir)
    results = evaluate_hpatches(
        dataset_root(params, "hpatches", base_dir),
        {method: base_dir / "features" / method / "hpatches.h5"},
        exclude=tuple(param(params, "eval.hpatches.exclude", list[str])),
        max_threshold=param(params, "eval.hpatches.max_threshold", int),
        device=param(params, "device", str, "auto"),
    )
    write_json(base_dir / RESULTS_DIR / f"{method}.json", results[method])
    write_json(base_dir / METRICS_DIR / f"{method}.json", hpatches_headline(results[method]))
    print(format_table(results))
    return results[method]


if __name__ == "__main__":
    method_entry(main, "stages.eval_hpatches")
