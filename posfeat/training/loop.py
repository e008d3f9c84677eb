"""The training loop: :func:`train` builds a run from its parts, steps through the seeded global batches,
logs, visualises and checkpoints, and writes the final model and metrics.

A run is set up in the order that fixes its random streams: data, ``seed_everything``, model, loss and
optimiser, fingerprint, resume (which restores the RNG states), data loader, visualiser, logger. Each step
(:func:`_train_step`) runs :class:`~posfeat.training.forward.StageForward`, computes this rank's objective
(:func:`~posfeat.training.objectives.compute_objective`) and updates the trained module unless the loss is
not finite (the original's NaN guard).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from posfeat.models import save_checkpoint
from posfeat.training import fingerprints
from posfeat.training.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    load_training_state,
    restore_training_state,
    save_training_state,
    training_state,
)
from posfeat.training.config import DescConfig, StageConfig, stage_config
from posfeat.training.distributed import DistInfo, all_reduce, init_distributed
from posfeat.training.forward import StageForward, set_train_modes
from posfeat.training.history import History
from posfeat.training.live import LiveLogger
from posfeat.training.objectives import compute_objective
from posfeat.training.run import Run, RunSpec, build_stage_model, datasets, optimisation
from posfeat.training.visualizer import Visualizer
from posfeat.trainset.batch_order import StepBatchSampler
from posfeat.utils import announce, get_logger, resolve_device, seed_everything

logger = get_logger(__name__)


class TrainingInterrupted(RuntimeError):
    """Raised by :func:`train` when ``stop_after`` steps have run (simulates a killed run)."""


def _stage1(cfg: StageConfig, name: str, stage2_value):
    """A stage-1-only setting of ``cfg`` (:class:`DescConfig`); stage 2 runs with ``stage2_value``."""
    return getattr(cfg, name) if isinstance(cfg, DescConfig) else stage2_value


def train(
    stage: str,
    index: str | os.PathLike | dict,
    cfg: dict | StageConfig,
    *,
    out_model: str | os.PathLike,
    ckpt_dir: str | os.PathLike,
    live_dir: str | os.PathLike | None = None,
    metrics_path: str | os.PathLike | None = None,
    model_config: dict | None = None,
    init_checkpoint: str | os.PathLike | None = None,
    optimizer: str = "adam",
    lr: float = 1e-4,
    seed: int = 0,
    device: str = "auto",
    stop_after: int | None = None,
    progress: bool = True,
) -> dict:
    """Train one stage and write its final model (atomically); returns the final metrics.

    Args:
        stage: ``"desc"`` (backbone, line-to-window loss; the detector is not run) or ``"kp"`` (detector,
            REINFORCE; the backbone from ``init_checkpoint`` is frozen and run under ``no_grad``).
        index: the prepared pair index (path or dict; see :mod:`posfeat.trainset.pairs`).
        cfg: the stage configuration: a :class:`~posfeat.training.config.DescConfig` /
            :class:`~posfeat.training.config.KpConfig`, or params.yaml's ``train_desc`` / ``train_kp`` mapping.
        out_model: final checkpoint (:func:`posfeat.models.save_checkpoint` format).
        ckpt_dir: where ``last.pt`` (the resumable state) lives.
        live_dir: DVCLive directory (``None``: no logs).
        metrics_path: final metrics JSON (``None``: not written).
        model_config: :func:`posfeat.models.build_model` configuration (stage 1).
        init_checkpoint: the stage-1 model (stage 2, required).
        optimizer, lr: ``adam`` | ``sgd`` and its learning rate.
        seed: everything random derives from it.
        device: ``auto`` | ``cpu`` | ``cuda[:N]`` (under ``torchrun``: ``cuda:LOCAL_RANK``).
        stop_after: raise :class:`TrainingInterrupted` after this many steps of *this* call (tests).
        progress: show a tqdm bar (rank 0).
    """
    spec = RunSpec(
        stage,
        index,
        stage_config(stage, cfg),
        Path(out_model),
        Path(ckpt_dir),
        None if live_dir is None else Path(live_dir),
        None if metrics_path is None else Path(metrics_path),
        model_config,
        init_checkpoint,
        optimizer,
        float(lr),
        int(seed),
    )
    dev = resolve_device(device)
    info = init_distributed(dev)
    try:
        if info.enabled and dev.type == "cuda":
            dev = torch.device("cuda", info.local_rank)
            torch.cuda.set_device(dev)
        return _train(spec, dev, info, stop_after, progress)
    finally:
        if info.owner:
            dist.destroy_process_group()


def _train(spec: RunSpec, dev: torch.device, info: DistInfo, stop_after: int | None, progress: bool) -> dict:
    """:func:`train` after the configuration check and the distributed setup."""
    cfg, stage, seed = spec.cfg, spec.stage, spec.seed
    if cfg.batch_size % info.world_size:
        raise ValueError(
            f"train_{stage}.batch_size {cfg.batch_size} is not divisible by the {info.world_size} processes"
        )
    index_digest = fingerprints.index_digest(spec.index)
    train_set, val_set = datasets(spec.index, cfg, seed)
    seed_everything(seed)
    model, init_digest = build_stage_model(stage, spec.model_config, spec.init_checkpoint, dev, info)
    run = optimisation(stage, cfg, dev, info, seed, model, spec.optimizer, spec.lr)
    run.fp = fingerprints.fingerprint(
        stage=stage,
        cfg=cfg.fingerprinted(),
        model=dict(model.config),
        optimizer=spec.optimizer,
        lr=spec.lr,
        seed=seed,
        index=index_digest,
        init=init_digest,
        format=CHECKPOINT_FORMAT,
        code=fingerprints.code_digest(),
    )
    run.ckpt_path = spec.ckpt_dir / CHECKPOINT_NAME
    history = History(cfg.metrics_window, cfg.log_every, run.total_steps)
    start = _resume(run, history)
    if info.is_main:
        announce(
            f"train_{stage}",
            dev,
            model,
            f"{len(train_set)} training pairs ({len(val_set)} for validation)",
            f"{start} -> {run.total_steps}, batch {cfg.batch_size} on {info.world_size} process(es)",
        )
    fwd = _wrap_forward(run)
    sampler = StepBatchSampler(len(train_set), cfg.batch_size, seed, run.total_steps, start, info.rank, info.world_size)
    loader = DataLoader(
        train_set,
        batch_sampler=sampler,
        num_workers=cfg.num_workers,
        pin_memory=dev.type == "cuda",
        persistent_workers=False,
    )
    visualizer = Visualizer(val_set, stage, cfg.vis_pairs, cfg.vis_keypoints, seed) if info.is_main else None
    log = LiveLogger(spec.live_dir, info.is_main, history.rows, start)
    step, last_val = _run_steps(run, fwd, loader, history, log, visualizer, start, stop_after, progress)
    return _finish(run, history, step, last_val, log, spec.out_model, spec.metrics_path)


def _resume(run: Run, history: History) -> int:
    """Continue from the run's own checkpoint where there is one; returns the step to start at."""
    state = load_training_state(run.ckpt_path, run.fp)
    start = 0
    if state is not None:
        start = restore_training_state(state, run.model, run.opt, run.sched, run.scaler, history)
        if run.info.is_main:
            logger.info("resuming %s training from %s at step %d/%d", run.stage, run.ckpt_path, start, run.total_steps)
    if start > run.total_steps:
        raise ValueError(
            f"{run.ckpt_path}: checkpoint is at step {start}, beyond the {run.total_steps} steps configured"
        )
    return start


def _wrap_forward(run: Run) -> nn.Module:
    """The stage forward pass, wrapped in ``DistributedDataParallel`` when there are several processes."""
    fwd: nn.Module = StageForward(run.model, run.stage, _stage1(run.cfg, "backbone_passes", 1))
    if run.info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        fwd = DDP(fwd, device_ids=[run.dev.index] if run.dev.type == "cuda" else None, broadcast_buffers=False)
    return fwd


def _run_steps(
    run: Run,
    fwd,
    loader,
    history: History,
    log: LiveLogger,
    visualizer,
    start: int,
    stop_after: int | None,
    progress: bool,
) -> tuple[int, dict[str, float]]:
    """The steps from ``start`` on; returns the last step and the last validation statistics."""
    bar = tqdm(
        total=run.total_steps,
        initial=start,
        desc=f"train_{run.stage}",
        unit="step",
        disable=not (progress and run.info.is_main),
        dynamic_ncols=True,
    )
    step, ran, last_val = start, 0, {}
    for batch in loader:
        t0 = time.perf_counter()
        loss, stats, lr_now = _train_step(run, fwd, batch, step, history)
        step += 1
        ran += 1
        if step % run.cfg.steps_per_epoch == 0:
            run.sched.step()
        if run.dev.type == "cuda":
            torch.cuda.synchronize(run.dev)
        row = history.add(step, loss, stats, lr_now, time.perf_counter() - t0)
        if row is not None:
            log.metrics(row)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}")
        if visualizer is not None and run.due(run.cfg.vis_every, step):
            last_val = _visualize(run, visualizer, log, step, history)
        if run.due(run.cfg.checkpoint_every, step) and run.info.is_main:
            save_training_state(
                run.ckpt_path,
                training_state(run.fp, run.stage, step, run.model, run.opt, run.sched, run.scaler, history),
            )
        if stop_after is not None and ran >= stop_after and step < run.total_steps:
            bar.close()
            log.end()
            raise TrainingInterrupted(f"stopped after {ran} steps (at step {step}) as asked")
    bar.close()
    if visualizer is not None and ran == 0:  # a finished run rerun: its final visualisation again
        last_val = _visualize(run, visualizer, log, step, None)
    return step, last_val


def _train_step(run: Run, fwd, batch: dict, step: int, history: History) -> tuple[float, dict, float]:
    """One update on this rank's slice of global batch ``step`` → ``(loss, stats, learning rate used)``."""
    set_train_modes(run.model, run.stage, _stage1(run.cfg, "freeze_bn", False))
    im1 = batch["image1"].to(run.dev, non_blocking=True)
    im2 = batch["image2"].to(run.dev, non_blocking=True)
    with torch.autocast(device_type=run.dev.type, dtype=run.amp_dtype, enabled=run.use_amp):
        outputs = fwd(im1, im2)
    local = run.batch_size // run.info.world_size
    objective, loss, stats = compute_objective(
        run.stage,
        run.loss_fn,
        outputs,
        batch,
        run.size,
        run.seed,
        step,
        run.info.rank * local,
        run.batch_size,
        run.info,
    )
    _update(run, objective, loss, step, history)
    skipped = batch["skipped"].sum().to(torch.float64)
    history.counters["skipped_samples"] += int(all_reduce(skipped, run.info).item())
    return loss, stats, run.opt.param_groups[0]["lr"]


def _update(run: Run, objective: torch.Tensor, loss: float, step: int, history: History) -> None:
    """Back-propagate ``objective`` and step the optimiser, unless the loss is not finite (then the update
    is skipped and counted; the gradients were still synchronised)."""
    run.opt.zero_grad(set_to_none=True)
    run.scaler.scale(objective).backward()
    if math.isfinite(loss):
        run.scaler.step(run.opt)
        run.scaler.update()
        return
    history.counters["skipped_steps"] += 1
    run.opt.zero_grad(set_to_none=True)
    if run.info.is_main:
        logger.warning("step %d: non-finite loss %s; update skipped", step, loss)


def _visualize(
    run: Run, visualizer: Visualizer, log: LiveLogger, step: int, history: History | None
) -> dict[str, float]:
    """Render the validation pairs and log the images; with ``history``, also their statistics, kept among
    the history's rows so that a resumed run replays them with the training rows."""
    images, val = visualizer(run.model, run.dev)
    log.images(step, images)
    if history is not None and val:
        row = {"step": step, **val}
        history.rows.append(row)
        log.metrics(row)
    return val


def _finish(
    run: Run, history: History, step: int, last_val: dict, log: LiveLogger, out_model: Path, metrics_path: Path | None
) -> dict:
    """Write the final model and metrics (rank 0), close the logger, wait for the other ranks."""
    metrics = history.metrics(step, run.info.world_size, str(run.dev), last_val)
    if run.info.is_main:
        save_checkpoint(out_model, run.model, extra={"stage": run.stage, "steps": step, "fingerprint": run.fp})
        if metrics_path is not None:
            from posfeat.io import write_json

            write_json(metrics_path, metrics)
        nan = float("nan")
        logger.info(
            "%s: %d steps, loss %.4f (first %d steps: %.4f), %.3f s/step → %s",
            run.stage,
            step,
            nan if metrics["loss"] is None else metrics["loss"],
            len(history.first_window),
            nan if metrics["loss_initial"] is None else metrics["loss_initial"],
            metrics["seconds_per_iteration"] or 0.0,
            out_model,
        )
    log.end()
    if run.info.enabled:
        dist.barrier()
    return metrics
