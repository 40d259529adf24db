"""Every benchmark script runs in its --smoke mode and prints its table. No assertion on time, ever."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# script: a column header its table prints
SCRIPTS = {
    "recorder_overhead": "ratio (per-round quartiles)",
    "loops_overhead": "auto, every step",  # the slot-attention example at T = 3 and 7
    "analysis_scale": "peak decay MB",
    "hem_vs_em": "HEM saved MB",
    "em_layer_speed": "layer/ref",
    "kill_resume": "rows checked",  # 2 trials of a 12-step run killed and resumed (~15-25 s on 2 cores)
}


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_smoke_mode_runs_and_prints_its_table(script):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{script}", "--smoke"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert SCRIPTS[script] in proc.stdout, proc.stdout
    assert "wrote" not in proc.stdout  # --smoke leaves benchmarks/results alone


def test_recorder_breakdown_runs_on_the_small_model():
    """--breakdown's modes, the ledger of the EMA unit and the step parts run (numbers meaningless at --smoke)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.recorder_overhead", "--smoke", "--breakdown",
                           "--model", "small"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "small (4 conv blocks) + HEM T=5" in proc.stdout
    for line in ("no diagnostics", "ledger:", "hooks + norms + agreement", "group norms", "σ_t estimate"):
        assert line in proc.stdout, proc.stdout
