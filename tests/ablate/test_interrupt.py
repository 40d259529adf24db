"""SIGINT to a real `gradlab ablate`: it stops its running trial (which records "interrupted"), prints one line,
exits with status 130, and the same command again resumes that trial and runs the rest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from gradlab.ablate import parse_axis, run_ablation
from gradlab.train import RunDirectory
from tests.ablate.test_ablation import _processes_writing_to
from tests.train.conftest import TINY

SETS = [*TINY, "train.steps=12", "train.eval_every=12"]  # the first trial's step-3 checkpoint is well before its end


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX signals; reads /proc")
def test_sigint_stops_the_running_trial_resumably_and_a_rerun_completes_all(tmp_path):
    out = tmp_path / "abl"
    cmd = [sys.executable, "-m", "gradlab", "ablate", "demo", "--grid", "model.iterations=1,2", "--workers", "1",
           "--threads", "1", "--out", str(out), "--no-report", *(a for item in SETS for a in ("--set", item))]
    first, second = RunDirectory(out / "iterations-1_seed-0"), RunDirectory(out / "iterations-2_seed-0")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while not first.checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert proc.poll() is None and first.checkpoint.exists()
        proc.send_signal(signal.SIGINT)  # to the ablation alone: it passes the signal on to its trial
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    ours = [line for line in stderr.splitlines() if line.startswith("gradlab:")]  # beside tqdm's bar
    assert ours == [f"gradlab: interrupted: SIGINT, stopped {first.path.name} (resumable); run the same command "
                    f"again to continue {out}"], stderr
    assert _processes_writing_to(out) == []
    meta = json.loads(first.meta_path.read_text())
    assert meta["status"] == "interrupted" and meta["interruption"]["signal"] == "SIGINT"
    assert not second.path.exists()
    log = (out / "logs" / f"{first.path.name}.log").read_text()
    assert "gradlab: interrupted: SIGINT after " in log and "Traceback" not in log

    again = run_ablation("demo", [parse_axis("model.iterations=1,2")], 1, out, overrides=SETS, threads=1,
                         progress=False, report=False)
    assert [o.state for o in again.outcomes] == ["done", "done"]
    assert first.complete and second.complete
    log = (out / "logs" / f"{first.path.name}.log").read_text()
    assert log.count("$ ") == 2 and "--resume" in log.split("$ ")[2]
    resumed = json.loads(first.meta_path.read_text())
    assert resumed["resumed_at_step"] == meta["interruption"]["checkpoint_step"] >= 3  # resumed, not redone
