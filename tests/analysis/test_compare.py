from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from gradlab.analysis import compare, load_metrics, load_runs
from tests.analysis.synthetic import implicit_records, run_records

RHO = {("em", 3): 0.1, ("em", 6): 0.01, ("hem", 3): 0.6, ("hem", 6): 0.5}


def ablation(seeds: int = 4) -> tuple[pd.DataFrame, pd.DataFrame]:
    """EM/HEM × T ∈ {3, 6} × seeds: grad/x decays by ρ per iteration; final mIoU 0.5 (EM) or 0.6 (HEM)."""
    frames, metrics = [], []
    for (kind, T), rho in RHO.items():
        for seed in range(seeds):
            run = f"{kind}-T{T}-s{seed}"
            config = {"model.kind": kind, "model.iterations": T, "seed": seed}
            frames.append(run_records(run, steps=10, T=T, rho=rho, seed=seed).assign(**config))
            miou = (0.5 if kind == "em" else 0.6) + 0.01 * seed
            metrics.append(pd.DataFrame({"run": run, "step": [4, 9], "name": "miou", "value": [0.0, miou]}))
    return pd.concat(frames, ignore_index=True), pd.concat(metrics, ignore_index=True)


def test_compare_returns_one_row_per_group_with_a_ci_around_the_estimate():
    frame, metrics = ablation()
    c = compare(frame, by=["model.kind", "model.iterations"], metric="decades", metrics=metrics)
    assert len(c) == 4 and (c["runs"] == 4).all()
    for _, row in c.iterrows():
        kind, T = row["model.kind"], row["model.iterations"]
        assert row["estimate"] == pytest.approx((T - 1) * math.log10(RHO[(kind, T)]), abs=0.05)
        assert row["ci_low"] <= row["estimate"] <= row["ci_high"]
    em = c[c["model.kind"] == "em"]
    assert em["miou"].tolist() == pytest.approx([0.515, 0.515])


def test_compare_reports_ratio_metrics_on_their_own_scale():
    frame, _ = ablation(seeds=3)
    c = compare(frame, by=["model.kind", "model.iterations"], metric="rho", window="all")
    assert c.set_index(["model.kind", "model.iterations"])["estimate"].to_dict() == pytest.approx(
        RHO, rel=0.02)


def test_compare_names_a_missing_config_column():
    frame, _ = ablation(seeds=1)
    with pytest.raises(KeyError, match="model.step_size.*load_runs"):
        compare(frame, by=["model.step_size"])
    with pytest.raises(ValueError, match="not a decay metric"):
        compare(frame, by=["model.kind"], metric="loss")


def test_compare_on_real_runs_gives_one_row_per_kind(run_folder):
    c = compare(load_runs(run_folder), by=["model.kind"], metrics=load_metrics(run_folder))
    assert c["model.kind"].tolist() == ["em", "hem"] and (c["runs"] == 1).all()
    assert c["estimate"].notna().all() and c["miou"].between(0, 1).all()


def test_contrast_gives_hem_minus_em_at_each_setting_with_a_welch_interval():
    from gradlab.analysis import contrast, welch_difference

    frame, metrics = ablation()
    c = contrast(frame, by=["model.kind", "model.iterations"], metrics=metrics).set_index("model.iterations")
    assert list(c.index) == [3, 6] and (c["runs em"] == 4).all() and (c["runs hem"] == 4).all()
    for T in (3, 6):  # decades = (T − 1) log10 ρ on each side
        expected = (T - 1) * (math.log10(RHO[("hem", T)]) - math.log10(RHO[("em", T)]))
        assert c.loc[T, "difference"] == pytest.approx(expected, abs=0.05)
        assert c.loc[T, "ci_low"] <= c.loc[T, "difference"] <= c.loc[T, "ci_high"]
    assert c.loc[3, "miou difference"] == pytest.approx(0.1)
    assert welch_difference([0.5, 0.51, 0.52, 0.53], [0.6, 0.61, 0.62, 0.63])[1:] == pytest.approx(
        (c.loc[3, "miou_ci_low"], c.loc[3, "miou_ci_high"]))


def test_compare_keeps_runs_with_nothing_to_decay_as_not_recorded():
    """An implicit-gradient layer and a run without an EM layer have no per-iteration gradients: each still has its
    group row (decay n/a, its mIoU), never silently left out of the comparison."""
    frames = [run_records("unrolled", steps=10).assign(**{"model.grad_mode": "unrolled"}),
              implicit_records("implicit", steps=10).assign(**{"model.grad_mode": "implicit"}),
              run_records("baseline", steps=10).query("layer == ''").assign(**{"model.grad_mode": "none"})]
    metrics = pd.DataFrame({"run": ["unrolled", "implicit", "baseline"], "step": 9, "name": "miou",
                            "value": [0.5, 0.6, 0.4]})
    c = compare(pd.concat(frames, ignore_index=True), by=["model.grad_mode"], metrics=metrics).set_index(
        "model.grad_mode")
    assert sorted(c.index) == ["implicit", "none", "unrolled"] and (c["runs"] == 1).all()
    assert math.isfinite(c.loc["unrolled", "estimate"])
    assert math.isnan(c.loc["implicit", "estimate"]) and math.isnan(c.loc["none", "estimate"])
    assert c["miou"].to_dict() == pytest.approx({"implicit": 0.6, "none": 0.4, "unrolled": 0.5})
    assert c.loc["none", "layer"] == "" and c.loc["implicit", "layer"] == "em"


def test_window_metric_means_each_runs_last_fraction_of_logged_steps():
    """The training loss at the end: the mean over the last 10% of the steps a metric was logged at, per run
    (other metrics, logged at other steps, do not move the window)."""
    from gradlab.analysis.compare import window_metric

    steps = list(range(40))
    metrics = pd.concat([pd.DataFrame({"run": "a", "step": steps, "name": "loss", "value": [float(s) for s in steps]}),
                         pd.DataFrame({"run": "b", "step": steps[:20], "name": "loss", "value": 1.0}),
                         pd.DataFrame({"run": "a", "step": [99], "name": "miou", "value": [0.5]})], ignore_index=True)
    loss = window_metric(metrics, "loss", fraction=0.1)
    assert loss.to_dict() == pytest.approx({"a": (36 + 37 + 38 + 39) / 4, "b": 1.0})


def test_compare_and_contrast_count_the_runs_behind_each_estimate():
    """A group whose runs only partly have a value: `runs` counts all, `measured` (compare) and the per-side runs
    (contrast) count those whose values the estimate and its interval use."""
    from gradlab.analysis.compare import contrast_runs
    from gradlab.report.tables import comparison_rows

    frame, metrics = ablation()
    kept = frame[~((frame["run"] == "em-T3-s0") & (frame["quantity"] == "grad/x"))]  # one EM run without grad/x
    c = compare(kept, by=["model.kind", "model.iterations"], metrics=metrics).set_index(
        ["model.kind", "model.iterations"])
    assert c.loc[("em", 3), "runs"] == 4 and c.loc[("em", 3), "measured"] == 3
    assert (c.drop(("em", 3))["measured"] == 4).all()
    assert comparison_rows(c.reset_index())["runs"].tolist() == ["4 (3 measured)", "4", "4", "4"]
    runs = pd.DataFrame({"model.kind": ["em"] * 3 + ["hem"] * 3, "layer": "em", "x": [1, 2, math.nan, 3, 4, 5],
                         "miou": 0.5})
    d = contrast_runs(runs, ["model.kind"], column="x").iloc[0]
    assert (d["runs em"], d["runs hem"]) == (2, 3) and d["difference"] == pytest.approx(4 - 1.5)


def test_late_gain_is_the_rise_of_a_metric_over_the_last_quarter_of_training():
    """12 validations 2,000 steps apart rising linearly: the gain over the last 25% is the last value minus the one
    at step 17,999 (the last at or before 0.75 × 23,999); a run validated once, or only late, has none."""
    from gradlab.analysis.compare import late_gain

    steps = [2000 * k - 1 for k in range(1, 13)]
    values = [0.3 + 0.03 * k for k in range(12)]
    metrics = pd.concat([pd.DataFrame({"run": "rising", "step": steps, "name": "miou", "value": values}),
                         pd.DataFrame({"run": "flat", "step": steps, "name": "miou", "value": 0.6}),
                         pd.DataFrame({"run": "once", "step": [99], "name": "miou", "value": [0.5]}),
                         pd.DataFrame({"run": "late", "step": [98, 99], "name": "miou", "value": [0.4, 0.5]}),
                         pd.DataFrame({"run": "rising", "step": steps, "name": "loss", "value": 9.0})],
                        ignore_index=True)
    gain = late_gain(metrics, "miou", share=0.25)
    assert gain["rising"] == pytest.approx(values[11] - values[8]) and gain["flat"] == pytest.approx(0.0)
    assert math.isnan(gain["once"]) and math.isnan(gain["late"])


def test_reference_difference_is_welchs_interval_or_the_paired_t_interval_of_scipy():
    """Each setting minus a reference study's runs: unpaired as scipy's Welch t-test gives it, paired by seed over
    the seeds both sides have as scipy's paired t-test gives it; a run's layers count once, and a column a side
    did not record is counted as such."""
    from scipy import stats

    from gradlab.analysis.compare import reference_difference

    rng = np.random.default_rng(3)
    runs = pd.DataFrame([{"run": f"{k}-{s}", "layer": layer, "model.kind": k, "seed": s, "miou": m,
                          "train_loss": math.nan if (k, s) == ("hem", 0) else 0.3 - m / 10}
                         for k in ("em", "hem") for s, m in enumerate(rng.normal(0.6, 0.02, 5))
                         for layer in ("a", "b")])
    reference = pd.DataFrame({"run": [f"none-{s}" for s in range(1, 5)], "layer": math.nan, "seed": range(1, 5),
                              "miou": rng.normal(0.5, 0.02, 4), "train_loss": 0.4})
    welch = reference_difference(runs, reference, ["model.kind"], columns=("miou", "train_loss")).set_index(
        "model.kind")
    for kind in ("em", "hem"):
        mine = runs[runs["model.kind"] == kind].drop_duplicates("run")["miou"]
        ci = stats.ttest_ind(mine, reference["miou"], equal_var=False).confidence_interval(0.95)
        row = welch.loc[kind]
        assert row["miou"] == pytest.approx(mine.mean() - reference["miou"].mean())
        assert (row["miou_low"], row["miou_high"]) == pytest.approx((ci.low, ci.high))
        assert (row["miou runs"], row["miou reference runs"]) == (5, 4)
    assert (welch.loc["hem", "train_loss runs"], welch.loc["em", "train_loss runs"]) == (4, 5)

    paired = reference_difference(runs[runs["model.kind"] == "em"], reference, [], paired=True).iloc[0]
    mine = runs[(runs["model.kind"] == "em") & (runs["seed"] >= 1)].drop_duplicates("run")["miou"].to_numpy()
    ci = stats.ttest_rel(mine, reference["miou"].to_numpy()).confidence_interval(0.95)
    assert paired["miou"] == pytest.approx((mine - reference["miou"].to_numpy()).mean())
    assert (paired["miou_low"], paired["miou_high"]) == pytest.approx((ci.low, ci.high))
    assert (paired["miou runs"], paired["miou reference runs"]) == (4, 4)  # seed 0 has no partner
    with pytest.raises(ValueError, match="one run per seed"):
        reference_difference(runs, reference, [], paired=True)  # EM and HEM share seeds: pairs are ambiguous
    with pytest.raises(ValueError, match="no seed in common"):  # not a silent table without the difference
        reference_difference(runs[runs["model.kind"] == "em"], reference.assign(seed=reference["seed"] + 10), [],
                             paired=True)
    partial = reference.assign(train_loss=[0.4, math.nan, math.nan, math.nan])  # only seed 1 has it, HEM seed 1 not
    hem = reference_difference(runs[(runs["model.kind"] == "hem") & (runs["seed"] != 1)], partial, [],
                               columns=("miou", "train_loss"), paired=True).iloc[0]
    assert hem["miou runs"] == 3 and hem["train_loss runs"] == 0 and math.isnan(hem["train_loss"])
