from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from gradlab.analysis import decay, geometric_mean, log_median, summarize, window, windows
from tests.analysis.synthetic import geometric, series


def steps_frame(n: int, run: str = "r") -> pd.DataFrame:
    return pd.DataFrame({"run": run, "step": np.arange(n) * 10, "value": 1.0})


@pytest.mark.parametrize(("which", "steps"), [("first", [0, 10]), ("middle", [40, 50]), ("last", [80, 90])])
def test_window_takes_a_fraction_of_each_runs_recorded_steps(which, steps):
    frame = pd.concat([steps_frame(10, "a"), steps_frame(4, "b")])
    w = window(frame, which, fraction=0.2)
    assert sorted(w.loc[w["run"] == "a", "step"]) == steps
    assert len(w[w["run"] == "b"]) == 1  # ceil(0.2 * 4) = 1: at least one step
    assert (w["window"] == which).all()


def test_windows_stack_first_middle_and_last():
    w = windows(steps_frame(10), fraction=0.1)
    assert w.groupby("window")["step"].agg(list).to_dict() == {"first": [0], "last": [90], "middle": [40]}


def test_window_rejects_an_unknown_name_or_fraction():
    with pytest.raises(ValueError, match="window 'end'"):
        window(steps_frame(3), "end")
    with pytest.raises(ValueError, match="fraction"):
        window(steps_frame(3), "last", fraction=0)


def test_geometric_mean_is_zero_with_a_zero_and_log_median_ignores_a_few():
    assert geometric_mean([1e-2, 1e-4]) == pytest.approx(1e-3)
    assert geometric_mean([0.0, 1.0, 1.0]) == 0
    assert log_median([0.0, 1e-3, 1e-3]) == pytest.approx(1e-3)
    assert math.isnan(geometric_mean([math.nan]))


def test_summarize_aggregates_ratios_geometrically_over_steps():
    frame = pd.concat([series(geometric(0.1, 3), step=0), series(geometric(0.001, 3), step=1),
                       series([0.0, 1.0], step=2, quantity="grad/z"), series([0.5, 1.0], step=3, quantity="grad/z")])
    s = summarize(decay(frame)).set_index("quantity")
    assert s.loc["grad/x", "rho"] == pytest.approx(0.01)  # sqrt(0.1 · 0.001)
    assert s.loc["grad/x", "retention"] == pytest.approx(1e-4) and s.loc["grad/x", "decades"] == pytest.approx(-4)
    assert s.loc["grad/x", "steps"] == 2 and s.loc["grad/x", "vanishing"] == 0.5
    assert s.loc["grad/z", "retention"] == 0 and s.loc["grad/z", "dead"] == 0.5  # a dead step: geometric mean 0
    median = summarize(decay(frame), how="median").set_index("quantity")
    assert median.loc["grad/z", "decades"] == -math.inf  # median of {-inf, -0.3} is their midpoint
