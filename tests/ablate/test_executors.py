"""Ablations through an executor (gradlab/ablate/executors.py): submitit's local and debug executors run real
trials on this machine; SLURM is checked against fake sbatch / sacct / scancel scripts on PATH."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pandas as pd
import pytest

from gradlab.ablate import parse_axis, run_ablation
from gradlab.ablate.executors import JOBS, SUBMITIT, TrialCommand
from gradlab.cli import main
from gradlab.train import RunDirectory
from tests.train.conftest import TINY

submitit = pytest.importorskip("submitit")
AXES = ["model.kind=em,hem", "model.iterations=1,2"]


def ablation(out: Path, **options):
    return run_ablation("demo", [parse_axis(a) for a in AXES], 1, out, overrides=TINY, threads=1,
                        progress=False, **options)


def same_summary(a: Path, b: Path) -> None:
    """summary.csv equal, and the reports' Markdown equal once the folders' own paths are taken out."""
    pd.testing.assert_frame_equal(pd.read_csv(a / "summary.csv"), pd.read_csv(b / "summary.csv"))
    text = [(d / "report" / "report.md").read_text().replace(str(d), "OUT") for d in (a, b)]
    assert text[0] == text[1]


@pytest.fixture(scope="module")
def local_runner(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "abl"
    result = ablation(out, workers=2)
    assert [o.state for o in result.outcomes] == ["done"] * 4
    return out


@pytest.mark.parametrize("cluster", ["local", "debug"])
def test_submitit_runs_the_same_ablation_as_the_local_runner(local_runner, tmp_path, cluster):
    out = tmp_path / "abl"
    executor = submitit.AutoExecutor(folder=out / SUBMITIT, cluster=cluster)
    executor.update_parameters(timeout_min=10)
    result = ablation(out, executor=executor)
    assert [o.state for o in result.outcomes] == ["done"] * 4
    same_summary(local_runner, out)
    assert set(json.loads((out / JOBS).read_text())) == {t.name for t in result.trials}
    pickles = list((out / SUBMITIT).glob("*.pkl"))
    assert pickles or cluster == "debug"  # the local executor's submission pickles live in its own folder
    again = ablation(out, executor=executor)
    assert [o.state for o in again.outcomes] == ["skipped"] * 4


def test_a_job_resumes_its_trial_from_the_last_checkpoint_and_checkpoint_requeues_the_same_command(tmp_path):
    out = tmp_path / "abl"
    slow = [*TINY, "train.steps=400", "train.checkpoint_every=5", "train.eval_every=400"]
    executor = submitit.AutoExecutor(folder=out / SUBMITIT, cluster="local")
    executor.update_parameters(timeout_min=10)
    axes = [parse_axis("model.kind=em")]
    result = run_ablation("demo", axes, 1, out, overrides=slow, threads=1, progress=False, executor=executor,
                          wait=False)
    name = result.trials[0].name
    run = RunDirectory(out / name)
    deadline = time.monotonic() + 120
    while not run.checkpoint.is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert run.checkpoint.is_file(), "the trial wrote no checkpoint in 120 s"
    kill_matching(str(out))  # the local "cluster" job and its training die mid-run (a node that went away)
    time.sleep(0.5)
    assert not run.complete
    finished = run_ablation("demo", axes, 1, out, overrides=slow, threads=1, progress=False,
                            executor=executor, report=False)
    assert [o.state for o in finished.outcomes] == ["done"]
    log = (out / "logs" / f"{name}.log").read_text()
    assert log.count("$ ") == 2 and "--resume" in log.split("$ ")[2]

    command = TrialCommand(name, str(out / name), str(out / "logs" / "x.log"), ["fresh"], ["resume"])
    delayed = command.checkpoint()
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert (delayed.function.fresh, delayed.function.resume) == (["fresh"], ["resume"])


def kill_matching(text: str) -> None:
    """SIGKILL every process whose command line mentions `text` (the job's and the training's)."""
    for proc_dir in Path("/proc").iterdir():
        try:
            cmdline = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and proc_dir.name.isdigit() and int(proc_dir.name) != os.getpid():
            try:
                os.kill(int(proc_dir.name), 9)
            except ProcessLookupError:
                pass


FAKE = {
    "sbatch": """#!/bin/sh
# fake sbatch: keep the script, count the call, answer like SLURM
n=$(cat "$FAKE/calls" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > "$FAKE/calls"
cp "$1" "$FAKE/script-$n.sh"
echo "Submitted batch job $((4240 + n))"
""",
    "sacct": """#!/bin/sh
# fake sacct: the states the test wrote, as --parsable2 prints them
echo "JobID|State|NodeList"
cat "$FAKE/states" 2>/dev/null
""",
    "scancel": """#!/bin/sh
echo "$@" >> "$FAKE/cancelled"
""",
    "srun": """#!/bin/sh
exec "$@"
""",
}


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    bin_dir, state = tmp_path / "bin", tmp_path / "slurm"
    bin_dir.mkdir()
    state.mkdir()
    for name, text in FAKE.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE", str(state))
    return state


def slurm_ablate(out: Path, *extra: str) -> int:
    args = ["ablate", "demo", *(a for axis in AXES for a in ("--grid", axis)), "--out", str(out),
            *(a for s in TINY for a in ("--set", s)), "--executor", "slurm", "--slurm-partition", "gpu",
            "--slurm-gpus-per-trial", "1", "--slurm-time", "30", "--slurm-array-parallelism", "2", *extra]
    return main(args)


def test_slurm_submits_one_job_array_and_a_rerun_shows_every_trial(fake_slurm, tmp_path, capsys):
    out = tmp_path / "abl"
    assert slurm_ablate(out) == 0
    script = (fake_slurm / "script-1.sh").read_text()
    for line in ("#SBATCH --array=0-3%2", "#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --time=30"):
        assert line in script
    jobs = json.loads((out / JOBS).read_text())
    assert sorted(jobs.values()) == ["4241_0", "4241_1", "4241_2", "4241_3"]
    printed = capsys.readouterr().out
    assert "4 with the scheduler" in printed and printed.count("submitted ") == 4

    names = sorted(jobs)
    (fake_slurm / "states").write_text("".join(f"{jobs[n]}|RUNNING|node1\n" for n in names[:3])
                                       + f"{jobs[names[3]]}|FAILED|node2\n")
    (out / "logs").mkdir(exist_ok=True)
    (out / "logs" / f"{names[3]}.log").write_text("$ gradlab train ...\nRuntimeError: CUDA out of memory\n")
    assert slurm_ablate(out) == 0
    printed = capsys.readouterr().out
    assert printed.count("running ") == 3
    assert f"failed {names[3]}: job 4241_3 FAILED: RuntimeError: CUDA out of memory" in printed
    assert int((fake_slurm / "calls").read_text()) == 2  # only the failed trial went out again
    again = (fake_slurm / "script-2.sh").read_text()  # one trial: a plain job, not an array
    assert "#SBATCH --partition=gpu" in again and "--array" not in again
    assert json.loads((out / JOBS).read_text())[names[3]] == "4242"
    assert not (out / "summary.csv").exists()  # not before every trial is done


def test_slurm_without_submitit_or_slurm_or_with_bad_gpus_is_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no srun
    code = main(["ablate", "demo", "--grid", "model.kind=em,hem", "--executor", "slurm", "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("gradlab: error: --executor slurm: no SLURM on this machine")
    assert err.count("\n") == 1
    with pytest.raises(SystemExit) as stop:
        main(["ablate", "demo", "--grid", "model.kind=em,hem", "--gpus", "0,x", "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith("gradlab: error: argument --gpus: '0,x' is not a list of GPU")
    import builtins

    real = builtins.__import__

    def no_submitit(name, *args, **kwargs):
        if name == "submitit":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_submitit)
    code = main(["ablate", "demo", "--grid", "model.kind=em,hem", "--executor", "slurm", "--out",
                 str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("gradlab: error: --executor slurm needs submitit") and err.count("\n") == 1


def test_gpus_give_each_running_trial_its_own_device(tmp_path, monkeypatch):
    seen = []
    import gradlab.ablate.runner as runner

    real = runner.subprocess.Popen

    def record(cmd, env=None, **kwargs):
        seen.append(env.get("CUDA_VISIBLE_DEVICES"))
        return real(cmd, env=env, **kwargs)

    monkeypatch.setattr(runner.subprocess, "Popen", record)
    result = ablation(tmp_path / "abl", workers=2, gpus=("3", "5"), report=False)
    assert [o.state for o in result.outcomes] == ["done"] * 4
    assert sorted(seen[:2]) == ["3", "5"] and set(seen) == {"3", "5"}
