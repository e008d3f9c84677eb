"""DVC stages ``eval_eth@<method>``: the ETH local feature benchmark (sparse reconstruction with pycolmap) of one
method's features.

Reads params ``datasets.eth``, ``eval.eth`` (:class:`ETHConfig` fields), ``seed`` and ``device``, and
``features/<method>/eth.h5`` (names ``<Scene>/images/<file>``). For every scene under the ETH root it writes the
work folder ``results/eth/<method>/<Scene>/`` (COLMAP database, pair list, ``sparse/<k>`` models); then
``results/eth/<method>.json`` (per scene: every statistic, the protocol used, the verification report, mapping
attempts, timings, message, model folder) and the headline ``metrics/eth/<method>.json`` (per scene: registered
images, points, track length, reprojection error, rotation error).
Run: ``python -m stages.eval_eth <method>``.
"""

from __future__ import annotations

from pathlib import Path

from posfeat.datasets.eth import list_scenes
from posfeat.evaluation.eth.evaluate import ETHConfig, evaluate_scene
from posfeat.evaluation.eth.results import format_table, write_results
from posfeat.evaluation.headline import eth_headline
from posfeat.io import write_json
from posfeat.settings import dataset_root, param, seeded_settings
from posfeat.utils import get_logger
from stages.common import ROOT, load_params, method_entry

RESULTS_DIR = Path("results/eth")
METRICS_DIR = Path("metrics/eth")


def main(method: str, params: dict | None = None, base_dir: Path = ROOT) -> dict:
    """Evaluate ``method`` with ``params`` (default: ``params.yaml``); relative paths are taken from ``base_dir``."""
    log = get_logger("stages.eval_eth")
    params = load_params() if params is None else params
    base_dir = Path(base_dir)
    root = dataset_root(params, "eth", base_dir)
    config = ETHConfig.from_dict(seeded_settings(params, "eval.eth"))
    device = param(params, "device", str, "auto")
    features = base_dir / "features" / method / "eth.h5"
    results = []
    for scene in list_scenes(root):
        log.info("%s: reconstructing %s", method, scene)
        results.append(
            evaluate_scene(root / scene, features, base_dir / RESULTS_DIR / method / scene, config, device=device)
        )
    write_results(base_dir / RESULTS_DIR / f"{method}.json", results, base_dir)
    stats = {res.scene: res.stats for res in results}
    write_json(base_dir / METRICS_DIR / f"{method}.json", eth_headline(stats))
    print(format_table({method: stats}))
    return stats


if __name__ == "__main__":
    method_entry(main, "stages.eval_eth")
