"""DVC stage ``eval_eth``: the ETH local feature benchmark (sparse reconstruction with pycolmap).

Reads params ``datasets.eth``, ``extract.methods``, ``eval.eth`` (:class:`ETHConfig` fields), ``seed``
and ``device``, and ``features/<method>/eth.h5`` (names ``<Scene>/images/<file>``; the per-scene
statistics include the protocol used and the verification report). For every method and
every scene under the ETH root it writes the work folder ``results/eth/<method>/<Scene>/`` (COLMAP
database, pair list, ``sparse/<k>`` models), ``results/eth/<method>.json`` (per scene: statistics,
timings, message, model folder) and ``metrics/eth.json`` (``{method: {scene: statistics}}``).
Run: ``python -m stages.eval_eth``.
"""

from __future__ import annotations

from pathlib import Path

from posfeat.data.eth import list_scenes
from posfeat.evaluation.eth import ETHConfig, evaluate_scene
from posfeat.evaluation.eth_results import format_table
from posfeat.io import write_json
from posfeat.utils import get_logger
from stages.common import ROOT, dataset_root, load_params, param, seeded_settings, stage_entry

METRICS_PATH = Path("metrics/eth.json")
RESULTS_DIR = Path("results/eth")


def main(params: dict | None = None, base_dir: Path = ROOT) -> dict:
    """Run the stage with ``params`` (default: ``params.yaml``); relative paths are taken from ``base_dir``."""
    log = get_logger("stages.eval_eth")
    params = load_params() if params is None else params
    base_dir = Path(base_dir)
    root = dataset_root(params, "eth", base_dir)
    config = ETHConfig.from_dict(seeded_settings(params, "eval.eth"))
    device = param(params, "device", str, "auto")
    scenes = list_scenes(root)
    results_dir = base_dir / RESULTS_DIR
    metrics: dict[str, dict[str, dict]] = {}
    for method in param(params, "extract.methods", list[str]):
        features = base_dir / "features" / method / "eth.h5"
        details = {}
        metrics[method] = {}
        for scene in scenes:
            log.info("%s: reconstructing %s", method, scene)
            res = evaluate_scene(root / scene, features, results_dir / method / scene, config, device=device)
            details[scene] = res.to_dict()
            if res.model_path is not None:  # keep the detail file relocatable
                details[scene]["model"] = (
                    str(Path(res.model_path).relative_to(base_dir))
                    if Path(res.model_path).is_relative_to(base_dir)
                    else res.model_path
                )
            metrics[method][scene] = res.stats
        write_json(results_dir / f"{method}.json", details)
    write_json(base_dir / METRICS_PATH, metrics)
    print(format_table(metrics))
    return metrics


if __name__ == "__main__":
    stage_entry(main, "stages.eval_eth")
