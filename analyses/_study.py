"""What every study script shares: its command line (--quick, --workers, --out, --seeds, --set), running its grid
with `gradlab.ablate.run_ablation`, and printing the summary. A study adds its own tables and figures after."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from gradlab.ablate import AblationResult, parse_axis, run_ablation
from gradlab.cli import one_line
from gradlab.errors import GradlabError

BASE = "ablation"  # the preset gradlab/configs/ablation.toml


def main(name: str, doc: str, grid: Sequence[str], seeds: int = 3, overrides: Sequence[str] = (),
         after: Callable[[AblationResult], None] | None = None, argv: list[str] | None = None) -> int:
    """Run study `name` (its grid over the ablation preset) into runs/studies/NAME[-quick], then `after`."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke-sized runs (minutes, numbers meaningless)")
    parser.add_argument("--workers", type=int, default=2, help="runs at once (default 2)")
    parser.add_argument("--seeds", type=int, default=seeds, help=f"seeds per grid point (default {seeds})")
    parser.add_argument("--out", default=None, help=f"folder (default runs/studies/{name}, -quick with --quick)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    args = parser.parse_args(argv)
    out = Path(args.out or f"runs/studies/{name}{'-quick' if args.quick else ''}")
    began = time.monotonic()
    try:
        result = run_ablation(BASE, [parse_axis(a) for a in grid], args.seeds, out, workers=args.workers,
                              overrides=[*overrides, *args.set], quick=args.quick)
        if after is not None and result.summary is not None:
            after(result)
    except GradlabError as err:
        print(f"{name}: error: {one_line(err)}", file=sys.stderr)
        return 2
    print((out / "summary.md").read_text() if (out / "summary.md").is_file() else "no finished runs")
    minutes = (time.monotonic() - began) / 60
    print(f"{name}: {len(result.trials)} runs, {len(result.failed)} failed; {minutes:.1f} min in this call; {out}")
    return 1 if result.failed else 0
