from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from gradlab.ablate import parse_axis, run_ablation
from gradlab.ablate.ablation import MANIFEST, claim, keep_finished, manifest
from gradlab.ablate.grid import expand
from gradlab.ablate.summary import LATER_COLUMNS, NUMBER_COLUMNS, RUN_COLUMNS
from gradlab.errors import ConfigError
from gradlab.train import RunDirectory
from tests.train.conftest import TINY


def test_ablation_runs_every_trial_summarises_and_a_rerun_skips_them(tmp_path):
    axes = [parse_axis("model.kind=em,hem"), parse_axis("model.iterations=1,2")]
    result = run_ablation("demo", axes, 1, tmp_path, overrides=TINY, workers=2, progress=False)
    assert [o.state for o in result.outcomes] == ["done"] * 4
    assert all(RunDirectory(tmp_path / t.name).complete for t in result.trials)
    table = pd.read_csv(tmp_path / "summary.csv")
    assert len(table) == 4 and set(table["runs"]) == {1}
    assert table.loc[table["model.iterations"] == 1, "regimes"].str.startswith("one_step").all()
    assert (tmp_path / "summary.md").read_text().count("\n") == 6
    contrast = (tmp_path / "contrast.md").read_text().splitlines()  # HEM − EM at T = 1 and T = 2
    assert len(contrast) == 4 and "Welch 95% CI" in contrast[0] and contrast[2].startswith("| 1 | 1 + 1 |")
    assert (tmp_path / "ablation.png").stat().st_size > 0
    assert result.report is not None and result.report.is_file()
    runs = pd.read_csv(tmp_path / "runs.csv")  # one row per run: the numbers the summary pools
    assert len(runs) == 4 and set(runs["seed"]) == {0} and runs["miou"].notna().all()
    pooled = runs.groupby(["model.kind", "model.iterations"])[["miou", "grad/x decades"]].mean()
    summary = table.set_index(["model.kind", "model.iterations"]).loc[pooled.index]
    assert pooled["miou"].tolist() == pytest.approx(summary["miou"].tolist())
    assert pooled["grad/x decades"].tolist() == pytest.approx(summary["grad/x decades"].tolist(), nan_ok=True)
    assert [r.split(" ")[0] for r in summary["regimes"]] == runs.set_index(
        ["model.kind", "model.iterations"]).loc[pooled.index, "regime"].tolist()

    again = run_ablation("demo", axes, 1, tmp_path, overrides=TINY, workers=2, progress=False, report=False)
    assert [o.state for o in again.outcomes] == ["skipped"] * 4
    for t in result.trials:  # each trial was launched once
        assert (tmp_path / "logs" / f"{t.name}.log").read_text().count("$ ") == 1


def test_a_failed_trial_is_reported_and_the_others_still_run(tmp_path):
    axes = [parse_axis("data.source=digits,idx")]
    result = run_ablation("demo", axes, 1, tmp_path, overrides=[*TINY, "data.root=/nonexistent-idx"],
                          progress=False, report=False)
    assert [o.state for o in result.outcomes] == ["done", "failed"]
    assert "/nonexistent-idx" in result.failed[0].message and "logs" in result.failed[0].message
    assert len(result.summary) == 1


def test_an_output_folder_holds_one_ablation(tmp_path):
    claim(tmp_path / "a", {"grid": {"model.iterations": [1, 2]}, "seeds": 1})
    with pytest.raises(ConfigError, match=r"holds another ablation \(grid differ"):
        claim(tmp_path / "a", {"grid": {"model.iterations": [1, 3]}, "seeds": 1})
    claim(tmp_path / "a", {"grid": {"model.iterations": [1, 2]}, "seeds": 1})  # the same one: continue
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("")
    with pytest.raises(ConfigError, match="holds no ablation.json"):
        claim(tmp_path / "b", {})
    assert json.loads((tmp_path / "a" / MANIFEST).read_text())["seeds"] == 1


def _processes_writing_to(folder: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(folder) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; children die with the parent on Linux")
def test_killed_ablation_continues_where_it_stopped(tmp_path):
    out = tmp_path / "abl"
    sets = [a for item in TINY for a in ("--set", item)]
    cmd = [sys.executable, "-m", "gradlab", "ablate", "demo", "--grid", "model.iterations=1,2,3", "--out", str(out),
           "--no-report", *sets]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = RunDirectory(out / "iterations-1_seed-0")
    deadline = time.monotonic() + 120
    while not first.complete and time.monotonic() < deadline:
        time.sleep(0.1)
    assert first.complete
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while _processes_writing_to(out) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_writing_to(out) == []  # the running trial died with its parent

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    for name in ("iterations-1_seed-0", "iterations-2_seed-0", "iterations-3_seed-0"):
        assert RunDirectory(out / name).complete
    assert (out / "logs" / "iterations-1_seed-0.log").read_text().count("$ ") == 1  # not redone


def test_trials_finished_elsewhere_are_not_run_again_and_join_the_summary(tmp_path):
    """A study spread over machines: the ablation.json and runs.csv of the trials one machine finished let another
    run only the rest, and the summary it writes pools both, equal to the summary of all trials run in one place."""
    axes = [parse_axis("model.kind=em,hem")]
    whole = run_ablation("demo", axes, 2, tmp_path / "whole", overrides=TINY, workers=2, progress=False,
                         report=False)
    elsewhere = tmp_path / "committed"  # what another machine kept: no run directories
    elsewhere.mkdir()
    shutil.copy(tmp_path / "whole" / MANIFEST, elsewhere)
    runs = pd.read_csv(tmp_path / "whole" / "runs.csv")
    runs[runs["seed"] == 0].to_csv(elsewhere / "runs.csv", index=False)  # seed 0 finished there
    curves = pd.read_csv(tmp_path / "whole" / "curves.csv")
    assert set(curves["run"]) == set(runs["run"]) and (tmp_path / "whole" / "curves.png").stat().st_size > 0
    curves[curves["run"].isin(runs.loc[runs["seed"] == 0, "run"])].to_csv(elsewhere / "curves.csv", index=False)
    split = run_ablation("demo", axes, 2, tmp_path / "split", overrides=TINY, workers=2, progress=False,
                         report=False, earlier=elsewhere)
    states = {o.trial.name: o.state for o in split.outcomes}
    assert sorted(states.values()) == ["done", "done", "earlier", "earlier"]
    for trial in split.trials:
        assert (tmp_path / "split" / trial.name).exists() == (states[trial.name] == "done")
    for name in ("summary.csv", "runs.csv", "curves.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "split" / name), pd.read_csv(tmp_path / "whole" / name),
                                      check_exact=False, rtol=1e-9)
    assert (tmp_path / "split" / "contrast.md").read_text() == (tmp_path / "whole" / "contrast.md").read_text()
    assert [o.state for o in whole.outcomes] == ["done"] * 4
    # keep_finished banks what a folder finished (also mid-study), merged with what the bank held
    assert keep_finished(tmp_path / "split", elsewhere) == 4
    for name in ("runs.csv", "curves.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(elsewhere / name), pd.read_csv(tmp_path / "whole" / name),
                                      check_exact=False, rtol=1e-9)
    third = run_ablation("demo", axes, 2, tmp_path / "third", overrides=TINY, progress=False, earlier=elsewhere)
    assert [o.state for o in third.outcomes] == ["earlier"] * 4
    assert third.report is None and not (tmp_path / "third" / "report").exists()  # no run directory to report on
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "third" / "summary.csv"),
                                  pd.read_csv(tmp_path / "whole" / "summary.csv"), check_exact=False, rtol=1e-9)


def _earlier(folder, manifest: dict | None, runs: pd.DataFrame | None):
    folder.mkdir()
    if manifest is not None:
        (folder / MANIFEST).write_text(json.dumps(manifest))
    if runs is not None:
        runs.to_csv(folder / "runs.csv", index=False)
    return folder


@pytest.mark.parametrize("case, message", [
    ("no runs.csv", "give the folder of an earlier run of this ablation, with its ablation.json and runs.csv"),
    ("no manifest", "give the folder of an earlier run of this ablation, with its ablation.json and runs.csv"),
    ("another grid", "another ablation (grid, trials differ from this one's)"),
    ("other --set", "another ablation (set differ from this one's)"),
    ("missing columns", "its runs.csv is not one of this ablation's (no column model.kind"),
    ("foreign run", "its runs.csv is not one of this ablation's ('kind-em_seed-7' is not one of its trials)"),
    ("not json", "give the folder of an earlier run of this ablation"),
])
def test_a_bad_earlier_folder_is_refused_before_anything_runs(tmp_path, case, message):
    axes = [parse_axis("model.kind=em,hem")]
    trials, _ = expand("demo", axes, 1, TINY)
    plan = manifest("demo", axes, 1, TINY, False, trials)
    good = pd.DataFrame([[t.name, "head.ema.em", t.name.split("_")[0][5:], 0, *[0.0] * len(RUN_COLUMNS)]
                         for t in trials], columns=["run", "layer", "model.kind", "seed", *RUN_COLUMNS])
    folder = tmp_path / "earlier"
    if case == "no runs.csv":
        _earlier(folder, plan, None)
    elif case == "no manifest":
        _earlier(folder, None, good)
    elif case == "another grid":
        _earlier(folder, plan | {"grid": {"model.iterations": [1, 2]}, "trials": ["x"]}, good)
    elif case == "other --set":
        _earlier(folder, plan | {"set": ["train.steps=5"]}, good)
    elif case == "missing columns":
        _earlier(folder, plan, good.drop(columns=["model.kind"]))
    elif case == "foreign run":
        _earlier(folder, plan, pd.concat([good, good.iloc[:1].assign(run="kind-em_seed-7")]))
    else:
        _earlier(folder, None, good)
        (folder / MANIFEST).write_text("{not json")
    with pytest.raises(ConfigError, match=re.escape(message)):
        run_ablation("demo", axes, 1, tmp_path / "out", overrides=TINY, progress=False, earlier=folder)
    assert not (tmp_path / "out").exists()


def test_a_linked_axis_ablation_summarises_per_variant_and_resumes_from_its_manifest(tmp_path):
    """The gradient-mode variants (none, one-step, implicit) as one linked axis: a summary row per variant with
    both keys; ablation.json keeps the points as JSON lists, so a rerun, and --earlier from a copy of it, see the
    same ablation."""
    axes = [parse_axis("model.grad_mode:model.grad_iterations=unrolled:0,unrolled:1,implicit:all")]
    stable = [*TINY, "model.iterations=5", "model.kind=hem"]  # at T = 2 the implicit adjoint diverges on this data
    result = run_ablation("demo", axes, 1, tmp_path / "out", overrides=stable, workers=2, progress=False,
                          report=False)
    assert [o.state for o in result.outcomes] == ["done"] * 3
    table = pd.read_csv(tmp_path / "out" / "summary.csv").astype({"model.grad_iterations": str})
    assert list(zip(table["model.grad_mode"], table["model.grad_iterations"])) == [
        ("implicit", "all"), ("unrolled", "0"), ("unrolled", "1")]
    assert table["miou"].notna().all()  # the implicit run, which has no per-iteration norms, is not left out
    assert json.loads((tmp_path / "out" / MANIFEST).read_text())["grid"] == {
        "model.grad_mode:model.grad_iterations": [["unrolled", 0], ["unrolled", 1], ["implicit", "all"]]}
    again = run_ablation("demo", axes, 1, tmp_path / "out", overrides=stable, progress=False, report=False)
    assert [o.state for o in again.outcomes] == ["skipped"] * 3
    assert keep_finished(tmp_path / "out", tmp_path / "bank") == 3
    elsewhere = run_ablation("demo", axes, 1, tmp_path / "other", overrides=stable, progress=False, report=False,
                             earlier=tmp_path / "bank")
    assert [o.state for o in elsewhere.outcomes] == ["earlier"] * 3
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "other" / "summary.csv"),
                                  pd.read_csv(tmp_path / "out" / "summary.csv"), check_exact=False, rtol=1e-9)


def test_an_earlier_runs_csv_from_before_a_later_column_reads_it_as_not_recorded(tmp_path):
    """A study banked before a per-run column existed (LATER_COLUMNS) goes on: the column reads NaN, and the
    summary leaves it out while no run has it; any other missing column is still refused (above)."""
    axes = [parse_axis("model.kind=em,hem")]
    trials, _ = expand("demo", axes, 1, TINY)
    plan = manifest("demo", axes, 1, TINY, False, trials)
    old = _good_runs(trials)
    folder = _earlier(tmp_path / "earlier", plan, old.drop(columns=list(LATER_COLUMNS)))
    result = run_ablation("demo", axes, 1, tmp_path / "out", overrides=TINY, progress=False, earlier=folder)
    assert [o.state for o in result.outcomes] == ["earlier"] * 2
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert runs[list(LATER_COLUMNS)].isna().all().all() and len(runs) == 2
    assert "adjoint diverged" not in (tmp_path / "out" / "summary.md").read_text()
    folder = _earlier(tmp_path / "implicit", plan, old.assign(share_diverged=[0.0, 0.75]))
    run_ablation("demo", axes, 1, tmp_path / "out2", overrides=TINY, progress=False, earlier=folder)
    table = (tmp_path / "out2" / "summary.md").read_text()
    assert "adjoint diverged" in table and "0.75" in table


def _good_runs(trials) -> pd.DataFrame:
    """A runs.csv as ablate writes it for `trials` (of a model.kind axis): every RUN_COLUMNS cell filled."""
    named = {"miou": 0.5, "train_loss": 0.3, "grad/x decades": -0.4, "grad/mu decades": -0.2, "regime": "healthy"}
    return pd.DataFrame([{"run": t.name, "layer": "head.ema.em", "model.kind": t.name.split("_")[0][5:], "seed": 0,
                          **{c: named.get(c, 0.1) for c in RUN_COLUMNS}} for t in trials])


@pytest.mark.parametrize("column", ["seed", *NUMBER_COLUMNS, "regime"])
@pytest.mark.parametrize("junk", ["abc", "0.5.1", "1,5", "[0.3]", "True", "0.5 ms"])
def test_a_damaged_earlier_runs_csv_is_refused_naming_the_cell(tmp_path, column, junk):
    """A hand-edited or damaged runs.csv: text where a number (or a regime) belongs is refused with the column and
    the run, before anything runs and before any text reaches a mean; empty cells are runs that had none (NaN)."""
    axes = [parse_axis("model.kind=em,hem")]
    trials, _ = expand("demo", axes, 1, TINY)
    runs = _good_runs(trials).astype({column: object})
    runs.loc[1, column] = junk
    folder = _earlier(tmp_path / "earlier", manifest("demo", axes, 1, TINY, False, trials), runs)
    with pytest.raises(ConfigError, match=re.escape(f"has {junk!r} in column {column} of run {trials[1].name!r}")):
        run_ablation("demo", axes, 1, tmp_path / "out", overrides=TINY, progress=False, earlier=folder)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("column", ["step", "miou", "train_loss"])
@pytest.mark.parametrize("junk", ["abc", "0.5.1", "[0.3]", "12.5", ""])
def test_a_damaged_earlier_curves_csv_is_refused_naming_the_cell(tmp_path, column, junk):
    """curves.csv is checked as runs.csv is: text where a number belongs (and a fractional or empty step) is one
    line naming the cell, before anything runs; an empty mIoU or loss is a validation that had none."""
    axes = [parse_axis("model.kind=em,hem")]
    trials, _ = expand("demo", axes, 1, TINY)
    curves = pd.DataFrame({"run": [t.name for t in trials], "step": [9, 9], "miou": [0.5, 0.6],
                           "train_loss": [1.0, 1.1]}).astype({column: object})
    curves.loc[1, column] = junk
    folder = _earlier(tmp_path / "earlier", manifest("demo", axes, 1, TINY, False, trials), _good_runs(trials))
    curves.to_csv(folder / "curves.csv", index=False)
    if column != "step" and junk in ("", "12.5"):  # a validation without a score; a number (no range is implied)
        run_ablation("demo", axes, 1, tmp_path / "out", overrides=TINY, progress=False, report=False, earlier=folder)
        read = pd.read_csv(tmp_path / "out" / "curves.csv")[column]
        assert read.isna().sum() == 1 if junk == "" else (read == 12.5).sum() == 1
        return
    shown = {"": "an empty cell", "12.5": "12.5"}.get(junk, repr(junk))  # a step read as a float, or none
    with pytest.raises(ConfigError, match=re.escape(f"its curves.csv has {shown} in column {column} of run "
                                                    f"{trials[1].name!r}")):
        run_ablation("demo", axes, 1, tmp_path / "out", overrides=TINY, progress=False, earlier=folder)
    assert not (tmp_path / "out").exists()


def test_an_earlier_curves_csv_of_another_ablation_is_refused(tmp_path):
    axes = [parse_axis("model.kind=em,hem")]
    trials, _ = expand("demo", axes, 1, TINY)
    folder = _earlier(tmp_path / "earlier", manifest("demo", axes, 1, TINY, False, trials), _good_runs(trials))
    pd.DataFrame({"run": ["kind-em_seed-7"], "step": [9], "miou": [0.5], "train_loss": [1.0]}).to_csv(
        folder / "curves.csv", index=False)
    with pytest.raises(ConfigError, match=re.escape("its curves.csv is not one of this ablation's ('kind-em_seed-7'")):
        run_ablation("demo", axes, 1, tmp_path / "out", overrides=TINY, progress=False, earlier=folder)
    pd.DataFrame({"run": [trials[0].name], "step": [9]}).to_csv(folder / "curves.csv", index=False)
    with pytest.raises(ConfigError, match="its curves.csv is not one of this ablation's \\(no column miou, train_loss"):
        run_ablation("demo", axes, 1, tmp_path / "out", overrides=TINY, progress=False, earlier=folder)


def test_empty_cells_of_an_earlier_runs_csv_are_not_recorded_values(tmp_path):
    axes = [parse_axis("model.kind=em,hem")]
    trials, _ = expand("demo", axes, 1, TINY)
    runs = _good_runs(trials).astype({"grad/x decades": object, "regime": object})
    runs.loc[0, ["grad/x decades", "regime"]] = None  # a T = 1 run has no decay; an unjudged one no regime
    folder = _earlier(tmp_path / "earlier", manifest("demo", axes, 1, TINY, False, trials), runs)
    run_ablation("demo", axes, 1, tmp_path / "out", overrides=TINY, progress=False, earlier=folder)
    assert pd.read_csv(tmp_path / "out" / "runs.csv")["grad/x decades"].isna().sum() == 1
