"""torchrun integration: process group set-up from the environment, rank helpers, a parameter check."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Context:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup(device: str = "auto", timeout_s: float = 120.0) -> Context:
    """Join the process group torchrun describes (WORLD_SIZE > 1): gloo on CPU, nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or device == "auto" and torch.cuda.is_available()
    if device == "cuda" and not torch.cuda.is_available():
        from gradlab.errors import ConfigError

        raise ConfigError("train.device='cuda' but no CUDA device is available: use train.device=cpu or auto")
    dev = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s))
    return Context(rank, world, local, dev)


def teardown(wait_for_all: bool = True) -> None:
    """Leave the process group. After a clean run every rank first waits for the others: a gloo rank that
    destroys its group while a peer still uses the connection can abort ("terminate called without an active
    exception"). After an error the ranks are not in step, so nobody waits."""
    if dist.is_available() and dist.is_initialized():
        try:
            if wait_for_all:
                dist.barrier()
        finally:
            dist.destroy_process_group()


def parameters_agree(model: nn.Module) -> bool:
    """True when every rank holds the same parameters (a checksum compared across ranks; True alone)."""
    if not (dist.is_available() and dist.is_initialized()):
        return True
    with torch.no_grad():
        checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).cpu()
    gathered = [torch.zeros_like(checksum) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, checksum)
    return all(torch.allclose(g, checksum, rtol=1e-6, atol=1e-9) for g in gathered)
