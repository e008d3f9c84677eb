"""DVC stage ``report``: the HPatches MMA curves of every method of the study, drawn together.

Reads params ``extract.methods`` (which methods, in that order) and ``datasets.hpatches``, and
``results/hpatches/<method>.json`` (the ``eval_hpatches@<method>`` stages); writes ``plots/hpatches.csv``
(method, threshold, overall, illumination, viewpoint: ``dvc plots show`` draws one line per method) and the
figure ``plots/hpatches.png`` with its vector copy ``plots/hpatches.svg``.
Run: ``python -m stages.report``.
"""

from __future__ import annotations

from pathlib import Path

from posfeat.evaluation.hpatches import write_curves
from posfeat.evaluation.plots import plot_mma_curves
from posfeat.io import read_json
from posfeat.settings import param
from posfeat.utils import get_logger
from stages.common import ROOT, load_params, stage_entry

RESULTS_DIR = Path("results/hpatches")
CURVES_PATH = Path("plots/hpatches.csv")
FIGURE_PATH = Path("plots/hpatches.png")


def main(params: dict | None = None, base_dir: Path = ROOT) -> dict:
    """Run the stage with ``params`` (default: ``params.yaml``); relative paths are taken from ``base_dir``."""
    get_logger("stages.report")
    params = load_params() if params is None else params
    base_dir = Path(base_dir)
    methods = param(params, "extract.methods")
    results = {m: read_json(base_dir / RESULTS_DIR / f"{m}.json") for m in methods}
    write_curves(results, base_dir / CURVES_PATH)
    demo = "data/demo" in Path(param(params, "datasets.hpatches", str)).as_posix()
    plot_mma_curves(results, base_dir / FIGURE_PATH, dataset="HPatches layout, demo world" if demo else "HPatches")
    return results


if __name__ == "__main__":
    stage_entry(main, "stages.report")
