"""The tiny EM, HEM and one-step HEM runs of tests/report (T = 3), loaded once, and two of their val images."""

from __future__ import annotations

import pytest

from gradlab.attribution import depth_profile, load_run
from gradlab.attribution.run import Batch, first_images
from tests.report.runs import tiny_runs

N_STEPS = 32  # path methods: enough for the profile's shape, cheap on one thread


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    return tiny_runs(tmp_path_factory)


@pytest.fixture(scope="session")
def loaded(runs):
    return {name: load_run(path) for name, path in runs.items()}


@pytest.fixture(scope="session")
def batch(loaded) -> Batch:
    """Two validation images (every run has the same data), their largest classes and regions."""
    return first_images(loaded["em"].val, 2)[0]


@pytest.fixture(scope="session")
def profiles(loaded, batch):
    """{run name: depth profile} with every layer method."""
    return {name: depth_profile(run.net, batch.images, batch.classes, batch.regions, n_steps=N_STEPS, run=name)
            for name, run in loaded.items()}
