"""DVC stage ``eval_aachen``: Aachen Day-Night localization of every extracted method with pycolmap.

Reads params ``datasets.aachen``, ``extract.methods``, ``eval.aachen`` (:class:`AachenConfig` fields),
``seed`` and ``device``, and ``features/<method>/aachen.h5``; writes, per method,
``results/aachen/<method>.txt`` (the benchmark's submission file, every query),
``results/aachen/<method>.json`` (per-query outcome, timings, counts) and the work folder
``results/aachen/work/<method>/`` (COLMAP database, triangulated reference), and
``metrics/aachen.json`` (``{method: {day|night: {recalls, localized, queries}, localized, queries}}``).
Run: ``python -m stages.eval_aachen``.
"""

from __future__ import annotations

from pathlib import Path

from posfeat.evaluation.aachen import AachenConfig, evaluate_aachen
from posfeat.evaluation.aachen_results import format_metrics, write_submission
from posfeat.io import write_json
from posfeat.utils import get_logger
from stages.common import ROOT, dataset_root, load_params, param, seeded_settings, stage_entry

METRICS_PATH = Path("metrics/aachen.json")
RESULTS_DIR = Path("results/aachen")


def main(params: dict | None = None, base_dir: Path = ROOT) -> dict:
    """Run the stage with ``params`` (default: ``params.yaml``); relative paths are taken from ``base_dir``."""
    log = get_logger("stages.eval_aachen")
    params = load_params() if params is None else params
    base_dir = Path(base_dir)
    root = dataset_root(params, "aachen", base_dir)
    config = AachenConfig.from_dict(seeded_settings(params, "eval.aachen"))
    results_dir = base_dir / RESULTS_DIR
    metrics: dict = {}
    for method in param(params, "extract.methods", list[str]):
        features = base_dir / "features" / method / "aachen.h5"
        log.info("%s: localizing the queries of %s", method, root)
        result = evaluate_aachen(
            root, features, results_dir / "work" / method, config, device=param(params, "device", str, "auto")
        )
        write_submission(results_dir / f"{method}.txt", result.queries)
        write_json(
            results_dir / f"{method}.json",
            {
                "metrics": result.metrics,
                "timings_s": result.timings,
                "stats": result.stats,
                "queries": [
                    {
                        "name": r.name,
                        "condition": r.condition,
                        "localized": r.localized,
                        "correspondences": r.num_correspondences,
                        "inliers": r.num_inliers,
                        "qvec": [float(v) for v in r.qvec],
                        "tvec": [float(v) for v in r.tvec],
                    }
                    for r in result.queries
                ],
            },
        )
        metrics[method] = result.metrics
    write_json(base_dir / METRICS_PATH, metrics)
    print(format_metrics(metrics))
    return metrics


if __name__ == "__main__":
    stage_entry(main, "stages.eval_aachen")
