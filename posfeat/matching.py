"""Descriptor matchers in torch: mutual nearest neighbour, ratio test, and both.

Blockwise over the rows of the first set, so 20k × 20k never materialises a full similarity matrix
(a block of ``block_size`` × N2 floats at a time). The same code runs on CPU and GPU. Descriptors are
assumed L2-normalised; similarity is the dot product and the ratio test uses the Euclidean distance
``sqrt(2 − 2·sim)`` (as the ETH benchmark's matcher does).
"""

from __future__ import annotations

import numpy as np
import torch


def _as_tensor(x, device) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    return x.to(device=device, dtype=torch.float32)


@torch.no_grad()
def _best_both_ways(d0: torch.Tensor, d1: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest neighbours in both directions from ONE pass over ``d0 @ d1.T`` → ``(nn01, nn10)``.

    What mutual NN needs without a ratio test: a running column maximum instead of a running top 2 (a
    max-reduction is cheaper than ``topk``). On ties the first index wins, in both directions.
    """
    n1 = d1.shape[0]
    nn01 = torch.empty(d0.shape[0], dtype=torch.long, device=d0.device)
    col_val = torch.full((n1,), -float("inf"), device=d0.device)
    col_idx = torch.zeros(n1, dtype=torch.long, device=d0.device)
    for s in range(0, d0.shape[0], block_size):
        sim = d0[s : s + block_size] @ d1.T
        nn01[s : s + block_size] = sim.argmax(1)
        v, i = sim.max(0)
        better = v > col_val  # strictly: an earlier block keeps a tie
        col_val = torch.where(better, v, col_val)
        col_idx = torch.where(better, i + s, col_idx)
    return nn01, col_idx


@torch.no_grad()
def _best_two_both_ways(d0: torch.Tensor, d1: torch.Tensor, block_size: int):
    """Nearest neighbours and top-2 similarities in both directions from ONE pass over ``d0 @ d1.T``.

    Row blocks of the similarity matrix are computed once; rows take their top 2 directly, columns keep
    a running top 2 merged block by block, so the mutual check costs one matrix product, not two.
    Returns ``(nn01, top01, nn10, top10)``.
    """
    n0, n1 = d0.shape[0], d1.shape[0]
    dev = d0.device
    nn01 = torch.empty(n0, dtype=torch.long, device=dev)
    top01 = torch.full((n0, 2), -float("inf"), device=dev)
    col_val = torch.full((2, n1), -float("inf"), device=dev)
    col_idx = torch.zeros((2, n1), dtype=torch.long, device=dev)
    k1, k0 = min(2, n1), min(2, n0)
    for s in range(0, n0, block_size):
        sim = d0[s : s + block_size] @ d1.T
        v, i = sim.topk(k1, dim=1)
        nn01[s : s + block_size] = i[:, 0]
        top01[s : s + block_size, :k1] = v
        bv, bi = sim.topk(min(2, sim.shape[0]), dim=0)
        allv = torch.cat([col_val, bv], 0)
        alli = torch.cat([col_idx, bi + s], 0)
        mv, mi = allv.topk(2, dim=0)
        col_val, col_idx = mv, alli.gather(0, mi)
    top10 = col_val.T.contiguous()
    if k0 < 2:
        top10[:, 1] = -float("inf")
    return nn01, top01, col_idx[0], top10


@torch.no_grad()
def match_descriptors(
    desc0,
    desc1,
    mutual: bool = True,
    ratio: float | None = None,
    block_size: int = 1024,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Match two descriptor sets (N0×D, N1×D). Returns an ``(M, 2)`` int64 array of index pairs.

    ``mutual``: keep i→j only if j→i is also the nearest neighbour. ``ratio``: keep only if
    ``d1/d2 <= ratio`` (distances ``sqrt(2−2·sim)``), checked in both directions when ``mutual``.
    """
    device = torch.device(device) if device is not None else (
        desc0.device if isinstance(desc0, torch.Tensor) else torch.device("cpu")
    )
    d0 = _as_tensor(desc0, device)
    d1 = _as_tensor(desc1, device)
    if d0.ndim != 2 or d1.ndim != 2 or (len(d0) and len(d1) and d0.shape[1] != d1.shape[1]):
        raise ValueError(f"descriptors must be N×D with the same D, got {tuple(d0.shape)} and {tuple(d1.shape)}")
    if len(d0) == 0 or len(d1) == 0:
        return np.zeros((0, 2), np.int64)
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
    return torch.where(torch.isfinite(top[:, 1]), dist[:, 0] <= ratio * dist[:, 1], torch.ones_like(dist[:, 0], dtype=torch.bool))
