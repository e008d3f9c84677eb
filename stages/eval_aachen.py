"""DVC stages ``eval_aachen@<method>``: Aachen Day-Night localization of one method's features with pycolmap.

Reads params ``datasets.aachen``, ``eval.aachen`` (:class:`AachenConfig` fields), ``seed`` and ``device``, and
``features/<method>/aachen.h5``; writes ``results/aachen/<method>.txt`` (the benchmark's submission file, every
query), ``results/aachen/<method>.json`` (per-query outcome, timings, counts, the full metrics), the work folder
``results/aachen/work/<method>/`` (COLMAP database, triangulated reference) and the headline
``metrics/aachen/<method>.json`` (day and night recall at the three thresholds).
Run: ``python -m stages.eval_aachen <method>``.
"""

from __future__ import annotations

from pathlib import Path

from posfeat.evaluation.aachen.evaluate import AachenConfig, evaluate_aachen
from posfeat.evaluation.aachen.results import format_metrics, write_results
from posfeat.evaluation.headline import aachen_headline
from posfeat.io import write_json
from posfeat.settings import dataset_root, param, seeded_settings
from posfeat.utils import get_logger
from stages.common import ROOT, load_params, method_entry

RESULTS_DIR = Path("results/aachen")
METRICS_DIR = Path("metrics/aachen")


def main(method: str, params: dict | None = None, base_dir: Path = ROOT) -> dict:
    """Evaluate ``method`` with ``params`` (default: ``params.yaml``); relative paths are taken from ``base_dir``."""
    log = get_logger("stages.eval_aachen")
    params = load_params() if params is None else params
    base_dir = Path(base_dir)
    root = dataset_root(params, "aachen", base_dir)
    config = AachenConfig.from_dict(seeded_settings(params, "eval.aachen"))
    results_dir = base_dir / RESULTS_DIR
    features = base_dir / "features" / method / "aachen.h5"
    log.info("%s: localizing the queries of %s", method, root)
    result = evaluate_aachen(
        root, features, results_dir / "work" / method, config, device=param(params, "device", str, "auto")
    )
    write_results(results_dir, method, result)
    write_json(base_dir / METRICS_DIR / f"{method}.json", aachen_headline(result.metrics))
    print(format_metrics({method: result.metrics}))
    return result.metrics


if __name__ == "__main__":
    method_entry(main, "stages.eval_aachen")
