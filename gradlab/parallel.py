"""Helpers for wrapped and distributed models, shared by the recorder, the models and the trainer."""

from __future__ import annotations

import torch.distributed as dist
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel wrappers (or the model itself)."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


def current_rank() -> int:
    """This process's rank under torch.distributed, 0 otherwise."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
