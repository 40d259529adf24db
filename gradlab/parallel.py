"""Helpers for wrapped and distributed models, shared by the recorder, the models and the trainer, and the count
of CPUs this process may use (for worker and thread defaults)."""

from __future__ import annotations

import os
import sys

import torch.distributed as dist
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel wrappers and `torch.compile`'s OptimizedModule
    (its `_orig_mod`), in any nesting, or the model itself."""
    return wrappers(model)[-1]


def wrappers(model: nn.Module) -> list[nn.Module]:
    """The model, the module each wrapper holds, and so on down to the unwrapped module (the last)."""
    chain = [model]
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif is_compiled(model):
            model = model._orig_mod
        else:
            return chain
        chain.append(model)


def is_compiled(model: nn.Module) -> bool:
    """True for the wrapper `torch.compile(module)` returns (torch._dynamo's OptimizedModule). Until something
    is compiled torch._dynamo is not imported (it takes seconds), so this costs nothing then."""
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    return eval_frame is not None and isinstance(model, eval_frame.OptimizedModule)


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
