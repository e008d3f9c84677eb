"""Descriptor matchers in torch: mutual nearest neighbour, ratio test, and both.

Blockwise over the rows of the first set, so 20k × 20k never materialises a full similarity matrix
(a block of ``block_size`` × N2 floats at a time). The same code runs on CPU and GPU. Descriptors are
assumed L2-normalised; similarity is the dot product and the ratio test uses the Euclidean distance
``sqrt(2 − 2·sim)`` (as the ETH benchmark's matcher does).
"""

from __future__ import annotations

import numpy as np
import torch

#: default rows per block by device type: 64 keeps a 20480-wide float32 block (5 MB) in a CPU's cache (mutual NN
#: of 20480 × 20480 128-D: 0.69 s with 64, 0.92 s with 256, 2.09 s with 1024 rows and the previous column
#: reduction, on 2 Xeon cores; benchmarks/speed/bench_pairs.py)
BLOCK_SIZE = {"cpu": 64, "cuda": 4096}


def _as_tensor(x, device) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    return x.to(device=device, dtype=torch.float32)


@torch.no_grad()
def _best_both_ways(d0: torch.Tensor, d1: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest neighbours in both directions from ONE pass over ``d0 @ d1.T`` → ``(nn01, nn10)``.

    Rows take their best with ``max(1)``; columns keep a running maximum of the *values* (``amax(0)``,
    a vectorised reduction) and look up the row index only for the columns a block improves (a few per
    column over a whole pass), because an index-returning reduction along dim 0 is an order of magnitude
    slower on CPUs. On ties the first index wins, in both directions.
    """
    n1 = d1.shape[0]
    nn01 = torch.empty(d0.shape[0], dtype=torch.long, device=d0.device)
    col_val = torch.full((n1,), -float("inf"), device=d0.device)
    col_idx = torch.zeros(n1, dtype=torch.long, device=d0.device)
    for s in range(0, d0.shape[0], block_size):
        sim = d0[s : s + block_size] @ d1.T
        nn01[s : s + block_size] = sim.max(1).indices
        v = sim.amax(0)
        cols = torch.nonzero(v > col_val).squeeze(1)  # strictly: an earlier block keeps a tie
        if len(cols):
            vc = v[cols]
            col_val[cols] = vc
            col_idx[cols] = (sim[:, cols] == vc).int().argmax(0) + s  # the first row reaching the maximum
    return nn01, col_idx


@torch.no_grad()
def _best_two_rows(d0: torch.Tensor, d1: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For every row of ``d0``: its nearest neighbour in ``d1`` and the two best similarities → ``(nn, top)``.

    Row-wise reductions only (``max(1)``, then the best masked and ``amax(1)`` again), the fast direction on
    CPUs. A tie for the best gives two equal similarities (and the first index).
    """
    n0, n1 = d0.shape[0], d1.shape[0]
    nn = torch.empty(n0, dtype=torch.long, device=d0.device)
    top = torch.full((n0, 2), -float("inf"), device=d0.device)
    for s in range(0, n0, block_size):
        sim = d0[s : s + block_size] @ d1.T
        v, i = sim.max(1)
        nn[s : s + block_size], top[s : s + block_size, 0] = i, v
        if n1 > 1:
            sim.scatter_(1, i[:, None], -float("inf"))
            top[s : s + block_size, 1] = sim.amax(1)
    return nn, top


@torch.no_grad()
def _best_two_both_ways(d0: torch.Tensor, d1: torch.Tensor, block_size: int):
    """Nearest neighbours and top-2 similarities in both directions → ``(nn01, top01, nn10, top10)``.

    Two matrix products (``d0 @ d1.T`` and ``d1 @ d0.T``) with row-wise reductions: on CPUs a second product
    costs less than a top-2 along dim 0 of the first.
    """
    nn01, top01 = _best_two_rows(d0, d1, block_size)
    nn10, top10 = _best_two_rows(d1, d0, block_size)
    return nn01, top01, nn10, top10


@torch.no_grad()
def match_descriptors(
    desc0,
    desc1,
    mutual: bool = True,
    ratio: float | None = None,
    block_size: int | None = None,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Match two descriptor sets (N0×D, N1×D). Returns an ``(M, 2)`` int64 array of index pairs.

    ``mutual``: keep i→j only if j→i is also the nearest neighbour. ``ratio``: keep only if
    ``d1/d2 <= ratio`` (distances ``sqrt(2−2·sim)``), checked in both directions when ``mutual``.
    ``block_size``: rows of the similarity matrix per step (None: :data:`BLOCK_SIZE` for the device; small
    blocks stay in a CPU's cache, large ones keep a GPU busy). The result does not depend on it.
    """
    device = (
        torch.device(device)
        if device is not None
        else (desc0.device if isinstance(desc0, torch.Tensor) else torch.device("cpu"))
    )
    d0 = _as_tensor(desc0, device)
    d1 = _as_tensor(desc1, device)
    if d0.ndim != 2 or d1.ndim != 2 or (len(d0) and len(d1) and d0.shape[1] != d1.shape[1]):
        raise ValueError(f"descriptors must be N×D with the same D, got {tuple(d0.shape)} and {tuple(d1.shape)}")
    if len(d0) == 0 or len(d1) == 0:
        return np.zeros((0, 2), np.int64)
    block_size = int(block_size or BLOCK_SIZE.get(device.type, BLOCK_SIZE["cpu"]))
    arange = torch.arange(len(d0), device=device)
    if ratio is None:  # mutual NN alone needs only the best neighbour each way
        nn01, nn10 = _best_both_ways(d0, d1, block_size)
        keep = torch.ones(len(d0), dtype=torch.bool, device=device)
    else:
        nn01, top01, nn10, top10 = _best_two_both_ways(d0, d1, block_size)
        keep = _ratio_ok(top01, ratio)
        if mutual:
            keep &= _ratio_ok(top10, ratio)[nn01]
    if mutual:
        keep &= nn10[nn01] == arange
    i0 = torch.nonzero(keep).squeeze(1)
    return torch.stack([i0, nn01[i0]], 1).cpu().numpy().astype(np.int64)


def _ratio_ok(top: torch.Tensor, ratio: float) -> torch.Tensor:
    dist = (2.0 - 2.0 * top.clamp(-1.0, 1.0)).clamp_min(0).sqrt()
    # With a single reference descriptor there is no second neighbour: the test passes.
    return torch.where(
        torch.isfinite(top[:, 1]), dist[:, 0] <= ratio * dist[:, 1], torch.ones_like(dist[:, 0], dtype=torch.bool)
    )
