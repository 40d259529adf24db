"""`make demo`: train an EM and an HEM model on the bundled digit scenes, compare their gradient decay, and write
the EM-vs-HEM report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from gradlab.report import build_report
from gradlab.report.render import Report, Table
from gradlab.run_dir import RunDirectory
from gradlab.train import load_config, train


def run_demo(out: str | Path = "runs/demo", steps: int | None = None) -> pd.DataFrame:
    """Two runs, out/em and out/hem (the `demo` preset, T = 6), and the report of both in out/report/. Prints the
    report's summary table, the same cells the report shows, and returns it (a frame of formatted text)."""
    out = Path(out)
    extra = [f"train.steps={steps}"] if steps else []
    for kind in ("em", "hem"):
        run_dir = out / kind
        if RunDirectory(run_dir).complete:
            print(f"{run_dir}: already complete, reusing it")
            continue
        print(f"training {kind.upper()} into {run_dir}")
        train(load_config("demo", [f"model.kind={kind}", *extra]), run_dir)
    paths = build_report([out / "em", out / "hem"], out / "report", title="gradlab demo: EM vs HEM")
    table = summary_table(paths.report)
    print("\nsummary, as in the report (regime, decay of grad/x across the unrolled iterations, last validation):")
    print(table.to_string(index=False))
    print(f"\nreport of both runs: {paths.html}")
    return table


def summary_table(report: Report) -> pd.DataFrame:
    """The report's summary table (one row per run and EM layer) as a frame of the report's own cells."""
    table = next(b for s in report.sections if s.id == "summary" for b in s.blocks if isinstance(b, Table))
    return pd.DataFrame(table.rows, columns=table.columns)
