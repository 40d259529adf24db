from __future__ import annotations

import pytest

from gradlab.errors import ConfigError
from gradlab.train.sampler import StepBatches


def test_batches_are_a_function_of_the_step():
    full = list(StepBatches(20, 4, 12, seed=3))
    assert list(StepBatches(20, 4, 12, seed=3, start=7)) == full[7:]
    assert sorted(sum(full[:5], [])) == list(range(20))  # one epoch covers every image once
    assert full[:5] != full[5:10]  # the next epoch is reshuffled


def test_ranks_take_disjoint_shards():
    a = list(StepBatches(20, 2, 5, seed=0, rank=0, world=2))
    b = list(StepBatches(20, 2, 5, seed=0, rank=1, world=2))
    assert not set(sum(a, [])) & set(sum(b, []))


def test_batch_larger_than_split_is_a_config_error():
    with pytest.raises(ConfigError, match="train.batch_size=8 is too large"):
        StepBatches(5, 8, 10, seed=0)
