"""SIGINT (Ctrl-C) and SIGTERM: `gradlab train` in a real process stops with one line and exit status 130 / 143,
meta.json "interrupted" and its last checkpoint intact, and `--resume` ends where a straight run ends; other
commands stop with one line too."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import gradlab
from gradlab import cli
from gradlab.run_dir import CHECKPOINT, META
from gradlab.train import train
from gradlab.train import trainer as trainer_module
from tests.train.conftest import TINY, tiny_config

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

STEPS = 12  # long enough that the signal, sent once the step-3 checkpoint exists, lands mid-run


@pytest.fixture
def one_thread():
    """The interrupted process runs with OMP_NUM_THREADS=1: the straight run and the resume do too (another
    thread count sums in another order)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(tiny_config(f"train.steps={STEPS}"), tmp_path_factory.mktemp("straight") / "run",
                     progress=False)
    finally:
        torch.set_num_threads(threads)


def signal_when(cmd: list[str], ready: Path, sig: int, timeout: float = 120) -> tuple[int, str]:
    """Start `cmd`, send `sig` once `ready` exists; its exit status and stderr (the process is killed on a hang)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + timeout
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert proc.poll() is None, f"exited before {ready} appeared: {proc.communicate()[1][-2000:]}"
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=timeout)
        return proc.returncode, stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_training_with_one_line_and_resume_ends_as_a_straight_run(tmp_path, straight, one_thread,
                                                                                    sig):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "gradlab", "train", "demo", "--quiet", "--out", str(out)]
    for item in [*TINY, f"train.steps={STEPS}"]:
        cmd += ["--set", item]
    status, stderr = signal_when(cmd, out / CHECKPOINT, sig)

    assert status == 128 + sig, stderr
    assert len(stderr.splitlines()) == 1 and "Traceback" not in stderr, stderr
    assert stderr.startswith(f"gradlab: interrupted: {sig.name} after ")
    assert stderr.rstrip("\n").endswith(f"(resume with gradlab train --resume --out {out})")
    meta = json.loads((out / META).read_text())
    assert meta["status"] == "interrupted" and meta["interruption"]["signal"] == sig.name
    state = torch.load(out / CHECKPOINT, weights_only=True)
    assert state["step"] == meta["interruption"]["checkpoint_step"]
    assert state["step"] % 3 == 0 and 3 <= state["step"] <= meta["interruption"]["step"] < STEPS
    assert f"holds step {state['step']}" in stderr
    assert not [p for p in out.rglob(".*.tmp")]  # nothing half-written

    assert cli.main(["train", "--resume", "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / META).read_text())["status"] == "complete"
    a, b = (torch.load(path / CHECKPOINT, weights_only=True)["model"] for path in (straight.path, out))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6, msg=name)
    ra, rb = (gradlab.load_records(path).query("quantity != 'step_time'").drop(columns="run")
              for path in (straight.path, out))
    pd.testing.assert_frame_equal(ra.reset_index(drop=True), rb.reset_index(drop=True), rtol=1e-6)
    ma, mb = (pd.read_parquet(path / "metrics.parquet") for path in (straight.path, out))
    pd.testing.assert_frame_equal(ma, mb, rtol=1e-6)


def test_a_signal_inside_a_checkpoint_waits_for_it_and_the_handlers_come_back(tmp_path, monkeypatch):
    """The signal arrives while the step-3 checkpoint is being written: that checkpoint is finished first, the
    run stops right after it, and the handlers in place before `train` are in place again."""
    real = trainer_module._checkpoint

    def checkpoint_under_a_signal(t, done):
        os.kill(os.getpid(), signal.SIGTERM)  # handled at once, in this (the main) thread
        real(t, done)

    monkeypatch.setattr(trainer_module, "_checkpoint", checkpoint_under_a_signal)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(trainer_module.TrainingInterrupted, match=r"SIGTERM after 3 of 6 steps; .* holds step 3") as err:
        train(tiny_config(), tmp_path / "run", progress=False)
    assert err.value.signum == signal.SIGTERM
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    meta = json.loads((tmp_path / "run" / META).read_text())
    assert meta["status"] == "interrupted" and meta["interruption"]["checkpoint_step"] == 3
    assert torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)["step"] == 3
    assert sorted(gradlab.load_records(tmp_path / "run").step.unique()) == [0, 1, 2]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_other_commands_stop_with_one_line(tmp_path, monkeypatch, capsys, sig):
    """`gradlab report` (and every command) under a signal: one line, no traceback, 128 + the signal."""
    import gradlab.report

    def build_report(*args, **kwargs):
        os.kill(os.getpid(), sig)
        time.sleep(10)  # interrupted by the signal's KeyboardInterrupt
        raise AssertionError("not interrupted")

    monkeypatch.setattr(gradlab.report, "build_report", build_report)
    assert cli.main(["report", str(tmp_path)]) == 128 + sig
    err = capsys.readouterr().err
    assert err == f"gradlab: interrupted: {sig.name} before gradlab report finished (no file is left half-written)\n"
