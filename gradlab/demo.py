"""`make demo`: train an EM and an HEM model on the bundled digit scenes, compare their gradient decay, and write
the EM-vs-HEM report."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from gradlab.instrument import load_records
from gradlab.report import build_report
from gradlab.train import load_config, train
from gradlab.train.metrics_log import final_value


def run_demo(out: str | Path = "runs/demo", steps: int | None = None) -> pd.DataFrame:
    """Two runs, out/em and out/hem (the `demo` preset, T = 3), a table per iteration (returned), and the report
    of both in out/report/."""
    out = Path(out)
    extra = [f"train.steps={steps}"] if steps else []
    for kind in ("em", "hem"):
        run_dir = out / kind
        if (run_dir / "meta.json").is_file() and '"complete"' in (run_dir / "meta.json").read_text():
            print(f"{run_dir}: already complete, reusing it")
            continue
        print(f"training {kind.upper()} into {run_dir}")
        train(load_config("demo", [f"model.kind={kind}", *extra]), run_dir)
    table = summary([out / "em", out / "hem"])
    with pd.option_context("display.float_format", "{:.3g}".format, "display.width", 120):
        print("\nmedian gradient norm reaching each unrolled iteration, last half of training:")
        print(table.to_string())
    paths = build_report([out / "em", out / "hem"], out / "report", title="gradlab demo: EM vs HEM")
    print(f"\nreport of both runs: {paths.html}")
    return table


def summary(run_dirs: list[Path]) -> pd.DataFrame:
    """Per run: median ‖∂L/∂X^(t)‖ per iteration t over the last half of steps, decades of decay, final mIoU."""
    frame = load_records(run_dirs)
    grads = frame[(frame.quantity == "grad/x") & (frame.status == "ok")]
    grads = grads[grads.step >= grads.step.max() / 2]
    table = grads.pivot_table(index="run", columns="iteration", values="value", aggfunc="median")
    table.columns = [f"t={t}" for t in table.columns]
    table["decades (t=1 vs T)"] = [math.log10(row.iloc[0] / row.iloc[-1]) for _, row in table.iterrows()]
    table["val mIoU"] = [final_miou(d) for d in run_dirs]
    return table


def final_miou(run_dir: Path) -> float:
    return final_value(run_dir / "metrics.parquet", "miou")
