"""The studies in analyses/: every grid is valid over the ablation preset, and a study runs end to end."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from gradlab.ablate import expand, parse_axis
from tests.train.conftest import TINY

ANALYSES = Path(__file__).resolve().parents[1] / "analyses"
STUDIES = {"t_train": 108, "step_size": 15, "grad_mode": 18, "scale_128": 8, "scale_fashion": 12,
           "plateau_t_train": 60, "plateau_baseline": 5, "plateau_budget": 3,
           "plateau_grad_mode": 48, "plateau_grad_mode_t12": 24}


@pytest.fixture(scope="module")
def studies():
    sys.path.insert(0, str(ANALYSES))
    try:
        yield {name: importlib.import_module(name) for name in [*STUDIES, "_study", "t_eval"]}
    finally:
        sys.path.remove(str(ANALYSES))


@pytest.mark.parametrize("name", list(STUDIES))
def test_study_grid_expands_to_the_documented_runs(studies, name):
    import _study

    seeds = {"scale_128": 2, "plateau_t_train": 5, "plateau_baseline": 5}.get(name, 3)
    overrides = {"step_size": ["model.iterations=5"], "grad_mode": ["model.iterations=5"],
                 "plateau_grad_mode": ["model.iterations=5"], "plateau_grad_mode_t12": ["model.iterations=12"],
                 "scale_128": ["data.size=128"], "scale_fashion": ["data.source=idx"]}.get(name, [])
    trials, _ = expand(_study.BASE, [parse_axis(a) for a in studies[name].GRID], seeds, overrides)
    assert len(trials) == STUDIES[name]
    assert f"python analyses/{name}.py" in studies[name].__doc__


def test_step_size_study_and_t_eval_run_end_to_end(studies, tmp_path, capsys):
    import _study

    sets = [a for item in [*TINY, "model.iterations=3"] for a in ("--set", item)]
    study = studies["step_size"]
    argv = ["--seeds", "1", "--workers", "2", "--out", str(tmp_path / "eta"), *sets]
    assert _study.main("step_size", study.__doc__, study.GRID, overrides=["model.iterations=5"],
                       after=study.objective, argv=argv) == 0
    table = pd.read_csv(tmp_path / "eta" / "summary.csv")
    assert sorted(table["model.step_size"]) == [0.1, 0.25, 0.5, 0.75, 1.0]
    assert (tmp_path / "eta" / "objective.png").stat().st_size > 0
    assert "step_size: 5 runs, 0 failed" in capsys.readouterr().out

    keep = tmp_path / "committed"  # the study spread over machines: what one keeps, another does not run again
    assert _study.main("step_size", study.__doc__, study.GRID, overrides=["model.iterations=5"],
                       after=study.objective, argv=[*argv, "--keep", str(keep)]) == 0
    assert "kept the numbers of 5 finished runs" in capsys.readouterr().out
    fresh = [*argv[:-len(sets) - 2], "--out", str(tmp_path / "fresh"), *sets, "--keep", str(keep)]
    assert _study.main("step_size", study.__doc__, study.GRID, overrides=["model.iterations=5"],
                       after=study.objective, argv=fresh) == 0
    printed = capsys.readouterr().out
    assert "5 runs finished elsewhere have no run directory here: objective" in printed
    assert not list((tmp_path / "fresh").glob("*_seed-*"))  # nothing trained again
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "fresh" / "summary.csv"), table)
    assert not (keep / "summary.csv").exists()  # the kept folder holds the summary.md of the run alone
    summarize = [*argv, "--keep", str(keep), "--summarize"]  # runs nothing: the summary of what keep holds
    assert _study.main("step_size", study.__doc__, study.GRID, argv=summarize) == 0
    assert "the summary of 5 of 5 runs written into" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(keep / "summary.csv"), table)
    assert len(pd.read_csv(keep / "curves.csv")) == 10 and (keep / "curves.png").stat().st_size > 0  # 2 validations
    assert _study.main("step_size", study.__doc__, study.GRID, argv=[*argv, "--keep", str(tmp_path / "none"),
                                                                      "--summarize"]) == 2
    assert "step_size: error: --keep" in capsys.readouterr().err and not (tmp_path / "none").exists()
    with pytest.raises(SystemExit):
        _study.main("step_size", study.__doc__, study.GRID, argv=[*argv, "--summarize"])

    assert studies["t_eval"].main(["--runs", str(tmp_path / "eta"), "--t-eval", "1,4",
                                   "--out", str(tmp_path / "te")]) == 0
    t_eval = pd.read_csv(tmp_path / "te" / "t_eval.csv")
    assert len(t_eval) == 10 and set(t_eval["T_eval"]) == {1, 4} and set(t_eval["T_train"]) == {3}
    assert t_eval["miou"].between(0, 1).all()
    assert (tmp_path / "te" / "t_eval.png").stat().st_size > 0

    knockout = importlib.import_module("knockout")  # from the run directories into a bank, each run once
    ko_bank = tmp_path / "ko"
    assert knockout.main(["step_size", "--runs", str(tmp_path / "eta"), "--bank", str(ko_bank)]) == 0
    ko = pd.read_csv(ko_bank / "knockout.csv").merge(pd.read_csv(tmp_path / "eta" / "runs.csv"), on="run",
                                                     suffixes=("", "_logged"))
    assert len(ko) == 5 and (ko["miou"] == ko["miou_logged"]).all()  # the run's own last validation, again
    text = (ko_bank / "knockout.md").read_text()
    assert "| 0.25 | 1 |" in text and "5 of the study's 5 runs" in text
    assert "knockout: 5 runs in" in capsys.readouterr().out
    before = (ko_bank / "knockout.csv").stat().st_mtime_ns
    assert knockout.main(["step_size", "--runs", str(tmp_path / "eta"), "--bank", str(ko_bank)]) == 0
    assert (ko_bank / "knockout.csv").stat().st_mtime_ns == before  # nothing new to evaluate: not rewritten
    assert knockout.main(["step_size", "--runs", str(tmp_path / "nothing"), "--bank", str(ko_bank)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"knockout: error: {tmp_path / 'nothing'} holds no ablation.json: give the folder of a study (--runs)"]
    pd.read_csv(ko_bank / "knockout.csv").drop(columns="model.step_size").to_csv(tmp_path / "k.csv", index=False)
    (tmp_path / "k.csv").replace(ko_bank / "knockout.csv")  # another study's table: refused, not mixed in
    assert knockout.main(["step_size", "--runs", str(tmp_path / "eta"), "--bank", str(ko_bank)]) == 2
    assert "is not this study's: no column model.step_size" in capsys.readouterr().err
    run = next((tmp_path / "eta").glob("*_seed-0"))
    metrics = pd.read_parquet(run / "metrics.parquet")
    metrics.loc[metrics["name"] == "miou", "value"] += 0.01  # as if trained by other code than this checkout's
    metrics.to_parquet(run / "metrics.parquet", index=False)
    assert knockout.main(["step_size", "--runs", str(tmp_path / "eta"), "--bank", str(tmp_path / "ko2")]) == 2
    assert "not the code it was trained with" in capsys.readouterr().err


def test_regime_zoo_quick_trains_every_configuration_and_tabulates_the_verdicts(studies, tmp_path, capsys):
    zoo = importlib.import_module("regime_zoo")
    from gradlab.analysis.regime import REGIMES

    sets = [a for item in ["data.size=32", "data.train_length=32", "data.val_length=8", "train.batch_size=4"]
            for a in ("--set", item)]
    assert zoo.main(["--quick", "--seeds", "1", "--workers", "2", "--out", str(tmp_path), *sets]) == 0
    table = pd.read_csv(tmp_path / "zoo.csv")
    assert list(table["intended"]) == [intended for intended, *_ in zoo.ZOO.values()]
    assert set(table["verdict"]) <= set(REGIMES)
    text = (tmp_path / "zoo.md").read_text()
    assert text.startswith("# Regime zoo: intended regime × verdict") and "| intended |" in text
    assert table.loc[table["intended"] == "no_grad", "verdict"].item() == "no_grad"  # decided by statuses alone
    assert f"regime_zoo: {len(zoo.ZOO)} runs diagnosed" in capsys.readouterr().out


def test_an_interrupted_study_says_so_in_one_line_and_exits_128_plus_the_signal(studies, tmp_path, capsys,
                                                                                 monkeypatch):
    import signal

    import _study

    from gradlab.ablate.runner import AblationInterrupted

    def interrupted(*args, **kwargs):
        raise AblationInterrupted(signal.SIGTERM, ["kind-em_seed-0"])

    monkeypatch.setattr(_study, "run_ablation", interrupted)
    study = studies["step_size"]
    assert _study.main("step_size", study.__doc__, study.GRID, argv=["--out", str(tmp_path / "x")]) == 143
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["step_size: interrupted: SIGTERM, stopped kind-em_seed-0 (resumable); the same command resumes it"]


def test_frozen_runs_a_study_on_a_commits_code_and_banks_it_with_this_checkouts(tmp_path):
    """analyses/frozen.sh: the study trains on the files of the commit (exported once), its bank gets this
    checkout's curves.csv and summary while the commit's code banks only into a copy, a rerun runs nothing again,
    and a bad commit or study is one line, exit 2."""
    import os
    import subprocess

    root = ANALYSES.parent
    env = {**os.environ, "GRADLAB_PYTHON": sys.executable, "GRADLAB_STUDY_ROOT": str(tmp_path / "root"),
           "GRADLAB_SNAPSHOTS": str(tmp_path / "snapshots")}
    sets = [a for item in TINY for a in ("--set", item)]
    command = ["bash", str(ANALYSES / "frozen.sh"), "HEAD", "step_size", "--seeds", "1", *sets]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    snapshot = tmp_path / "snapshots" / head.strip()[:12]
    assert (snapshot / ".git" / "frozen").is_file() and (snapshot / "gradlab" / "__init__.py").is_file()
    bank = tmp_path / "root" / "analyses" / "results" / "step_size"
    assert len(pd.read_csv(bank / "runs.csv")) == 5 and len(pd.read_csv(bank / "curves.csv")) == 10
    assert (bank / "curves.png").is_file() and "frozen.sh: banked 5 runs" in first.stdout
    assert len(pd.read_csv(bank / "knockout.csv")) == 5 and "knockout: 5 runs in" in first.stdout
    runs = sorted((tmp_path / "root" / "runs" / "studies" / "step_size").glob("*/meta.json"))
    meta = [json.loads(p.read_text()) for p in runs]
    assert [m["git_revision"] for m in meta] == [head.strip()] * 5  # what ran, and where
    with open(snapshot / "gradlab" / "ablate" / "ablation.py", "a") as module:  # older code banks differently
        module.write("\n_keep = keep_finished\n\n\ndef keep_finished(out, folder):\n"
                     "    (Path(folder) / 'banked-by-the-snapshot').touch()\n    return _keep(out, folder)\n")
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert [json.loads(p.read_text()) for p in runs] == meta  # all done here: skipped, not trained again
    copy = tmp_path / "root" / "runs" / "studies" / "step_size.snapshot-bank"
    assert (copy / "banked-by-the-snapshot").is_file() and not (bank / "banked-by-the-snapshot").exists()
    assert len(pd.read_csv(copy / "runs.csv")) == 5 and len(pd.read_csv(bank / "curves.csv")) == 10
    for args, message in ((["nocommit", "step_size"], "nocommit is not a commit"),
                          (["HEAD", "no_such_study"], "no study analyses/no_such_study.py")):
        bad = subprocess.run(["bash", str(ANALYSES / "frozen.sh"), *args], env=env, capture_output=True, text=True)
        assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
            next(line for line in bad.stderr.splitlines() if message in line)]


def test_a_study_measured_against_another_studys_bank_writes_against_md(studies, tmp_path, monkeypatch, capsys):
    """plateau_baseline --summarize: each T_train setting banked minus the baseline's runs (paired by seed), in
    against.md beside the summary; without the other study's bank, one line and no against.md."""
    import shutil

    import _study
    from scipy import stats

    from gradlab.ablate.summary import RUN_COLUMNS

    results = tmp_path / "results"
    shutil.copytree(ANALYSES / "results" / "plateau_t_train", results / "plateau_t_train")
    monkeypatch.setattr(_study, "RESULTS", results)
    bank, trials = tmp_path / "baseline", ["kind-none_seed-0", "kind-none_seed-1", "kind-none_seed-2"]
    bank.mkdir()
    (bank / "ablation.json").write_text(json.dumps({"config": "ablation", "set": [], "seeds": 3, "quick": False,
                                                    "grid": {"model.kind": ["none"]}, "trials": trials}))
    rows = pd.DataFrame({"run": trials, "layer": float("nan"), "model.kind": "none", "seed": [0, 1, 2],
                         **{c: float("nan") for c in RUN_COLUMNS}}).assign(miou=[0.50, 0.52, 0.51])
    rows.to_csv(bank / "runs.csv", index=False)
    study = studies["plateau_baseline"]
    argv = ["--keep", str(bank), "--summarize"]
    assert _study.main("plateau_baseline", study.__doc__, study.GRID, against=study.against, argv=argv) == 0
    lines = (bank / "against.md").read_text().splitlines()
    t_train = pd.read_csv(results / "plateau_t_train" / "runs.csv")
    assert len(lines) == 2 + len(t_train.groupby(_study.banked("plateau_t_train")[1]))
    em = t_train[(t_train["model.temperature"] == 1) & (t_train["model.kind"] == "em")
                 & (t_train["model.iterations"] == 3) & (t_train["seed"] < 3)].sort_values("seed")["miou"].to_numpy()
    ci = stats.ttest_rel(em, rows["miou"].to_numpy()).confidence_interval(0.95)
    row = [c.strip() for c in next(line for line in lines if line.startswith("| 1 | em | 3 |")).split("|")[1:-1]]
    difference = (em - rows["miou"].to_numpy()).mean()
    assert row[3] == "3" and row[4] == f"+{difference:.3f} [+{ci.low:.3f}, +{ci.high:.3f}]"

    (bank / "against.md").unlink()
    monkeypatch.setattr(_study, "RESULTS", tmp_path / "nothing")
    assert _study.main("plateau_baseline", study.__doc__, study.GRID, against=study.against, argv=argv) == 0
    assert not (bank / "against.md").exists()
    assert capsys.readouterr().err.strip() == (f"plateau_baseline: against.md not written: no bank of "
                                               f"plateau_t_train in {tmp_path / 'nothing' / 'plateau_t_train'} "
                                               "to compare with")


def test_frozen_stopped_by_sigterm_stops_the_study_banks_what_finished_and_exits_143(tmp_path):
    """SIGTERM to frozen.sh alone (as a session's end may send it) reaches the study, whose trials stop at their
    last checkpoint; the runs that finished are banked with their knockout; the study options frozen.sh sets
    itself are refused."""
    import os
    import signal
    import subprocess
    import time

    env = {**os.environ, "GRADLAB_PYTHON": sys.executable, "GRADLAB_STUDY_ROOT": str(tmp_path / "root"),
           "GRADLAB_SNAPSHOTS": str(tmp_path / "snapshots")}
    sets = [a for item in [*TINY, "train.steps=300", "train.eval_every=300", "train.checkpoint_every=20"]
            for a in ("--set", item)]
    proc = subprocess.Popen(["bash", str(ANALYSES / "frozen.sh"), "HEAD", "step_size", "--seeds", "1", *sets],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = tmp_path / "root" / "runs" / "studies" / "step_size"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and not any(
            json.loads(p.read_text()).get("status") == "complete" for p in runs.glob("*_seed-*/meta.json")):
        time.sleep(0.2)
    assert proc.poll() is None, "the study ended before one run finished: make the runs longer"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-2000:]
    states = [json.loads(p.read_text())["status"] for p in sorted(runs.glob("*_seed-*/meta.json"))]
    finished = states.count("complete")
    assert finished >= 1 and set(states) <= {"complete", "interrupted"}  # a running trial stopped, resumable
    bank = tmp_path / "root" / "analyses" / "results" / "step_size"
    assert f"frozen.sh: banked {finished} runs" in out and len(pd.read_csv(bank / "runs.csv")) == finished
    assert len(pd.read_csv(bank / "knockout.csv")) == finished

    refused = subprocess.run(["bash", str(ANALYSES / "frozen.sh"), "HEAD", "step_size", "--keep", "x"], env=env,
                             capture_output=True, text=True)
    assert refused.returncode == 2 and refused.stderr.startswith("frozen.sh: error: --keep is set by frozen.sh")


def test_receptive_field_reads_the_pixels_a_feature_cell_depends_on(studies, capsys):
    """At 64² every cell of the 8×8 feature map depends on the whole scene; a 3×3 convolution alone sees 3×3."""
    import torch

    field = importlib.import_module("receptive_field")
    assert field.support(torch.nn.Conv2d(3, 1, 3, padding=1), 16, (5, 9)) == (4, 6, 8, 10)
    assert field.main(["--size", "64"]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert rows == ["| 64² | 8×8 | corner (0, 0) | 0–63 | 0–63 | 100% |",
                    "| 64² | 8×8 | centre (4, 4) | 0–63 | 0–63 | 100% |"]
    assert field.main(["--preset", "no_such_preset"]) == 2
    assert capsys.readouterr().err.startswith("receptive_field: error: ")
