from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from gradlab.analysis import diagnostics, flags, spikes
from gradlab.analysis import thresholds as th
from tests.analysis.synthetic import geometric, rows_frame, run_records, series


def steady(values, quantity="grad/x_total") -> pd.DataFrame:
    """One per-layer series over steps (iteration null)."""
    return rows_frame([("r", s, "em", None, quantity, v, "ok", 0) for s, v in enumerate(values)])


def test_spike_is_flagged_at_the_step_that_jumps_tenfold_and_only_there():
    values = np.exp(np.random.default_rng(0).normal(0, 0.1, 40))
    values[25], values[30] = 50.0, 5.0  # 50x is a spike, 5x is not
    s = spikes(steady(values))
    assert s["step"].tolist() == [25]
    assert s["value"].iloc[0] == pytest.approx(50, rel=0.2)
    assert "× the median" in s["evidence"].iloc[0]


def test_no_spike_before_enough_earlier_steps_and_never_against_a_zero_median():
    early = steady([1.0, 1.0, 100.0] + [1.0] * 10)
    zeros = steady([0.0] * 10 + [1.0])
    assert spikes(early).empty and spikes(zeros).empty


def test_spike_factor_is_read_from_the_thresholds_module(monkeypatch):
    values = [1.0] * 10 + [5.0]
    assert spikes(steady(values)).empty
    monkeypatch.setattr(th, "SPIKE_FACTOR", 4.0)
    assert spikes(steady(values))["step"].tolist() == [10]


def test_spikes_are_found_per_iteration_series():
    frame = pd.concat([series([1.0, 1.0], step=s) for s in range(10)] + [series([30.0, 1.0], step=10)])
    s = spikes(frame)
    assert s["step"].tolist() == [10] and "iteration 1" in s["evidence"].iloc[0]


def test_collapse_and_saturation_are_told_apart_on_synthetic_diagnostics():
    frame = pd.concat([
        run_records("collapsed", similarity=0.99, entropy_ratio=0.99),
        run_records("saturated", similarity=0.2, entropy_ratio=0.01),
        run_records("healthy", similarity=0.3, entropy_ratio=0.6),
    ])
    f = flags(frame, bases=8)
    raised = f.groupby("run")["flag"].agg(set).to_dict()
    assert "collapse" in raised["collapsed"] and "saturation" not in raised["collapsed"]
    assert "saturation" in raised["saturated"] and "collapse" not in raised["saturated"]
    assert "healthy" not in raised
    collapse = f[f["flag"] == "collapse"].iloc[0]
    assert collapse["value"] == pytest.approx(0.99) and "attention uniform" in collapse["evidence"]


def test_diagnostics_use_the_config_bases_or_infer_a_lower_bound():
    frame = run_records("r", entropy_ratio=0.99, bases=8, steps=3)
    assert (diagnostics(frame.assign(**{"model.bases": 8}))["bases"] == 8).all()
    inferred = diagnostics(frame)
    assert inferred["bases_inferred"].all() and (inferred["bases"] == 8).all()  # exp(0.99 ln 8) = 7.8 → 8
    assert inferred["entropy_ratio"].iloc[0] == pytest.approx(0.99)


def test_no_grad_is_a_flag_with_a_nan_value_never_a_zero_norm():
    frame = series([None, None, 1.0], statuses=["no_grad", "no_grad", "ok"])
    f = flags(frame)
    row = f[f["flag"] == "no_grad"].iloc[0]
    assert "iterations 1–2" in row["evidence"] and "no_grad" in row["evidence"]
    assert "dead" not in set(f["flag"])


def test_dead_nonfinite_vanishing_and_exploding_carry_their_evidence():
    frame = pd.concat([
        series([0.0, 1.0], run="dead"),
        series([math.nan, 1.0], run="nan", statuses=["nonfinite", "ok"]),
        series(geometric(0.01, 3), run="vanishing"),
        series(geometric(3.0, 3), run="exploding"),
    ])
    f = flags(frame).set_index(["run", "flag"])
    assert f.loc[("dead", "dead"), "value"] == 0 and "zero or underflow" in f.loc[("dead", "dead"), "evidence"]
    assert "nonfinite" in f.loc[("nan", "nonfinite"), "evidence"]
    assert f.loc[("vanishing", "vanishing"), "value"] == pytest.approx(1e-4)
    assert "-4.0 decades" in f.loc[("vanishing", "vanishing"), "evidence"]
    assert f.loc[("exploding", "exploding"), "value"] == pytest.approx(3.0)
    assert "ρ = 3" in f.loc[("exploding", "exploding"), "evidence"]
    assert ("dead", "vanishing") in f.index  # R = 0 < 1e-3: a dead first iteration also vanishes


def test_vanishing_threshold_is_read_from_the_thresholds_module(monkeypatch):
    frame = series(geometric(0.1, 3))  # R = 1e-2
    assert "vanishing" not in set(flags(frame)["flag"])
    monkeypatch.setattr(th, "VANISHING_RETENTION", 0.1)
    assert "vanishing" in set(flags(frame)["flag"])


def test_a_clean_frame_raises_no_flags():
    f = flags(series(geometric(0.7, 4)))
    assert len(f) == 0 and "evidence" in f.columns
