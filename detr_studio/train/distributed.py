"""Small helpers around ``torch.distributed`` that do nothing when no process group is running.

Training code calls these unconditionally, so the same code runs in one process and under ``torchrun``.
"""

from __future__ import annotations

import torch.distributed as dist
from torch import Tensor


def is_dist() -> bool:
    """True when a process group is initialised (e.g. under ``torchrun``)."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of processes taking part in training (1 without a process group)."""
    return dist.get_world_size() if is_dist() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_dist() else 0


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum ``tensor`` over all processes, in place, and return it (unchanged without a process group)."""
    if is_dist():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_mean(tensor: Tensor) -> Tensor:
    """Average ``tensor`` over all processes, in place, and return it (unchanged without a process group).

    Integer tensors cannot hold a mean; pass a floating-point tensor.
    """
    if is_dist():
        if not tensor.is_floating_point():
            raise TypeError(f"all_reduce_mean needs a floating-point tensor, got {tensor.dtype}")
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor.div_(dist.get_world_size())
    return tensor
