"""Three tiny real runs (EM, HEM, and HEM with only the last iteration differentiable), trained once per test
process and shared by tests/report and tests/test_cli.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from gradlab.train import train
from tests.train.conftest import tiny_config

T = 3
RUNS = {
    "em": ["model.kind=em"],
    "hem": ["model.kind=hem"],
    "hem-one-step": ["model.kind=hem", "model.grad_iterations=1"],
}
_trained: dict[str, Path] = {}


def tiny_runs(tmp_path_factory) -> dict[str, Path]:
    """{name: run directory}; trains the runs on the first call (about 1 s each on one thread)."""
    if not _trained:
        root = tmp_path_factory.mktemp("tiny-runs")
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for name, overrides in RUNS.items():
                train(tiny_config(f"model.iterations={T}", *overrides), root / name, progress=False)
        finally:
            torch.set_num_threads(threads)
        _trained.update({name: root / name for name in RUNS})
    return dict(_trained)


def copy_run(source: Path, target: Path) -> Path:
    """A private copy of a shared run, to damage or rename in one test."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("checkpoints", "report"))
    return target
