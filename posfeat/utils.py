"""Small shared helpers: seeding, device choice, logging."""

from __future__ import annotations

import dataclasses
import logging
import random
from typing import Any, Mapping, TypeVar

import numpy as np
import torch


T = TypeVar("T")


class UnknownSettingError(KeyError, ValueError):
    """A settings mapping names a key the configuration does not have (a typo must not be ignored)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def config_from_dict(cls: type[T], d: Mapping[str, Any] | None, what: str) -> T:
    """Build dataclass ``cls`` from a params mapping; unknown keys raise :class:`UnknownSettingError` naming them."""
    d = dict(d or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise UnknownSettingError(f"{what}: unknown settings {sorted(unknown)} (known: {sorted(known)})")
    return cls(**d)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` → CUDA when present, else CPU; anything else is passed to ``torch.device``.

    Asking for CUDA on a machine without it is a clear error rather than a late crash.
    """
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available on this machine")
    return dev


def get_logger(name: str) -> logging.Logger:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    return logging.getLogger(name)
