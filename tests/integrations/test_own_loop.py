"""examples/own_loop.py, run as a user runs it: a plain PyTorch loop with autocast (fp16 with a GradScaler, bf16),
gradient accumulation, a tracker through `log=` and `loops=` on a GRU cell; its records, tracker and output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import gradlab
from gradlab.analysis import decay
from gradlab.integrations.metrics import metric_key

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "own_loop.py"


def run(*args: str) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLE), "--steps", "4", "--every", "2", "--batch", "16", *args],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_fp16_with_a_grad_scaler_accumulation_and_a_dict_tracker(tmp_path):
    out = run("--amp", "fp16", "--accumulate", "2", "--out", str(tmp_path))
    assert "recorded 2 of 4 updates (2 micro-batches each, amp fp16, 0 skipped by the scaler)" in out
    records = gradlab.load_records(tmp_path)
    assert sorted(records.step.unique()) == [0, 2]
    grad_in = records[(records.layer == "cell") & (records.quantity == "grad/in")]
    assert sorted(grad_in.iteration.unique()) == list(range(1, 9)) and (grad_in.status == "ok").all()
    assert grad_in.value.max() < 1.0  # the scale (65536) is divided out: these are the unscaled norms
    amp = records[records.quantity.str.startswith("amp/")].pivot_table(index="step", columns="quantity", values="value")
    assert amp["amp/scale"].tolist() == [65536.0, 65536.0] and amp["amp/skipped"].tolist() == [0.0, 0.0]
    tracker = json.loads((tmp_path / "tracker.json").read_text())
    assert sorted(tracker) == ["0", "2"]
    decades = metric_key("cell", "grad/in", "decades")
    assert tracker["2"][decades] == pytest.approx(
        float(decay(records[records.step == 2]).query("quantity == 'grad/in'").decades.item()))
    assert metric_key("cell", "grad/in", "t8") in tracker["0"]


def test_its_run_directory_exports_to_tensorboard_with_the_recorded_loss(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from gradlab.cli import main

    run("--amp", "off", "--accumulate", "1", "--out", str(tmp_path / "run"))
    assert main(["export", "tensorboard", str(tmp_path / "run"), "--logdir", str(tmp_path / "tb")]) == 0
    acc = EventAccumulator(str(tmp_path / "tb" / "run"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("metrics/loss")] == [0, 2]  # from the records: no metrics.parquet here
    assert [e.step for e in acc.Scalars(metric_key("cell", "grad/in", "t1"))] == [0, 2]


def test_bf16_with_tensorboard_as_the_tracker(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = run("--amp", "bf16", "--accumulate", "1", "--out", str(tmp_path / "run"), "--tensorboard",
              str(tmp_path / "tb"))
    assert "amp bf16" in out and "grad/in" in out
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars(metric_key("cell", "grad/in", "decades"))] == [0, 2]
