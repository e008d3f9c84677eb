"""The distributed setup: which rank this process is, the process group, and the all-reduce.

Under ``torchrun`` (``WORLD_SIZE > 1``) :func:`init_distributed` initialises the process group (gloo on CPU,
nccl on CUDA) unless one exists already; a single process gets a :class:`DistInfo` of world size 1, on which
:func:`all_reduce` is the identity.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


class DistInfo:
    """Rank, world size and whether this process initialised the process group."""

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0, owner: bool = False):
        self.rank, self.world_size, self.local_rank, self.owner = rank, world_size, local_rank, owner

    @property
    def enabled(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0, the process that logs and writes files."""
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Initialise ``torch.distributed`` when launched by ``torchrun`` with ``WORLD_SIZE > 1``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local, owner=False)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    return DistInfo(rank, world, local, owner=True)


def all_reduce(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``t`` over the ranks in place (nothing in a single process); returns ``t``."""
    if info.enabled:
        dist.all_reduce(t)
    return t
