"""DVC stage ``eval_hpatches``: HPatches MMA (D2-Net protocol) of every extracted method.

Reads params ``datasets.hpatches``, ``extract.methods`` and ``eval.hpatches`` (``exclude``,
``max_threshold``) and ``features/<method>/hpatches.h5``; writes ``metrics/hpatches.json``,
``plots/hpatches/<method>.csv`` (threshold, overall, illumination, viewpoint) and ``plots/hpatches.png``
with its vector copy ``plots/hpatches.svg``.
Run: ``python -m stages.eval_hpatches``.
"""

from __future__ import annotations

from pathlib import Path

from posfeat.evaluation.hpatches import evaluate_hpatches, format_table, write_curves
from posfeat.evaluation.plots import plot_mma_curves
from posfeat.io import write_json
from posfeat.utils import get_logger
from stages.common import ROOT, dataset_root, load_params, param, stage_entry

METRICS_PATH = Path("metrics/hpatches.json")
CURVES_DIR = Path("plots/hpatches")
FIGURE_PATH = Path("plots/hpatches.png")


def main(params: dict | None = None, base_dir: Path = ROOT) -> dict:
    """Run the stage with ``params`` (default: ``params.yaml``); relative paths are taken from ``base_dir``."""
    get_logger("stages.eval_hpatches")
    params = load_params() if params is None else params
    base_dir = Path(base_dir)
    root = dataset_root(params, "hpatches", base_dir)
    features = {m: base_dir / "features" / m / "hpatches.h5" for m in param(params, "extract.methods", list[str])}
    results = evaluate_hpatches(
        root,
        features,
        exclude=tuple(param(params, "eval.hpatches.exclude", list[str])),
        max_threshold=param(params, "eval.hpatches.max_threshold", int),
        device=param(params, "device", str, "auto"),
    )
    write_json(base_dir / METRICS_PATH, results)
    write_curves(results, base_dir / CURVES_DIR)
    demo = "data/demo" in Path(param(params, "datasets.hpatches", str)).as_posix()
    plot_mma_curves(results, base_dir / FIGURE_PATH, dataset="HPatches layout, demo world" if demo else "HPatches")
    print(format_table(results))
    return results


if __name__ == "__main__":
    stage_entry(main, "stages.eval_hpatches")
