"""The seeded training data order: which pairs form global batch ``s``, with which sample seeds, and each
process's slice of it (docs/method.md#conventions). Everything is a pure function of ``(seed, step, position)``,
so a resumed or distributed run sees exactly the batches of one uninterrupted process.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
from torch.utils.data import Sampler

from posfeat.io import DataError


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that is a pure function of the integer ``parts`` (NumPy ``SeedSequence``)."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFFFFFFFFFF for p in parts]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & 0x7FFFFFFFFFFFFFFF


def global_batch(num_pairs: int, batch_size: int, step: int, seed: int) -> list[tuple[int, int]]:
    """The ``(pair_index, sample_seed)`` items of global batch ``step``: a pure function of its inputs.

    Pairs are visited in passes; pass ``k`` is the permutation ``default_rng([seed, k])`` of all
    pairs, so every pair is seen once per pass. Sample seeds depend on the global position only.
    """
    if num_pairs <= 0:
        raise DataError("no training pairs in the index")
    out = []
    for b in range(batch_size):
        pos = step * batch_size + b
        k, j = divmod(pos, num_pairs)
        perm = _permutation(num_pairs, seed, k)
        out.append((int(perm[j]), derive_seed(seed, pos, 0xDA7A)))
    return out


_PERM_CACHE: dict[tuple[int, int, int], np.ndarray] = {}


def _permutation(n: int, seed: int, k: int) -> np.ndarray:
    key = (n, seed, k)
    if key not in _PERM_CACHE:
        if len(_PERM_CACHE) > 4:
            _PERM_CACHE.clear()
        _PERM_CACHE[key] = np.random.default_rng([int(seed), int(k)]).permutation(n)
    return _PERM_CACHE[key]


class StepBatchSampler(Sampler):
    """Batches for steps ``start_step .. num_steps-1``; this rank's slice of each global batch.

    Rank ``r`` of ``world_size`` takes items ``[r·b, (r+1)·b)`` of the global batch (``b =
    batch_size / world_size``), so the union over ranks is exactly the single-process batch.
    """

    def __init__(
        self,
        num_pairs: int,
        batch_size: int,
        seed: int,
        num_steps: int,
        start_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} is not divisible by the world size {world_size}")
        self.num_pairs, self.batch_size, self.seed = num_pairs, batch_size, seed
        self.num_steps, self.start_step = num_steps, start_step
        self.rank, self.world_size = rank, world_size
        self.local = batch_size // world_size

    def __len__(self) -> int:
        return max(0, self.num_steps - self.start_step)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start_step, self.num_steps):
            items = global_batch(self.num_pairs, self.batch_size, step, self.seed)
            yield items[self.rank * self.local : (self.rank + 1) * self.local]
