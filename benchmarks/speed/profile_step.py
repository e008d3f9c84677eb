"""Where a demo-scale stage-1 training step spends its time, on the real demo pairs (a measurement, not a test).

    python -m benchmarks.speed.profile_step                                  # params.yaml's train_desc, 20 steps
    python -m benchmarks.speed.profile_step --steps 30 --out benchmarks/results/profile_step.json
    python -m benchmarks.speed.profile_step --channels-last        # the same step in NHWC memory format
    python -m benchmarks.speed.profile_step --conv-backward plain  # without the trainer's channels-last gradients

It runs the trainer's own pieces (``PairDataset`` + ``StepBatchSampler`` data, ``StageForward``, the stage
objective, backward, the optimiser step) on the prepared demo index (``data/prepared/megadepth.json``, made by
``dvc repro prepare_megadepth``) with the model and ``train_desc`` settings of ``params.yaml``, and times each
phase with wall clocks: data (read, resize, jitter and collate a batch), network forward, loss forward,
backward, optimiser. The first 3 steps are warm-up and not counted. Run it on a quiet machine: the figures are
only meaningful when nothing else runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from posfeat.models import build_model
from posfeat.training import stage_config
from posfeat.training.config import build_loss, make_optimizer
from posfeat.training.conv_backward import use_channels_last_backward
from posfeat.training.distributed import DistInfo
from posfeat.training.forward import StageForward, set_train_modes
from posfeat.training.objectives import compute_objective
from posfeat.trainset.batch_order import StepBatchSampler
from posfeat.trainset.pairs import PairDataset
from posfeat.utils import autocast_dtype
from stages.training import training_index

ROOT = Path(__file__).resolve().parents[2]

PHASES = ("data", "network", "loss", "backward", "optimizer")


def _batches(params: dict, cfg, steps: int):
    """Collated batches of the trainer's own data order (``StepBatchSampler``), timed one by one."""
    index = training_index(ROOT)
    ds = PairDataset(
        index,
        "train",
        cfg.image_size,
        cfg.color_jitter,
        int(params["seed"]),
        float(cfg.rotation),
        cfg.scale,
        float(cfg.grayscale),
        float(cfg.night),
        cfg.crop,
    )
    sampler = StepBatchSampler(len(ds), cfg.batch_size, int(params["seed"]), steps)
    collate = torch.utils.data.default_collate
    for items in sampler:
        t0 = time.perf_counter()
        batch = collate([ds[i] for i in items])
        yield batch, time.perf_counter() - t0


def profile(
    steps: int, channels_last: bool, params_path: Path = ROOT / "params.yaml", conv_backward: str = "channels_last"
) -> dict:
    """Per-phase seconds (mean over the steps after 3 warm-up steps) of stage-1 training steps."""
    params = yaml.safe_load(Path(params_path).read_text())
    cfg = stage_config("desc", dict(params["train_desc"]))
    torch.manual_seed(0)
    model = build_model(dict(params["model"]))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    if conv_backward == "channels_last":  # as the trainer on the CPU (posfeat.training.conv_backward)
        use_channels_last_backward(model.backbone)
    set_train_modes(model, "desc", cfg.freeze_bn)
    fwd = StageForward(model, "desc", cfg.backbone_passes)
    loss_fn = build_loss("desc", cfg)
    opt = make_optimizer(
        params["optimizer"], [p for p in model.backbone.parameters()], float(params["lr"][params["optimizer"]])
    )
    info = DistInfo()
    amp = autocast_dtype(cfg.amp, torch.device("cpu"))
    rows = []
    for step, (batch, t_data) in enumerate(_batches(params, cfg, steps + 3)):
        im1 = batch["image1"].contiguous(memory_format=fmt)
        im2 = batch["image2"].contiguous(memory_format=fmt)
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=amp, enabled=amp is not None):
            outputs = fwd(im1, im2)
        t1 = time.perf_counter()
        objective, _, _ = compute_objective(
            "desc", loss_fn, outputs, batch, cfg.image_size, 0, step, 0, cfg.batch_size, info
        )
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        objective.backward()
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        if step >= 3:
            rows.append((t_data, t1 - t0, t2 - t1, t3 - t2, t4 - t3))
    mean = np.mean(rows, 0)
    total = float(mean.sum())
    return {
        "steps": len(rows),
        "channels_last": channels_last,
        "conv_backward": conv_backward,
        "threads": torch.get_num_threads(),
        "seconds_per_step": round(total, 4),
        "amp": str(amp).replace("torch.", "") if amp else None,
        "phases_s": {k: round(float(v), 4) for k, v in zip(PHASES, mean)},
        "phases_share": {k: round(float(v) / total, 3) for k, v in zip(PHASES, mean)},
        "image_size": list(cfg.image_size),
        "batch_size": cfg.batch_size,
        "model": params["model"],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=20, help="timed steps (after 3 warm-up steps)")
    ap.add_argument("--channels-last", action="store_true", help="NHWC memory format for the network")
    ap.add_argument(
        "--conv-backward",
        choices=("channels_last", "plain"),
        default="channels_last",
        help="convolution gradients as the trainer computes them on the CPU, or plain nn.Conv2d",
    )
    ap.add_argument("--params", default=str(ROOT / "params.yaml"), help="parameters file (model, train_desc)")
    ap.add_argument("--out", help="write the JSON report here too")
    a = ap.parse_args(argv)
    res = {
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "params": a.params,
        **profile(a.steps, a.channels_last, Path(a.params), a.conv_backward),
    }
    print(json.dumps(res, indent=2))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
