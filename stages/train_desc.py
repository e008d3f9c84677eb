"""DVC stage ``train_desc``: stage 1 of PoSFeat, the descriptor backbone (docs/method.md#stage-1-line-to-window-loss).

Reads params ``train_desc``, ``model``, ``optimizer`` and ``lr[optimizer]``, ``seed``, ``device``, and the
pair index ``data/prepared/megadepth.json``. Writes ``models/desc.pt`` (final model, atomic),
``models/ckpt_desc/last.pt`` (resumable state, a persistent output: a rerun continues from it),
``dvclive/train_desc`` (metrics every ``log_every`` steps, visualisations under ``plots/images``) and
``results/train_desc.json`` (the run's summary) with its headline ``metrics/train_desc.json``.

    python -m stages.train_desc                                   # one process
    torchrun --nproc_per_node=2 -m stages.train_desc              # DistributedDataParallel
"""

from __future__ import annotations

from pathlib import Path

from posfeat.io import read_json
from posfeat.settings import ParamError, param
from posfeat.training import train
from posfeat.training.config import check_optimizer
from stages import launch
from stages.common import DESC_MODEL_PATH, ROOT, stage_entry
from stages.training import training_index, write_headline

MODEL_PATH = DESC_MODEL_PATH
CKPT_DIR = Path("models/ckpt_desc")
LIVE_DIR = Path("dvclive/train_desc")
METRICS_PATH = Path("metrics/train_desc.json")
SUMMARY_PATH = Path("results/train_desc.json")


def main(params: dict | None = None, base_dir: Path = ROOT, **kwargs) -> dict:
    """Run the stage with ``params`` (default: ``params.yaml``); paths are relative to ``base_dir``.

    ``kwargs`` go to :func:`posfeat.training.train` (e.g. ``stop_after``, ``progress``).
    """
    params, base_dir = launch.stage_inputs(params, base_dir)
    n = launch.processes(params, "train_desc")
    if n > 1 and not launch.under_torchrun():
        launch.relaunch("stages.train_desc", n, params, base_dir)
        return read_json(base_dir / SUMMARY_PATH)
    opt = check_optimizer(param(params, "optimizer", str), "optimizer")
    lrs = param(params, "lr", dict)
    if opt not in lrs:
        raise ParamError(f"params.yaml: lr has no entry for optimizer {opt!r} (have {sorted(lrs)})")
    summary = train(
        "desc",
        training_index(base_dir),
        dict(param(params, "train_desc", dict)),
        out_model=base_dir / MODEL_PATH,
        ckpt_dir=base_dir / CKPT_DIR,
        live_dir=base_dir / LIVE_DIR,
        metrics_path=base_dir / SUMMARY_PATH,
        model_config=dict(param(params, "model", dict)),
        optimizer=opt,
        lr=float(param(params, f"lr.{opt}", float)),
        seed=param(params, "seed", int),
        device=param(params, "device", str, "auto"),
        **kwargs,
    )
    write_headline(summary, base_dir / METRICS_PATH)
    return summary


if __name__ == "__main__":
    stage_entry(main, "stages.train_desc")
