"""The mechanism numbers of MATH.md §9 (gradlab.analysis.mechanism) on hand-built records with known answers, and
the regimes they decide (misdirected, attenuated)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from gradlab.analysis import regime
from gradlab.analysis.mechanism import jacobian_mechanism, mechanism, sigma_rho, step_mechanism
from tests.analysis.synthetic import jacobian_records, rows_frame, run_records, series, with_mechanism


def one_step_records() -> pd.DataFrame:
    per_layer = [("grad/x_total", 0.5), ("grad/out", 10.0), ("grad/unit_em", 3.0), ("grad/unit_res", 1.0),
                 ("grad/x_cos", -0.2), ("grad/x_rest", 2.0)]
    return pd.concat([
        rows_frame([("r", 0, "em", None, q, v, "ok", 0) for q, v in per_layer]),
        series([1.0, 2.0, 4.0], "grad/x"),
        series([1.0, 2.0, 3.0], "e_gain"),
        rows_frame([("r", 0, g, None, "grad/params", v, "ok", 0) for g, v in (("backbone", 3.0), ("head", 4.0))]),
    ], ignore_index=True)


def test_step_mechanism_numbers():
    m = step_mechanism(one_step_records()).set_index("layer").loc["em"]
    assert m["gain"] == pytest.approx(0.05)
    assert m["branch_share"] == pytest.approx(0.75)
    assert m["c_rest"] == pytest.approx(-0.2)
    assert m["r_rest"] == pytest.approx(0.5)  # ‖Σ_{t<T} g_t‖ / ‖g_T‖ with g_T the last iteration's 4.0
    assert m["e_gain"] == pytest.approx(2.0)
    assert m["grad_params"] == pytest.approx(5.0)


def test_missing_quantities_give_nan_not_zero():
    frame = one_step_records()
    m = step_mechanism(frame[~frame["quantity"].isin(["grad/unit_em", "grad/x_cos"])]).iloc[0]
    assert math.isnan(m["branch_share"]) and math.isnan(m["c_rest"]) and m["gain"] == pytest.approx(0.05)
    no_grad = frame.assign(status=lambda f: f["status"].where(f["quantity"] != "grad/out", "no_grad"))
    assert math.isnan(step_mechanism(no_grad).iloc[0]["gain"])


def test_bound_and_alignment_over_the_iterations_it_covers():
    """T = 3: the bound covers t = 1, 2 (∂L/∂μ^(t−1) = J_tᵀ ∂L/∂μ^(t) only below the last iteration)."""
    frame = pd.concat([series([2.0, 0.5, 7.0], "jac/sigma_max"), series([4.0, 1.0, 9.0], "jac/sigma_em_max"),
                       series([1.0, 4.0, 2.0, 3.0], "grad/mu", start=0)], ignore_index=True)
    j = jacobian_mechanism(frame).iloc[0]
    assert j["bound_iterations"] == 2
    assert j["predicted"] == pytest.approx(math.log10(2.0) + math.log10(0.5))
    assert j["measured"] == pytest.approx(math.log10(1.0 / 4.0) + math.log10(4.0 / 2.0))  # log10(g_0 / g_2)
    assert j["alignment"] == pytest.approx(math.sqrt(0.5))
    assert j["sigma"] == pytest.approx(1.0) and j["sigma_em"] == pytest.approx(2.0)


def test_partial_gradient_bound_skips_no_grad_iterations():
    frame = pd.concat([series([2.0, 3.0, 5.0, 7.0], "jac/sigma_max"),
                       series([None, None, 4.0, 2.0, 3.0], "grad/mu", start=0,
                              statuses=["no_grad", "no_grad", "ok", "ok", "ok"])], ignore_index=True)
    j = jacobian_mechanism(frame).iloc[0]
    assert j["bound_iterations"] == 1  # only t = 3: ρ_3 = g_2 / g_3 (t = 4 is the last iteration)
    assert j["predicted"] == pytest.approx(math.log10(5.0)) and j["measured"] == pytest.approx(math.log10(2.0))


def test_window_uses_at_least_three_jacobian_steps():
    frames = [series([s + 1.0, 1.0], "jac/sigma_max", step=10 * s) for s in range(10)]
    frames += [series([1.0, 1.0, 1.0], "grad/mu", start=0, step=10 * s) for s in range(10)]
    frames += [rows_frame([("r", 10 * s, "em", None, "grad/out", 1.0, "ok", 0)]) for s in range(10)]
    m = mechanism(pd.concat(frames, ignore_index=True), fraction=0.1).iloc[0]
    assert m["sigma"] == pytest.approx(9.0)  # the median of σ_1 over the last 3 Jacobian steps: 8, 9, 10


def verdict(frame: pd.DataFrame) -> pd.Series:
    return regime(frame, bases=8).iloc[0]


def test_misdirected_attenuated_and_healthy_are_told_apart():
    base = run_records("r", rho=0.7, similarity=0.2, entropy_ratio=0.5)
    misdirected = verdict(with_mechanism(base, c_rest=0.03, r_rest=1.5))
    assert misdirected["regime"] == "misdirected"
    assert "c_rest = +0.03" in misdirected["reason"] and "1.5× as large" in misdirected["reason"]
    assert "turns 55° away from the one-step gradient (≥ 30°)" in misdirected["reason"]
    attenuated = verdict(with_mechanism(base, gain=0.005))
    assert attenuated["regime"] == "attenuated" and "G = 0.005" in attenuated["reason"]
    assert verdict(with_mechanism(base, branch_share=0.1))["regime"] == "attenuated"
    healthy = verdict(with_mechanism(base))
    assert healthy["regime"] == "healthy" and "c_rest +0.50" in healthy["reason"] and "gain G 0.08" in healthy["reason"]
    small_rest = verdict(with_mechanism(base, c_rest=0.03, r_rest=0.2))  # disagreeing but small: not misdirected
    assert small_rest["regime"] == "healthy"


def test_without_mechanism_records_the_old_verdicts_stand():
    r = verdict(run_records("r", rho=0.7, similarity=0.2, entropy_ratio=0.5))
    assert r["regime"] == "healthy" and math.isnan(r["gain"]) and "gain" not in r["reason"]


def test_turn_is_the_angle_between_the_full_and_the_one_step_gradient():
    import numpy as np

    from gradlab.analysis.mechanism import turn_angle

    rng = np.random.default_rng(0)
    for _ in range(50):
        g_last, rest = rng.normal(size=20), rng.normal(size=20) * rng.uniform(0.1, 3)
        c = rest @ g_last / (np.linalg.norm(rest) * np.linalg.norm(g_last))
        r = np.linalg.norm(rest) / np.linalg.norm(g_last)
        full = g_last + rest
        truth = np.degrees(np.arccos(full @ g_last / (np.linalg.norm(full) * np.linalg.norm(g_last))))
        assert turn_angle(c, r) == pytest.approx(truth, abs=1e-6)


def test_frame_takes_medians_over_jacobian_steps_and_rho_below_the_last_iteration():
    f = sigma_rho(jacobian_records()).set_index("iteration")
    assert f.loc[1, "sigma"] == pytest.approx(4.0)  # median of 2, 6, 4
    assert f.loc[1, "rho"] == pytest.approx(0.25) and f.loc[2, "rho"] == pytest.approx(2.0)
    assert math.isnan(f.loc[3, "rho"])  # t = T: ∂L/∂μ^(T−1) also flows through Z^(T), no bound


def test_sigma_rho_is_empty_without_jacobian_steps():
    assert sigma_rho(series([1.0, 2.0], "grad/mu", start=0)).empty
