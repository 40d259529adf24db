from __future__ import annotations

import pytest

from gradlab.report import build_report
from tests.report.runs import tiny_runs

DPI = 40  # small figures: the tests check content, not resolution


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    return tiny_runs(tmp_path_factory)


@pytest.fixture(scope="session")
def report(runs, tmp_path_factory):
    """The report of the three tiny runs, built once."""
    return build_report(list(runs.values()), tmp_path_factory.mktemp("report"), dpi=DPI)
