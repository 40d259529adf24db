"""torchrun integration: process group set-up from the environment, rank helpers, a parameter check, and the
one-line error when another rank is lost.

A rank that dies (SIGKILL, out of memory, a lost node) closes its sockets: the others' next collective fails
at once with gloo's "Connection reset by peer" / "Connection closed by peer". A rank that hangs (stopped,
deadlocked) is noticed when a collective has waited `GRADLAB_DIST_TIMEOUT` seconds (default 120). Either
way `lost_peers` turns the backend's error into a `LostPeerError` that says which rank lost contact.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from gradlab.errors import ConfigError, GradlabError

TIMEOUT_ENV = "GRADLAB_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 120.0


class LostPeerError(GradlabError):
    """Another rank of a distributed run died or stopped answering: the run stops (resume it)."""

    hard_exit = True  # gloo's threads may abort the interpreter's shutdown once a peer is gone


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


def setup(device: str = "auto", timeout_s: float | None = None) -> Context:
    """Join the process group torchrun describes (WORLD_SIZE > 1): gloo on CPU, nccl on CUDA. A collective
    (and the rendezvous) fails after `timeout_s` seconds without an answer (default: $GRADLAB_DIST_TIMEOUT,
    else 120)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or device == "auto" and torch.cuda.is_available()
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device='cuda' but no CUDA device is available: use train.device=cpu or auto")
    timeout_s = timeout_from_env() if timeout_s is None else timeout_s
    dev = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s))
    return Context(rank, world, local, dev)


def timeout_from_env() -> float:
    """$GRADLAB_DIST_TIMEOUT in seconds (a positive number), else 120."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{TIMEOUT_ENV}={text!r} is not a positive number of seconds (e.g. {TIMEOUT_ENV}=300)")
    return value


#: a backend's error; gloo's transport errors raised inside DDP's backward come without a source path, e.g. a hung
#: peer's "Application timeout caused pair closure" (seen 2026-12-04)
_BACKEND = re.compile(r"gloo|nccl|ProcessGroup|c10d|pair closure|(?:reset|closed) by peer", re.IGNORECASE)
_SOURCE = re.compile(r"\[[^\]]*\.(?:cc|cpp|h|hpp):\d+\]\s*")  # "[.../gloo/transport/tcp/pair.cc:537] "


def lost_peer(err: BaseException, ctx: Context) -> LostPeerError | None:
    """The one-line error for a collective that failed because another rank is gone (None for other errors)."""
    if not ctx.distributed or not isinstance(err, RuntimeError):
        return None
    text = str(err)
    if not (isinstance(err, dist.DistError) or _BACKEND.search(text)):
        return None
    detail = _SOURCE.sub("", text.strip().splitlines()[0] if text.strip() else type(err).__name__)
    detail = detail.split(" This is typically caused")[0].rstrip(". ")
    detail = detail if len(detail) <= 160 else detail[:157] + "..."
    peer = f"rank {1 - ctx.rank}" if ctx.world == 2 else f"another of the {ctx.world} ranks"
    return LostPeerError(f"rank {ctx.rank}: lost contact with {peer} ({detail}): the distributed run stopped; "
                         "resume it with --resume")


@contextlib.contextmanager
def lost_peers(ctx: Context) -> Iterator[None]:
    """Re-raise a backend error caused by a lost rank as a one-line `LostPeerError`; other errors pass."""
    try:
        yield
    except RuntimeError as err:
        lost = lost_peer(err, ctx)
        if lost is None:
            raise
        raise lost from err


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
