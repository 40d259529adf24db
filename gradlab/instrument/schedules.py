"""When to record: plain callables `step -> bool`, in Cockpit's manner."""

from __future__ import annotations

import math
from collections.abc import Callable

Schedule = Callable[[int], bool]


def every(k: int) -> Schedule:
    """Record steps 0, k, 2k, …"""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"every={k!r} is invalid: it must be an integer >= 1 or a callable step -> bool")
    return lambda step: step % k == 0


def log_spaced(per_decade: int = 10, dense: int = 10, max_step: int = 10**8) -> Schedule:
    """Every step below `dense`, then about `per_decade` steps per decade (10, 12, 15, 19, 25, …)."""
    if per_decade < 1 or dense < 0:
        raise ValueError(f"log_spaced(per_decade={per_decade}, dense={dense}): need per_decade >= 1, dense >= 0")
    count = int(math.log10(max(max_step, 1)) * per_decade) + 1
    steps = frozenset(round(10 ** (i / per_decade)) for i in range(count))
    return lambda step: step < dense or step in steps


def as_schedule(spec: int | Schedule) -> Schedule:
    """An int k means `every(k)`; a callable is used as it is."""
    return spec if callable(spec) else every(spec)
