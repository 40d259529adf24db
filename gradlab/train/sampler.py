"""Batches as a pure function of the step: exact resumption and disjoint DDP shards without state."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from gradlab.errors import ConfigError


class StepBatches(Sampler[list[int]]):
    """Index batches for steps start..steps-1. Epoch e shuffles with seed (seed, e); rank r of w takes every
    w-th index of that permutation; the batch of step s is the (s mod batches-per-epoch)-th of its epoch."""

    def __init__(self, n: int, batch_size: int, steps: int, seed: int, start: int = 0, rank: int = 0, world: int = 1):
        self.per_epoch = n // world // batch_size
        if self.per_epoch < 1:
            raise ConfigError(f"train.batch_size={batch_size} is too large: the train split has {n} images for "
                              f"{world} process(es); lower the batch size or lengthen the split")
        self.n, self.batch_size, self.steps, self.seed = n, batch_size, steps, seed
        self.start, self.rank, self.world = start, rank, world

    def __len__(self) -> int:
        return max(self.steps - self.start, 0)

    def __iter__(self) -> Iterator[list[int]]:
        epoch, shard = -1, None
        for step in range(self.start, self.steps):
            e, b = divmod(step, self.per_epoch)
            if e != epoch:
                g = torch.Generator().manual_seed(self.seed * 100_003 + e)
                epoch, shard = e, torch.randperm(self.n, generator=g)[self.rank :: self.world]
            yield shard[b * self.batch_size : (b + 1) * self.batch_size].tolist()


def shard_indices(n: int, rank: int, world: int) -> list[int]:
    """The validation images of one rank (every world-th)."""
    return list(range(rank, n, world))
