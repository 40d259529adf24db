"""Helpers for wrapped and distributed models, shared by the recorder, the models and the trainer, and the count
of CPUs this process may use (for worker and thread defaults)."""

from __future__ import annotations

import os

import torch.distributed as dist
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel wrappers (or the model itself)."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask (taskset, cgroup cpusets, Slurm, containers pinned to
    cores), not the machine's count; os.cpu_count() where the platform has no affinity (macOS, Windows)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def current_rank() -> int:
    """This process's rank under torch.distributed, 0 otherwise."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
