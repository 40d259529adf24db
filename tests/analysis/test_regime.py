from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from gradlab.analysis import regime
from tests.analysis.synthetic import implicit_records, rows_frame, run_records, with_mechanism


def verdicts(frame: pd.DataFrame, **kw) -> dict[str, pd.Series]:
    return {row["run"]: row for _, row in regime(frame, bases=8, **kw).iterrows()}


def test_collapse_is_named_with_its_onset_and_explains_the_near_zero_gradient():
    steps = 40
    collapsed = np.arange(steps) >= 30
    frame = run_records("r", steps=steps, T=8, rho=np.where(collapsed, 1e-4, 0.8),
                        similarity=np.where(collapsed, 0.999, 0.3), entropy_ratio=np.where(collapsed, 0.999, 0.5))
    r = verdicts(frame)["r"]
    assert r["regime"] == "collapse" and r["collapse_onset"] == 30
    assert r["reason"].startswith("bases collapsed from step 30: similarity 1.00, attention uniform")
    assert "iterations 1–7 is a consequence of the collapse, not of saturation" in r["reason"]


def test_each_regime_is_recognised_on_synthetic_runs():
    frame = pd.concat([
        run_records("saturation", rho=0.05, similarity=0.2, entropy_ratio=0.01),
        run_records("vanishing", rho=0.05, similarity=0.2, entropy_ratio=0.5),
        run_records("exploding", rho=3.0, similarity=0.2, entropy_ratio=0.5),
        run_records("healthy", rho=0.7, similarity=0.2, entropy_ratio=0.5),
        run_records("no_grad", no_grad=(1, 2, 3, 4)),
        run_records("one_step", no_grad=(1, 2, 3)),
    ])
    v = verdicts(frame)
    assert {run: row["regime"] for run, row in v.items()} == {run: run for run in v}
    assert "attention saturated from step 0" in v["saturation"]["reason"]
    assert "neither collapse nor saturation" in v["vanishing"]["reason"]
    assert "grows toward the early iterations" in v["exploding"]["reason"]
    assert "only iteration 4 carries gradient (iterations 1–3 run under no_grad)" in v["one_step"]["reason"]


def test_regime_reads_only_the_last_window_of_training():
    steps = 20
    late = np.arange(steps) >= 15
    frame = run_records("r", steps=steps, rho=np.where(late, 0.05, 0.7))
    assert verdicts(frame, fraction=0.2)["r"]["regime"] == "vanishing"
    assert verdicts(frame, fraction=1.0)["r"]["regime"] == "healthy"


def test_partial_no_grad_is_noted_in_the_reason():
    r = verdicts(run_records("r", T=4, rho=0.7, no_grad=(1,)))["r"]
    assert r["regime"] == "healthy" and "iteration 1 carries no gradient" in r["reason"]


def test_an_all_zero_gradient_is_dead_not_healthy():
    """A layer whose every iteration gets an exact 0 has no decay to read: never "healthy" (seen in real training:
    the regime zoo's lr = 2 runs, where nothing downstream of the layer passed gradient back)."""
    frame = run_records("r", rho=0.7, similarity=0.2, entropy_ratio=0.5)
    frame.loc[frame["quantity"] == "grad/x", "value"] = 0.0
    r = verdicts(frame)["r"]
    assert r["regime"] == "dead" and "exactly 0" in r["reason"] and "100% of steps" in r["reason"]


def _recorded_loop(gain: float, calls: int = 6, steps: int = 5) -> pd.DataFrame:
    """Records of z_c = W z_{c-1} + x with W = gain · (an orthogonal matrix), watched through loops=: the
    gradient reaching call c's input is exactly gain^(calls - c) times the last one's."""
    import torch
    from torch import nn

    import gradlab

    class Unrolled(nn.Module):
        def __init__(self):
            super().__init__()
            self.step = nn.Linear(4, 4, bias=False)
            with torch.no_grad():
                self.step.weight.copy_(gain * torch.linalg.qr(torch.randn(4, 4))[0])

        def forward(self, x):
            z = x
            for _ in range(calls):
                z = self.step(z) + x
            return z.pow(2).sum()

    torch.manual_seed(0)
    model = Unrolled()
    with gradlab.watch(model, loops=["step"]) as rec:
        for step in range(steps):
            model(torch.randn(3, 4)).backward()
            rec.step(step)
    return rec.frame()


def test_watched_loops_are_judged_by_their_input_gradient():
    verdicts = {gain: regime(_recorded_loop(gain)).set_index("layer").loc["step"] for gain in (0.1, 0.9, 2.0)}
    assert [verdicts[g]["regime"] for g in (0.1, 0.9, 2.0)] == ["vanishing", "healthy", "exploding"]
    # call 1's input is the data (no_grad): 0.1^4 from call 2 to call 6
    assert verdicts[0.1]["decades"] == pytest.approx(-4, abs=1e-6) and verdicts[0.1]["no_grad_iterations"] == "1"
    assert verdicts[2.0]["rho"] == pytest.approx(2.0, rel=1e-6)
    assert verdicts[0.9]["call_gain"] == pytest.approx(0.9, rel=1e-6)  # ‖Wᵀ g‖ / ‖g‖ for every call
    assert "per-call gain 0.9" in verdicts[0.9]["reason"] and np.isnan(verdicts[0.9]["gain"])


def test_steps_the_grad_scaler_skipped_are_left_out_of_the_verdicts():
    """A run whose every fourth step overflowed in the scaled backward (NaN/Inf norms, amp/skipped = 1) is judged
    by the steps that trained: not nonfinite, no nonfinite flag, the same regime and decades as without them."""
    from gradlab.analysis import flags
    from gradlab.analysis.aggregate import trained_steps
    from gradlab.records import SKIPPED_STEP

    clean = run_records("r", steps=20, T=4, rho=0.5)
    rows = []
    for step in range(20):
        skipped = step % 4 == 1
        rows.append(("r", step, "", None, SKIPPED_STEP, float(skipped), "ok", 0))
    amp = rows_frame(rows)
    overflowed = clean.copy()
    hit = (overflowed.step % 4 == 1) & overflowed.quantity.str.startswith("grad/")
    overflowed.loc[hit, "value"] = math.inf
    overflowed.loc[hit, "status"] = "nonfinite"
    frame = pd.concat([overflowed, amp], ignore_index=True)
    verdict = regime(frame, fraction=1.0).iloc[0]
    reference = regime(clean[clean.step % 4 != 1], fraction=1.0).iloc[0]
    assert verdict.regime == reference.regime != "nonfinite"
    assert verdict.decades == pytest.approx(reference.decades)
    assert verdict.skipped_steps == 5 and "5 steps that the GradScaler skipped (overflow) left out" in verdict.reason
    assert "nonfinite" not in set(flags(frame)["flag"])
    assert set(trained_steps(frame).step) == {s for s in range(20) if s % 4 != 1}
    # without amp rows nothing is left out, and the same overflow is what it is: non-finite training
    assert regime(overflowed, fraction=1.0).iloc[0].skipped_steps == 0
    assert "nonfinite" in set(flags(overflowed)["flag"])


#: what a recorder writes on its diagnosed steps only (record.diagnostics_every)
DIAGNOSED_ONLY = ("entropy", "similarity", "e_gain", "grad/x_cos", "grad/x_rest", "grad/unit_em", "grad/unit_res",
                  "grad/params")


def diagnosed_every(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """`frame` as a recorder with diagnostics_every=k writes it: the diagnostics on steps 0, k, 2k, ... only."""
    return frame[~frame["quantity"].isin(DIAGNOSED_ONLY) | (frame["step"] % k == 0)].reset_index(drop=True)


@pytest.mark.parametrize("k", [3, 10])
def test_diagnostics_on_a_sparser_schedule_give_the_verdicts_of_diagnostics_at_every_step(k):
    """Collapse and saturation shares, their onsets and the diagnosed mechanism numbers are read over the diagnosed
    steps of the window, never diluted by the steps without diagnostics (which would hide a collapse)."""
    steps = 100
    late = np.arange(steps) >= 30
    frame = with_mechanism(pd.concat([
        run_records("collapse", steps=steps, rho=np.where(late, 1e-4, 0.8), similarity=np.where(late, 0.999, 0.3),
                    entropy_ratio=np.where(late, 0.999, 0.5)),
        run_records("saturation", steps=steps, rho=0.05, similarity=0.2, entropy_ratio=np.where(late, 0.01, 0.5)),
        run_records("healthy", steps=steps, rho=0.7, similarity=0.2, entropy_ratio=0.5),
    ]), gain=0.08, branch_share=0.6, c_rest=0.5)
    columns = ["regime", "share_collapse", "share_saturation", "similarity", "entropy_ratio", "collapse_onset",
               "saturation_onset", "branch_share", "c_rest", "r_rest", "turn", "gain"]
    for fraction in (0.1, 0.05):  # 0.05: the window's last 5 steps hold no diagnosed step at k = 10
        every, sparse = (regime(f, bases=8, fraction=fraction).set_index("run")[columns]
                         for f in (frame, diagnosed_every(frame, k)))
        assert dict(sparse["regime"]) == {"collapse": "collapse", "saturation": "saturation", "healthy": "healthy"}
        pd.testing.assert_frame_equal(sparse, every, rtol=0.05)  # the synthetic runs' 1 % noise, fewer steps


def test_a_layer_without_diagnosed_steps_has_no_collapse_or_saturation_share():
    frame = run_records("r", rho=0.7)
    frame = frame[~frame["quantity"].isin(DIAGNOSED_ONLY)]
    r = regime(frame, bases=8).iloc[0]
    assert r["regime"] == "healthy" and math.isnan(r["share_collapse"]) and math.isnan(r["similarity"])


def test_an_implicit_layer_is_judged_by_its_adjoint_solve_after_collapse_and_saturation():
    frame = pd.concat([
        implicit_records("implicit_fallback", diverged=0.8),
        implicit_records("implicit", diverged=0.1),
        implicit_records("collapse", diverged=0.8, similarity=0.999, entropy_ratio=0.999),
        implicit_records("saturation", diverged=0.8, entropy_ratio=0.01),
        implicit_records("nonfinite", nonfinite=0.6),
        run_records("healthy", rho=0.7),
    ])
    v = verdicts(frame, fraction=1.0)
    assert {run: row["regime"] for run, row in v.items()} == {run: run for run in v}
    assert v["implicit_fallback"]["share_diverged"] == pytest.approx(0.8)
    assert v["implicit_fallback"]["reason"].startswith(
        "the adjoint solve diverged at 80% of steps 0–19: there the gradient is the two-iteration (JFB) fallback")
    assert "median residual 0.5 after 50 fixed-point steps" in v["implicit_fallback"]["reason"]
    assert v["implicit"]["reason"].startswith("the adjoint solve did not diverge at 90% of steps 0–19 (median "
                                              "residual 1e-08 after 12 fixed-point steps")
    assert "gain G 0.3" in v["implicit"]["reason"]  # the layer gain from ∂L/∂X and ∂L/∂X̃, as for any layer
    assert math.isnan(v["healthy"]["share_diverged"]) and math.isnan(v["healthy"]["adjoint_residual"])
    assert math.isnan(v["implicit"]["decades"])  # no iterations to decay through: never a made-up decay


def test_the_adjoint_verdict_reads_the_last_window_like_every_other():
    frame = implicit_records("r", steps=20, diverged=0.5)  # diverged over steps 0–9 only
    assert verdicts(frame, fraction=1.0)["r"]["regime"] == "implicit_fallback"  # half the steps: the majority
    assert verdicts(frame, fraction=0.2)["r"]["regime"] == "implicit"
