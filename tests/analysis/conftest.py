"""Two tiny real runs (EM and HEM, 6 steps each), trained once per test session."""

from __future__ import annotations

import pytest
import torch

from gradlab.train import train
from tests.train.conftest import tiny_config


@pytest.fixture(scope="session")
def run_folder(tmp_path_factory):
    """A folder holding runs `em` and `hem` (T = 2, every iteration differentiable)."""
    folder = tmp_path_factory.mktemp("analysis-runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for kind in ("em", "hem"):
            train(tiny_config(f"model.kind={kind}"), folder / kind, progress=False)
    finally:
        torch.set_num_threads(threads)
    return folder
