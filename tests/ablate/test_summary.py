"""gradlab/ablate/summary.py: the per-run table (OUT/runs.csv) holds exactly the numbers the summary pools."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from gradlab.ablate.summary import run_table, summary_table
from tests.analysis.synthetic import run_records


def _study() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two settings × three seeds of synthetic records (grad/x decaying by a per-run ρ) with their final mIoU."""
    frames, metrics = [], []
    for kind, base in (("em", 0.3), ("hem", 0.7)):
        for seed in range(3):
            run = f"{kind}-{seed}"
            frame = run_records(run, steps=10, T=4, rho=base + 0.05 * seed, seed=seed)
            mu = frame[frame["quantity"] == "grad/x"].assign(quantity="grad/mu")  # the summary reads both
            mu["value"] = mu["value"] ** 2
            frame = pd.concat([frame, mu], ignore_index=True)
            frames.append(frame.assign(**{"model.kind": kind, "seed": seed}))
            metrics.append(pd.DataFrame({"run": run, "step": [5, 9], "name": "miou",
                                         "value": [0.1, base / 2 + 0.01 * seed]}))
    return pd.concat(frames, ignore_index=True), pd.concat(metrics, ignore_index=True)


def pooled_q(runs: pd.DataFrame, column: str) -> list[float]:
    return runs.groupby("model.kind")[column].mean().tolist()


def test_the_per_run_rows_pool_to_the_summary_over_seeds():
    records, metrics = _study()
    runs, table = run_table(records, metrics, ["model.kind"]), summary_table(records, metrics, ["model.kind"])
    assert len(runs) == 6 and sorted(runs["seed"]) == [0, 0, 1, 1, 2, 2]
    assert runs.set_index("run").loc["hem-2", "miou"] == pytest.approx(0.37)  # the last validation, not the first
    assert runs["miou_late_gain"].tolist() == pytest.approx((runs["miou"] - 0.1).tolist())  # since step 5 ≤ 0.75 × 9
    pooled = runs.groupby("model.kind")[["miou"]].mean()
    table = table.set_index("model.kind").loc[pooled.index]
    assert pooled["miou"].tolist() == pytest.approx(table["miou"].tolist())
    for q in ("grad/x decades", "grad/mu decades"):
        assert pooled_q(runs, q) == pytest.approx(table[q].tolist())
    assert runs["grad/mu decades"].tolist() == pytest.approx((2 * runs["grad/x decades"]).tolist())  # g², per run
    assert (table["runs"] == 3).all()
    counts = runs.groupby("model.kind")["regime"].agg(lambda r: r.value_counts().to_dict())
    for kind, regimes in counts.items():
        assert table.loc[kind, "regimes"] == ", ".join(f"{name} {n}/3" for name, n in regimes.items())


def test_the_run_table_holds_the_training_loss_and_sigma_and_the_summary_counts_who_has_them():
    """train_loss: the mean logged loss over each run's last 10% of steps; σ_t: the geometric mean of the
    iterations' Jacobian norms (regime's `sigma`). Only the EM runs record σ_t and one HEM run logs no loss: the
    summary's numbers use the runs that have them and say how many ("(2 runs)")."""
    from gradlab.ablate.summary import contrast_markdown, pool, to_markdown
    from tests.analysis.synthetic import series, with_mechanism

    records, metrics = _study()
    sigma = {f"em-{seed}": 0.4 + 0.1 * seed for seed in range(3)}
    jac = [series([s] * 3, "jac/sigma_max", run=run, step=step) for run, s in sigma.items() for step in (8, 9)]
    records = pd.concat([with_mechanism(records), *jac], ignore_index=True)
    records["model.kind"], records["seed"] = records["run"].str[:-2], records["run"].str[-1].astype(int)
    loss = [pd.DataFrame({"run": run, "step": range(20), "name": "loss", "value": [5.0] * 18 + [1.0 + i, 2.0 + i]})
            for i, run in enumerate(["em-0", "em-1", "em-2", "hem-0", "hem-1"])]  # hem-2 logs no loss
    metrics = pd.concat([metrics, *loss], ignore_index=True)
    runs = run_table(records, metrics, ["model.kind"]).set_index("run")
    assert runs["train_loss"].to_dict() == pytest.approx(
        {"em-0": 1.5, "em-1": 2.5, "em-2": 3.5, "hem-0": 4.5, "hem-1": 5.5, "hem-2": float("nan")}, nan_ok=True)
    assert runs.loc[list(sigma), "sigma"].tolist() == pytest.approx(list(sigma.values()))
    assert runs.loc[["hem-0", "hem-1", "hem-2"], "sigma"].isna().all()
    table = pool(runs.reset_index(), ["model.kind"]).set_index("model.kind")
    assert table.loc["hem", "train_loss"] == pytest.approx(5.0) and table.loc["hem", "train_loss_runs"] == 2
    assert table.loc["em", "sigma"] == pytest.approx(0.5) and table.loc["hem", "sigma_runs"] == 0
    text = to_markdown(table.reset_index(), ["model.kind"])
    assert "train loss [Student-t 95% CI]" in text and "| σ_t |" in text
    hem = next(line for line in text.splitlines() if line.startswith("| hem"))
    assert "| 5.00 [-1.35, 11.4] (2 runs) |" in hem and "(3 runs)" not in hem
    one = to_markdown(pool(runs.drop(index="hem-1").reset_index(), ["model.kind"]), ["model.kind"])
    assert "| 4.50 (1 run) |" in one  # one run: no interval, and one run
    effect = contrast_markdown(runs.reset_index(), ["model.kind"])
    assert "Δ train loss [Welch 95% CI]" in effect and "(3 + 2 runs)" in effect


def test_a_summary_of_runs_banked_before_a_column_existed_leaves_that_column_out():
    from gradlab.ablate.summary import LATER_COLUMNS, contrast_markdown, pool, to_markdown

    records, metrics = _study()
    runs = run_table(records, metrics, ["model.kind"]).drop(columns=list(LATER_COLUMNS))
    runs = runs.reindex(columns=[*runs.columns, *LATER_COLUMNS])  # as read_earlier gives them: NaN
    text = to_markdown(pool(runs, ["model.kind"]), ["model.kind"]) + contrast_markdown(runs, ["model.kind"])
    assert "train loss" not in text and "σ_t" not in text and "adjoint" not in text
    assert not re.search(r"\(\d+( + \d+)? runs\)", text)


def test_a_difference_against_a_reference_study_names_its_interval_and_the_runs_behind_each_cell():
    from gradlab.ablate.summary import reference_markdown
    from gradlab.analysis.compare import reference_difference

    records, metrics = _study()
    runs = run_table(records, metrics, ["model.kind"]).assign(train_loss=lambda r: 1 - r["miou"])
    runs.loc[runs["run"] == "hem-0", "train_loss"] = float("nan")  # one run without it
    reference = runs[runs["model.kind"] == "em"].assign(**{"model.kind": "none"})
    table = reference_difference(runs, reference, ["model.kind"], columns=("miou", "train_loss", "sigma"))
    lines = reference_markdown(table, ["model.kind"], "baseline").splitlines()
    assert lines[0] == ("| model.kind | runs + baseline | Δ val mIoU vs baseline [Welch 95% CI] "
                        "| Δ train loss vs baseline [Welch 95% CI] |")  # σ_t: no run has it, left out
    em, hem = lines[2].split(" | "), lines[3].split(" | ")  # mIoU 0.15, 0.16, 0.17 (EM), 0.35, 0.36, 0.37 (HEM)
    half = 2.776 * (2 * 0.01**2 / 3) ** 0.5  # t(0.975, df 4) × the standard error of the difference
    assert em[1:3] == ["3 + 3", f"+0.000 [-{half:.3f}, +{half:.3f}]"] and hem[1] == "3 + 3"
    assert hem[2] == f"+0.200 [+{0.2 - half:.3f}, +{0.2 + half:.3f}]" and hem[3].endswith("(2 + 3 runs) |")
    pairs = reference_difference(runs, reference, ["model.kind"], columns=("miou", "train_loss"), paired=True)
    paired = reference_markdown(pairs, ["model.kind"], "baseline", paired=True).splitlines()
    assert paired[0].startswith("| model.kind | seed pairs | Δ val mIoU vs baseline [paired Student-t 95% CI] |")
    hem = paired[3].split(" | ")  # HEM − EM of the same seed: +0.2 each, no spread
    assert hem[1:3] == ["3", "+0.200 [+0.200, +0.200]"] and hem[3].endswith("(2 runs) |")
    one = reference_markdown(pairs.assign(**{"train_loss runs": 1}), ["model.kind"], "baseline", paired=True)
    assert one.splitlines()[3].endswith("(1 run) |")


def test_learning_curves_hold_each_validation_and_the_mean_loss_since_the_one_before():
    """run_curves: per validation the val mIoU and the mean of the losses logged since the previous validation
    (steps after the last validation belong to none); curve_panel_frame pools them per setting and step with a
    Student-t interval over the seeds."""
    from gradlab.ablate.summary import curve_panel_frame, run_curves
    from gradlab.analysis.intervals import t_interval

    loss = {"em-0": [float(s) for s in range(12)], "em-1": [2.0 * s for s in range(12)]}
    metrics = pd.concat([pd.DataFrame({"run": run, "step": range(12), "name": "loss", "value": v})
                         for run, v in loss.items()]
                        + [pd.DataFrame({"run": run, "step": [4, 9], "name": "miou", "value": [0.2 + m, 0.4 + m]})
                           for run, m in (("em-0", 0.0), ("em-1", 0.1))], ignore_index=True)
    curves = run_curves(metrics)
    assert curves[["run", "step"]].values.tolist() == [["em-0", 4], ["em-0", 9], ["em-1", 4], ["em-1", 9]]
    assert curves["train_loss"].tolist() == pytest.approx([2.0, 7.0, 4.0, 14.0])  # steps 0-4, 5-9; 10-11 in none
    assert curves["miou"].tolist() == pytest.approx([0.2, 0.4, 0.3, 0.5])
    runs = pd.DataFrame({"run": ["em-0", "em-1"], "layer": "em", "model.kind": "em"})
    long = curve_panel_frame(curves, runs, ["model.kind"]).set_index(["metric", "step"])
    assert long.loc[("miou", 10), "estimate"] == pytest.approx(0.45) and long.loc[("miou", 10), "setting"] == "EM"
    assert tuple(long.loc[("train_loss", 5), ["ci_low", "ci_high"]]) == pytest.approx(t_interval([2.0, 4.0]))
