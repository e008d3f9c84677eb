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
from posfeat.evaluation.aachen.results import format_metrics, write_submission
from posfeat.evaluation.headline import aachen_headline
from posfeat.io import write_json
from posfeat.utils import get_logger
from stages.common import ROOT, dataset_root, load_params, method_entry, param, seeded_settings

RESULTS_DIR = Path("results/aachen")
METRICS_DIR = Path("metrics/aachen")


def query_records(queries) -> list[dict]:
    """Per-query outcome of :func:`evaluate_aachen` as JSON records."""
    return [
        {
            "name": r.name,
            "condition": r.condition,
            "localized": r.localized,
            "correspondences": r.num_correspondences,
            "inliers": r.num_inliers,
            "qvec": [float(v) for v in r.qvec],
            "tvec": [float(v) for v in r.tvec],
        }
        for r in queries
    ]


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
    write_submission(results_dir / f"{method}.txt", result.queries)
    detail = {
        "metrics": result.metrics,
        "timings_s": result.timings,
        "stats": result.stats,
        "queries": query_records(result.queries),
    }
    write_json(results_dir / f"{method}.json", detail)
    write_json(base_dir / METRICS_DIR / f"{method}.json", aachen_headline(result.metrics))
    print(format_metrics({method: result.metrics}))
    return result.metrics


if __name__ == "__main__":
    method_entry(main, "stages.eval_aachen")
