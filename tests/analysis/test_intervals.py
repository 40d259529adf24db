"""Intervals over seeds hold their nominal coverage at the seed counts the studies use (3, 5, 10), measured on
many synthetic studies with a known mean; the percentile bootstrap, kept for figures over many steps, does not."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradlab.analysis import bootstrap_ci, t_interval, welch_difference

STUDIES = 2000  # synthetic studies per check: the coverage's standard error is about 0.005


@pytest.mark.parametrize("n", [3, 5, 10])
@pytest.mark.parametrize("spread", [0.05, 1.0])
def test_the_t_interval_covers_the_true_mean_at_its_nominal_rate(n, spread):
    rng = np.random.default_rng(n)
    truth = -1.3
    draws = rng.normal(truth, spread, size=(STUDIES, n))
    hits = sum(low <= truth <= high for low, high in (t_interval(d) for d in draws))
    assert 0.93 <= hits / STUDIES <= 0.97


def test_the_percentile_bootstrap_over_three_seeds_under_covers():
    """Why the t interval: over 3 seeds the bootstrap lies inside [min, max] and covers at most 75%."""
    rng = np.random.default_rng(0)
    draws = rng.normal(0.0, 1.0, size=(400, 3))
    hits = sum(low <= 0.0 <= high for low, high in (bootstrap_ci(d, n=300, seed=i) for i, d in enumerate(draws)))
    assert hits / len(draws) <= 0.8


@pytest.mark.parametrize(("na", "nb", "sa", "sb"), [(3, 3, 1.0, 1.0), (3, 5, 0.3, 2.0), (10, 5, 1.0, 0.2)])
def test_welchs_difference_covers_the_true_effect(na, nb, sa, sb):
    rng = np.random.default_rng(na * 10 + nb)
    effect, hits = 0.7, 0
    for _ in range(STUDIES):
        diff, low, high = welch_difference(rng.normal(0.0, sa, na), rng.normal(effect, sb, nb))
        hits += low <= effect <= high
    assert 0.93 <= hits / STUDIES <= 0.975


def test_intervals_need_two_values_and_say_so():
    assert all(math.isnan(v) for v in t_interval([1.0, math.nan]))
    assert welch_difference([1.0], [2.0, 3.0])[0] == pytest.approx(1.5)
    assert math.isnan(welch_difference([1.0], [2.0, 3.0])[1])
    assert t_interval([-math.inf, -1.0, -2.0]) == (-math.inf, -math.inf)  # a dead run's log: no finite interval
    low, high = t_interval([1.0, 2.0, 3.0])
    assert low == pytest.approx(2 - 4.302653 / math.sqrt(3)) and high == pytest.approx(2 + 4.302653 / math.sqrt(3))


def test_bootstrap_ci_covers_the_truth_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    truth, hits, trials = -2.0, 0, 200
    for i in range(trials):
        seeds = rng.normal(truth, 0.5, size=30)
        low, high = bootstrap_ci(seeds, n=500, seed=i)
        hits += low <= truth <= high
    assert 0.88 <= hits / trials <= 0.99


def test_bootstrap_ci_is_deterministic_for_a_seed_and_brackets_the_estimate():
    values = np.random.default_rng(0).normal(size=12)
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    assert bootstrap_ci(values, seed=3) != bootstrap_ci(values, seed=4)
    low, high = bootstrap_ci(values, stat="median")
    assert low <= np.median(values) <= high


def test_bootstrap_ci_needs_two_values_and_survives_infinities():
    assert all(math.isnan(v) for v in bootstrap_ci([1.0, math.nan]))
    low, high = bootstrap_ci([-math.inf, -1.0, -2.0, -1.5])
    assert low == -math.inf and -2.0 < high <= -1.0
