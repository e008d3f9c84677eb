"""Small shared helpers: seeding, device choice, logging."""

from __future__ import annotations

import logging
import random
import sys
from typing import Any

import numpy as np
import torch

from posfeat.settings import ParamError


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (or ``None``) → CUDA when present, else CPU; anything else (a name or a ``torch.device``) is passed
    to ``torch.device``.

    Asking for CUDA on a machine without it is a clear error rather than a late crash.
    """
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ParamError(
            f"device {device!r} requested but CUDA is not available on this machine; run on a GPU machine, or "
            "on the CPU on purpose: add -S device=cpu to the same dvc exp run command, keeping its other -S options "
            "(e.g. dvc exp run -S scale=paper -S device=cpu), or --device cpu on the command line"
        )
    return dev


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bfloat16 convolutions natively (oneDNN: AVX-512 BF16 or AMX); without it,
    CPU bfloat16 is emulated and slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_dtype(enabled: bool, device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype of an opt-in ``amp`` setting on ``device``, or ``None`` for float32.

    CUDA: bfloat16 where supported, else float16 (which needs a GradScaler). CPU: bfloat16 only where the
    CPU has it natively (:func:`cpu_has_native_bf16`); elsewhere ``amp`` falls back to float32 with a
    warning, since emulated bfloat16 would only be slower.
    """
    if not enabled:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    get_logger("posfeat").warning("amp requested but %s has no native bfloat16: float32", device)
    return None


def describe_device(device: torch.device | str) -> str:
    """``cpu`` or ``cuda:0 (NVIDIA H100 80GB HBM3, 1 visible)``: the device a run uses, named."""
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if dev.type == "cuda" and torch.cuda.is_available():
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return f"{dev} ({torch.cuda.get_device_name(index)}, {torch.cuda.device_count()} visible)"
    return str(dev)


def describe_model(model: Any) -> str:
    """``daisy 200-d, 0.11 M parameters (0.04 M trainable)`` for a PoSFeat network (the trainable count where
    some parameters are frozen), else ``str(model)``."""
    if not isinstance(model, torch.nn.Module):
        return str(model)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    cfg = getattr(model, "config", {}) or {}
    name = f"{cfg.get('encoder', type(model).__name__)} {cfg.get('desc_dim', '?')}-d"
    frozen = f" ({trainable / 1e6:.2f} M trainable)" if trainable < total else ""
    return f"{name}, {total / 1e6:.2f} M parameters{frozen}"


def start_line(
    prog: str,
    device: torch.device | str | None = None,
    model: Any = None,
    data: str | None = None,
    steps: str | None = None,
) -> str:
    """The one line a stage or command prints when its work starts: what runs, on which device, with which
    model, on what data, for how many steps (the parts that apply)."""
    parts = [f"torch {torch.__version__}"]
    if device is not None:
        parts.insert(0, f"device {describe_device(device)}")
    if model is not None:
        parts.append(f"model {describe_model(model)}")
    if data:
        parts.append(f"data {data}")
    if steps:
        parts.append(f"steps {steps}")
    return f"{prog}: " + ", ".join(parts)


def announce(
    prog: str,
    device: torch.device | str | None = None,
    model: Any = None,
    data: str | None = None,
    steps: str | None = None,
) -> None:
    """Print :func:`start_line` on stderr at once (before any progress bar)."""
    print(start_line(prog, device, model, data, steps), file=sys.stderr, flush=True)


def get_logger(name: str) -> logging.Logger:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    return logging.getLogger(name)
