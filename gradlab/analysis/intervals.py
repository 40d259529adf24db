"""Intervals over runs (one number per seed) that hold their nominal coverage at the seed counts used, and the
bootstrap the figures use over steps.

- `t_interval`: the Student-t interval of the mean, mean ± t_{n−1} s / √n. Exact for normal per-seed values at
  every n ≥ 2; a percentile bootstrap over 3 seeds lies inside [min, max] of the three and covers the mean at most
  75% of the time, so comparisons over seeds use this (tests/analysis/test_intervals.py measures the coverage).
- `welch_difference`: the difference of two groups' means with its Welch interval (unequal variances,
  Welch–Satterthwaite degrees of freedom): the effect size of "HEM vs EM", not two overlapping intervals.
- `bootstrap_ci`: a percentile bootstrap of any statistic (the median band of a figure over many steps).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

#: the method every interval over runs names in its table (the label where a column header names it)
INTERVAL_LABEL = "Student-t 95% CI"
INTERVAL_METHOD = f"{INTERVAL_LABEL} over runs (seeds)"
BOOTSTRAP_RESAMPLES = 1000  # resamples of every bootstrap interval


def _finite(values) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    return v[~np.isnan(v)]


def t_interval(values: Sequence[float] | np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """(low, high) of the Student-t interval of the mean of `values` (NaN dropped); (NaN, NaN) below two values.
    A value of ±∞ (a dead run's log) makes the interval infinite on that side, as it should."""
    from scipy import stats

    v = _finite(values)
    if len(v) < 2:
        return math.nan, math.nan
    if not np.isfinite(v).all():
        mean = float(v.mean())
        return mean, mean  # ±inf or nan: no finite interval
    half = stats.t.ppf((1 + level) / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean() - half), float(v.mean() + half)


def mean_interval(values: Sequence[float] | np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of `values` over runs (NaN dropped; the mean NaN without values): `t_interval`."""
    v = _finite(values)
    return (float(v.mean()) if len(v) else math.nan), *t_interval(v, level)


def welch_difference(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                     level: float = 0.95) -> tuple[float, float, float]:
    """(mean(b) − mean(a), low, high): Welch's interval of the difference of two groups' means (NaN dropped);
    NaN bounds unless each group has two finite values."""
    from scipy import stats

    a, b = _finite(a), _finite(b)
    if len(a) == 0 or len(b) == 0:
        return math.nan, math.nan, math.nan
    diff = float(b.mean() - a.mean())
    if len(a) < 2 or len(b) < 2 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return diff, math.nan, math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf((1 + level) / 2, df) * se
    return diff, diff - half, diff + half


def resolve_stat(stat: str | Callable) -> Callable:
    """"mean" / "median" or a callable f(array, axis) → the statistic applied along the resample axis."""
    if callable(stat):
        return stat
    try:
        return {"mean": np.mean, "median": np.median}[stat]
    except KeyError:
        raise ValueError(f"stat={stat!r}: use 'mean', 'median' or a callable f(values, axis)") from None


def bootstrap_ci(values: Sequence[float] | np.ndarray, n: int = BOOTSTRAP_RESAMPLES, seed: int = 0, level: float = 0.95,
                 stat: str | Callable = "mean") -> tuple[float, float]:
    """Percentile bootstrap CI of `stat` over `values` (e.g. one number per seed): n resamples at once.

    NaN values are dropped; fewer than two values give (NaN, NaN). The same seed gives the same interval.
    Percentiles are order statistics (no interpolation), so ±∞ values (dead runs) stay valid.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if len(v) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    samples = v[rng.integers(0, len(v), size=(n, len(v)))]
    estimates = np.sort(resolve_stat(stat)(samples, axis=1))
    alpha = (1 - level) / 2
    low = estimates[max(0, math.floor(alpha * n))]
    high = estimates[min(n - 1, math.ceil((1 - alpha) * n) - 1)]
    return float(low), float(high)
