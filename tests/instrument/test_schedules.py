from __future__ import annotations

import pytest

from gradlab.instrument.schedules import as_schedule, every, log_spaced


def test_every_k():
    assert [s for s in range(10) if every(4)(s)] == [0, 4, 8]
    with pytest.raises(ValueError, match="every=0"):
        every(0)


def test_log_spaced_is_dense_then_sparse():
    picked = [s for s in range(1001) if log_spaced(per_decade=4, dense=5)(s)]
    assert picked[:5] == [0, 1, 2, 3, 4]
    assert picked[5:] == [6, 10, 18, 32, 56, 100, 178, 316, 562, 1000]


def test_callables_pass_through():
    fn = lambda s: s in (2, 3)  # noqa: E731
    assert as_schedule(fn) is fn and as_schedule(2)(4) and not as_schedule(2)(3)
