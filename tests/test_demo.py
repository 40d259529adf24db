"""`gradlab demo` prints the numbers its report shows: the report's summary table, cell for cell."""

from __future__ import annotations

import shutil

from gradlab.demo import run_demo
from tests.report.runs import tiny_runs


def test_the_demo_prints_the_cells_of_its_report(tmp_path, tmp_path_factory, capsys):
    runs = tiny_runs(tmp_path_factory)
    for kind in ("em", "hem"):  # complete runs: the demo reuses them instead of training
        shutil.copytree(runs[kind], tmp_path / kind, ignore=shutil.ignore_patterns("report"))
    table = run_demo(tmp_path)
    printed = capsys.readouterr().out
    markdown = (tmp_path / "report" / "report.md").read_text()
    summary = markdown.split("## Summary", 1)[1].split("\n## ", 1)[0]
    assert list(table["run"]) == ["em", "hem"] and "already complete, reusing it" in printed
    for row in table.itertuples(index=False):
        assert "| " + " | ".join(row) + " |" in summary  # the same cells as the report's summary table
        assert " ".join(row[-4:]) in " ".join(printed.split())  # decades, ρ, mIoU, pixel accuracy as printed
    assert "val mIoU" in printed and "report of both runs" in printed
