"""DVC stage ``train_kp``: stage 2 of PoSFeat, the detector head (docs/method.md#stage-2-reinforce-detector-loss).

Loads ``models/desc.pt`` (stage 1), freezes the backbone (eval mode, ``no_grad``) and trains the
detector with the REINFORCE loss. Reads params ``train_kp`` (with its own ``optimizer`` and ``lr``: SGD
1e-3 in the paper and the code), ``seed``, ``device`` and the pair index. Writes ``models/posfeat.pt``,
``models/ckpt_kp/last.pt`` (persistent, resumable), ``dvclive/train_kp`` and ``results/train_kp.json`` (the run's
summary) with its headline ``metrics/train_kp.json``.
The model architecture comes from ``models/desc.pt``.

    python -m stages.train_kp
    torchrun --nproc_per_node=2 -m stages.train_kp
"""

from __future__ import annotations

from pathlib import Path

from posfeat.io import read_json
from posfeat.settings import param
from posfeat.training import train
from posfeat.training.config import check_optimizer
from stages import launch
from stages.common import DESC_MODEL_PATH, ROOT, stage_entry
from stages.training import training_index, write_headline

MODEL_PATH = Path("models/posfeat.pt")
CKPT_DIR = Path("models/ckpt_kp")
LIVE_DIR = Path("dvclive/train_kp")
METRICS_PATH = Path("metrics/train_kp.json")
SUMMARY_PATH = Path("results/train_kp.json")


def main(params: dict | None = None, base_dir: Path = ROOT, **kwargs) -> dict:
    """Run the stage with ``params`` (default: ``params.yaml``); paths are relative to ``base_dir``."""
    params, base_dir = launch.stage_inputs(params, base_dir)
    n = launch.processes(params, "train_kp")
    if n > 1 and not launch.under_torchrun():
        launch.relaunch("stages.train_kp", n, params, base_dir)
        return read_json(base_dir / SUMMARY_PATH)
    cfg = dict(param(params, "train_kp", dict))
    opt = check_optimizer(param(cfg, "optimizer", str, "sgd"), "train_kp.optimizer")
    lr = float(param(cfg, "lr", float, 1e-3))
    cfg.pop("optimizer", None), cfg.pop("lr", None)
    summary = train(
        "kp",
        training_index(base_dir),
        cfg,
        out_model=base_dir / MODEL_PATH,
        ckpt_dir=base_dir / CKPT_DIR,
        live_dir=base_dir / LIVE_DIR,
        metrics_path=base_dir / SUMMARY_PATH,
        init_checkpoint=base_dir / DESC_MODEL_PATH,
        optimizer=opt,
        lr=lr,
        seed=param(params, "seed", int),
        device=param(params, "device", str, "auto"),
        **kwargs,
    )
    write_headline(summary, base_dir / METRICS_PATH)
    return summary


if __name__ == "__main__":
    stage_entry(main, "stages.train_kp")
