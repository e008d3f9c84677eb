"""The parts of one training run, built in :func:`~posfeat.training.loop.train`'s order: what the run is asked to
do (:class:`RunSpec`), its datasets, the model with only the stage's module trainable, and the optimisation objects
every step uses (:class:`Run`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from posfeat.io import DataError
from posfeat.models import build_model, load_checkpoint
from posfeat.training import config, fingerprints
from posfeat.training.config import StageConfig
from posfeat.training.conv_backward import use_channels_last_backward
from posfeat.training.distributed import DistInfo
from posfeat.training.forward import trainable_module
from posfeat.trainset.pairs import PairDataset
from posfeat.utils import autocast_dtype


@dataclass
class RunSpec:
    """What one training run is asked to do: the stage, its data and settings, where it starts and writes."""

    stage: str
    index: str | os.PathLike | dict
    cfg: StageConfig
    out_model: Path
    ckpt_dir: Path
    live_dir: Path | None
    metrics_path: Path | None
    model_config: dict | None
    init_checkpoint: str | os.PathLike | None
    optimizer: str
    lr: float
    seed: int


@dataclass
class Run:
    """The objects of one run that every step uses."""

    stage: str
    cfg: StageConfig
    dev: torch.device
    info: DistInfo
    seed: int
    model: nn.Module
    loss_fn: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    use_amp: bool
    amp_dtype: torch.dtype | None
    fp: str = ""
    ckpt_path: Path | None = None

    @property
    def size(self) -> tuple[int, int]:
        """Training image size ``(W, H)``."""
        return self.cfg.image_size

    @property
    def batch_size(self) -> int:
        """The global batch size."""
        return self.cfg.batch_size

    def due(self, every: int, step: int) -> bool:
        """Whether ``step`` is a multiple of ``every`` or the last step."""
        return step % every == 0 or step == self.total_steps

    @property
    def total_steps(self) -> int:
        """Epochs × steps per epoch."""
        return self.cfg.total_steps


def datasets(index, cfg: StageConfig, seed: int) -> tuple[PairDataset, PairDataset]:
    """The training pairs (jitter and view augmentation) and the validation pairs (the training pairs when
    the index has none); a :class:`DataError` when there is nothing to train on."""
    size = cfg.image_size
    train_set = PairDataset(
        index,
        "train",
        size,
        cfg.color_jitter,
        seed,
        float(cfg.rotation),
        cfg.scale,
        float(cfg.grayscale),
        float(cfg.night),
        cfg.crop,
    )
    if len(train_set) == 0:
        raise DataError(f"{index if not isinstance(index, dict) else 'index'}: no training pairs")
    val_set = PairDataset(index, "val", size, None, seed)
    if len(val_set) == 0:
        val_set = PairDataset(index, "train", size, None, seed)
    return train_set, val_set


def build_stage_model(stage: str, model_config, init_checkpoint, dev: torch.device, info: DistInfo):
    """The model on ``dev`` with only the stage's module trainable → ``(model, digest of init_checkpoint)``."""
    if stage == "desc":
        model = build_model(dict(model_config or {}))
        init_digest = None
    else:
        if init_checkpoint is None:
            raise ValueError("stage 'kp' needs init_checkpoint (the stage-1 model, models/desc.pt)")
        model, _ = load_checkpoint(init_checkpoint, map_location="cpu")
        init_digest = fingerprints.file_digest(init_checkpoint)
    model.to(dev)
    trained = trainable_module(model, stage)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trained.parameters():
        p.requires_grad_(True)
    if info.enabled and dev.type == "cuda":
        model.backbone = nn.SyncBatchNorm.convert_sync_batchnorm(model.backbone)
    if dev.type == "cpu" and stage == "desc":  # same gradients computed channels-last: -12 % a step (conv_backward);
        use_channels_last_backward(trained)  # the detector's stage-2 step was 3 % slower with it, so not there
    return model, init_digest


def optimisation(stage, cfg: StageConfig, dev, info, seed, model, optimizer: str, lr: float) -> Run:
    """Loss, optimiser over the trained module, step scheduler and AMP settings, gathered into a :class:`_Run`."""
    loss_fn = cfg.loss()
    opt = config.make_optimizer(optimizer, [p for p in trainable_module(model, stage).parameters()], lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_decay_step, gamma=float(cfg.lr_gamma))
    amp_dtype = autocast_dtype(cfg.amp, dev)
    use_amp = amp_dtype is not None
    scaler = torch.amp.GradScaler(dev.type, enabled=amp_dtype == torch.float16)
    return Run(stage, cfg, dev, info, seed, model, loss_fn, opt, sched, scaler, use_amp, amp_dtype)
