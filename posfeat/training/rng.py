"""RNG state: the global torch / NumPy / Python (and CUDA) random states, saved into and restored from a
``weights_only``-loadable checkpoint, so that a resumed run continues the same random streams."""

from __future__ import annotations

import math
import random

import numpy as np
import torch


def rng_state() -> dict:
    """torch / NumPy / Python (and CUDA) RNG states as tensors and numbers (``weights_only``-safe)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {
            "version": int(py_state[0]),
            "state": torch.tensor(py_state[1], dtype=torch.int64),
            "gauss": float("nan") if py_state[2] is None else float(py_state[2]),
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = state["python"]
    gauss = None if math.isnan(p["gauss"]) else p["gauss"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
