"""Checkpoint I/O: the resumable training state ``ckpt_dir/last.pt``, written and read back.

Every ``checkpoint_every`` steps (and at the end) ``last.pt`` receives, atomically and
``weights_only``-loadable: format, fingerprint, stage, step, model, optimiser, scheduler, AMP scaler, RNG
states and the run's history (:class:`~posfeat.training.history.History`). A run resumes from it only when
the fingerprint (:mod:`posfeat.training.fingerprints`) is its own; anything else is ignored with a warning.
The final model is written by :func:`posfeat.models.save_checkpoint`, not here.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from posfeat.io import atomic_path
from posfeat.training.history import History
from posfeat.training.rng import rng_state, set_rng_state
from posfeat.utils import get_logger

logger = get_logger(__name__)

CHECKPOINT_NAME = "last.pt"
CHECKPOINT_FORMAT = 1


def training_state(fp: str, stage: str, step: int, model: nn.Module, opt, sched, scaler, history: History) -> dict:
    """Everything a run resumes from at ``step`` (tensors on the CPU, the RNG states of now)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "fingerprint": fp,
        "stage": stage,
        "step": step,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else {},
        "rng": rng_state(),
        **history.state(),
    }


def restore_training_state(state: dict, model: nn.Module, opt, sched, scaler, history: History) -> int:
    """Load :func:`training_state`'s ``state`` into the run's objects and the global RNGs; returns its step."""
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    history.restore(state)
    return int(state["step"])


def save_training_state(path: Path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically (a temporary file, then a rename)."""
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(state, tmp)


def load_training_state(path: Path, fp: str) -> dict | None:
    """The resumable state at ``path`` if it was written under fingerprint ``fp``; ``None`` otherwise."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 — an unreadable checkpoint must not block training
        logger.warning("%s: unreadable training checkpoint (%s: %s); starting from scratch", path, type(e).__name__, e)
        return None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        logger.warning("%s: not a training checkpoint of format %d; starting from scratch", path, CHECKPOINT_FORMAT)
        return None
    if state.get("fingerprint") != fp:
        logger.warning("%s was written under another configuration; starting from scratch", path)
        return None
    return state
