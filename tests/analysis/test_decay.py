from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from gradlab.analysis import decay, profile, shares
from tests.analysis.synthetic import geometric, rows_frame, series


@pytest.mark.parametrize(("rho", "half"), [(0.5, 1), (0.1, 1), (0.8, 4), (0.95, math.nan)])
def test_geometric_series_gives_exact_rho_retention_and_half_depth(rho, half):
    T = 6
    row = decay(series(geometric(rho, T))).iloc[0]
    assert row["rho"] == pytest.approx(rho, rel=1e-12)
    assert row["retention"] == pytest.approx(rho ** (T - 1), rel=1e-12)
    assert row["decades"] == pytest.approx((T - 1) * math.log10(rho), rel=1e-12)
    assert (math.isnan(half) and math.isnan(row["half_depth"])) or row["half_depth"] == half
    assert (row["T"], row["iterations"], row["first_iteration"], row["last_iteration"]) == (T, T, 1, T)
    assert row["vanishing"] == (rho ** (T - 1) < 1e-3) and not row["exploding"] and not row["dead"]


def test_grad_mu_series_counts_depth_from_iteration_zero():
    row = decay(series(geometric(0.5, 3, start=0), quantity="grad/mu", start=0)).iloc[0]
    assert (row["T"], row["iterations"], row["first_iteration"]) == (3, 4, 0)
    assert row["retention"] == pytest.approx(0.125)
    assert row["rho"] == pytest.approx(0.5)


def test_growing_gradient_is_exploding_and_fast_decay_is_vanishing():
    grow, fall = decay(series(geometric(2.0, 4))).iloc[0], decay(series(geometric(0.01, 4))).iloc[0]
    assert grow["rho"] == pytest.approx(2.0) and grow["exploding"] and not grow["vanishing"]
    assert math.isnan(grow["half_depth"])
    assert fall["retention"] == pytest.approx(1e-6) and fall["vanishing"] and not fall["exploding"]


def test_exact_zero_gives_minus_infinite_decades_without_crashing():
    row = decay(series([0.0, 0.1, 1.0])).iloc[0]
    assert row["retention"] == 0 and row["decades"] == -math.inf
    assert row["dead"]
    assert row["rho"] == pytest.approx(0.1)  # fitted on the positive norms only
    assert row["half_depth"] == 1


def test_underflowed_norm_is_dead_but_a_tiny_real_norm_is_not():
    assert decay(series([1e-45, 1.0])).iloc[0]["dead"]
    tiny = decay(series([1e-25, 1.0])).iloc[0]
    assert not tiny["dead"] and tiny["decades"] == pytest.approx(-25)


def test_no_grad_iterations_are_listed_and_never_counted_as_zero():
    frame = series([None, None, 0.25, 0.5, 1.0], statuses=["no_grad", "unused", "ok", "ok", "ok"])
    row = decay(frame).iloc[0]
    assert row["no_grad"] and row["no_grad_iterations"] == "1-2"
    assert (row["first_iteration"], row["first"], row["iterations"]) == (3, 0.25, 3)
    assert row["retention"] == pytest.approx(0.25) and not row["dead"]


def test_one_differentiable_iteration_has_no_retention():
    row = decay(series([None, None, 1.0], statuses=["no_grad", "no_grad", "ok"])).iloc[0]
    assert row["iterations"] == 1 and row["first"] == row["last"] == 1.0
    assert math.isnan(row["retention"]) and math.isnan(row["rho"]) and math.isnan(row["half_depth"])
    assert not row["vanishing"] and not row["exploding"]


def test_no_gradient_anywhere_gives_nan_metrics_not_zeros():
    row = decay(series([None, None], statuses=["no_grad", "no_grad"])).iloc[0]
    assert row["iterations"] == 0 and math.isnan(row["first"]) and pd.isna(row["first_iteration"])
    assert row["no_grad_iterations"] == "1-2"


def test_nonfinite_norms_are_skipped_and_flagged():
    row = decay(series([math.inf, 0.5, 1.0], statuses=["nonfinite", "ok", "ok"])).iloc[0]
    assert row["nonfinite"] and row["first_iteration"] == 2 and row["retention"] == pytest.approx(0.5)


def test_one_row_per_series_and_per_layer_quantities_are_left_out():
    frame = pd.concat([
        series(geometric(0.5, 3), step=0), series(geometric(0.5, 3), step=1),
        series(geometric(0.5, 3), quantity="grad/z", step=0), series(geometric(0.5, 3), layer="other"),
        rows_frame([("r", 0, "em", None, "grad/x_total", 1.0, "ok", 0), ("r", 0, "em", 1, "entropy", 1.0, "ok", 0)]),
    ])
    d = decay(frame)
    assert len(d) == 4
    assert set(d["quantity"]) == {"grad/x", "grad/z"}
    assert not d.duplicated(["run", "rank", "step", "layer", "quantity"]).any()


def test_extra_columns_such_as_config_are_carried_through():
    frame = pd.concat([series(geometric(0.5, 3), run="a").assign(**{"model.kind": "em"}),
                       series(geometric(0.9, 3), run="b").assign(**{"model.kind": "hem"})])
    d = decay(frame).set_index("run")
    assert d.loc["a", "model.kind"] == "em" and d.loc["b", "model.kind"] == "hem"
    assert d.loc["b", "rho"] == pytest.approx(0.9)


def test_categorical_and_string_columns_give_the_same_metrics():
    frame = pd.concat([series(geometric(0.3, 5), run="a"), series([0.0, 1.0], run="b", quantity="grad/z")])
    cat = frame.astype({c: "category" for c in ("run", "layer", "quantity", "status")})
    pd.testing.assert_frame_equal(decay(frame).astype({"run": object, "layer": object, "quantity": object}),
                                  decay(cat).astype({"run": object, "layer": object, "quantity": object}))


def test_empty_frame_gives_empty_table_with_the_columns():
    d = decay(series([1.0]).iloc[:0])
    assert len(d) == 0 and {"retention", "rho", "half_depth", "no_grad_iterations"} <= set(d.columns)


def test_shares_sum_to_one_and_a_missing_gradient_has_no_share():
    frame = series([None, 1.0, 3.0], statuses=["no_grad", "ok", "ok"])
    s = shares(frame)
    assert np.isnan(s["share"].iloc[0])
    assert s["share"].iloc[1:].tolist() == pytest.approx([0.25, 0.75])


def test_profile_is_the_geometric_mean_of_g_t_over_g_last_across_steps():
    frame = pd.concat([series([0.1, 1.0], step=0), series([0.001, 1.0], step=1)])
    p = profile(frame).set_index("iteration")
    assert p.loc[1, "ratio"] == pytest.approx(0.01) and p.loc[1, "depth"] == 1
    assert p.loc[2, "decades"] == 0 and p.loc[1, "steps"] == 2
