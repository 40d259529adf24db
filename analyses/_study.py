"""What every study script shares: its command line (--quick, --workers, --out, --seeds, --set, --keep,
--summarize), running its grid with `gradlab.ablate.run_ablation`, and printing the summary. A study adds its own
tables and figures after.

`--keep DIR` lets a study span machines whose run directories do not survive: the trials whose numbers DIR
holds (ablation.json and runs.csv of an earlier run, e.g. committed) are not run again, and before and after the
run the numbers of every run finished in OUT are added to DIR (`gradlab.ablate.ablation.keep_finished`), with
summary.md once there is one, to commit. `--summarize` (with `--keep DIR`) runs nothing: it writes the summary,
contrast.md and the figure of the runs DIR holds into DIR, with the code of this checkout (e.g. after a study that
ran on a frozen snapshot), and says how many of the study's runs that is. A study that compares itself with another
study's bank (the baseline, another budget: `main(against=...)`) writes that comparison as against.md beside its
summary, after a run and with `--summarize`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from gradlab.ablate import AblationResult, parse_axis, run_ablation
from gradlab.ablate.ablation import MANIFEST, RUNS, keep_finished, read_curves, read_earlier, write_summary
from gradlab.ablate.grid import grid_keys
from gradlab.ablate.runner import AblationInterrupted
from gradlab.atomic import write_text
from gradlab.cli import one_line
from gradlab.errors import GradlabError

BASE = "ablation"  # the preset gradlab/configs/ablation.toml
#: the budget of the studies to plateau (issue 19): 24,000 steps, where the learning curve of the ablation preset
#: flattens under the poly schedule (val mIoU 0.629, 0.634, 0.640, 0.636, 0.644 at steps 20k-24k for HEM, T = 3,
#: tau = 1; runs/studies/plateau_curve), validated every 2,000 steps on 200 scenes
PLATEAU = ["train.steps=24000", "train.eval_every=2000", "train.checkpoint_every=2000", "data.val_length=200"]

#: a study's comparison with another study's bank: its per-run rows (runs.csv) → Markdown (`write_against`)
Against = Callable[[pd.DataFrame], str]
AGAINST = "against.md"  # where a study writes it, beside its summary
#: the root of a checkout's runs/studies/STUDY and analyses/results/STUDY (the banks): $GRADLAB_STUDY_ROOT
#: (analyses/frozen.sh passes its own on), else the checkout of this file
STUDY_ROOT = Path(os.environ.get("GRADLAB_STUDY_ROOT") or Path(__file__).resolve().parents[1])
RESULTS = STUDY_ROOT / "analyses" / "results"


def main(name: str, doc: str, grid: Sequence[str], seeds: int = 3, overrides: Sequence[str] = (),
         after: Callable[[AblationResult], None] | None = None, against: Against | None = None,
         argv: list[str] | None = None) -> int:
    """Run study `name` (its grid over the ablation preset) into runs/studies/NAME[-quick], then `after`; with
    `against`, its runs.csv is also compared with another study's bank into AGAINST (`write_against`)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke-sized runs (minutes, numbers meaningless)")
    parser.add_argument("--workers", type=int, default=2, help="runs at once (default 2)")
    parser.add_argument("--seeds", type=int, default=seeds, help=f"seeds per grid point (default {seeds})")
    parser.add_argument("--out", default=None, help=f"folder (default runs/studies/{name}, -quick with --quick)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    parser.add_argument("--keep", default=None, metavar="DIR",
                        help="a folder to commit: trials it holds are not run again; the results are copied there")
    parser.add_argument("--summarize", action="store_true",
                        help="run nothing: write the summary of the runs the --keep folder holds into it")
    args = parser.parse_args(argv)
    if args.summarize:
        return summarize_kept(name, args.keep, parser, against)
    out = Path(args.out or f"runs/studies/{name}{'-quick' if args.quick else ''}")
    keep = Path(args.keep) if args.keep else None
    began = time.monotonic()
    try:
        if keep is not None and (out / MANIFEST).is_file():  # what finished here before (an interrupted session)
            keep_finished(out, keep)
        result = run_ablation(BASE, [parse_axis(a) for a in grid], args.seeds, out, workers=args.workers,
                              overrides=[*overrides, *args.set], quick=args.quick,
                              earlier=keep if keep is not None and (keep / RUNS).is_file() else None)
        elsewhere = sum(o.state == "earlier" for o in result.outcomes)
        if after is not None and result.summary is not None and elsewhere:
            print(f"{name}: {elsewhere} runs finished elsewhere have no run directory here: {after.__name__} "
                  "(which reads run directories) is skipped; the summary holds them")
        elif after is not None and result.summary is not None:
            after(result)
        if keep is not None:
            finished = keep_finished(out, keep)
            if (out / "summary.md").is_file():
                write_text(keep / "summary.md", (out / "summary.md").read_text())
            print(f"{name}: kept the numbers of {finished} finished runs in {keep}: commit it")
        for folder in {out, keep} - {None}:
            write_against(name, against, folder)
    except GradlabError as err:
        print(f"{name}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except AblationInterrupted as err:  # Ctrl-C or SIGTERM: the running trials stopped at their last checkpoint
        print(f"{name}: interrupted: {err}; the same command resumes it", file=sys.stderr)
        return 128 + err.signum
    print((out / "summary.md").read_text() if (out / "summary.md").is_file() else "no finished runs")
    minutes = (time.monotonic() - began) / 60
    print(f"{name}: {len(result.trials)} runs, {len(result.failed)} failed; {minutes:.1f} min in this call; {out}")
    return 1 if result.failed else 0


def summarize_kept(name: str, keep: str | None, parser: argparse.ArgumentParser, against: Against | None = None) -> int:
    """`--summarize`: summary.md, summary.csv, contrast.md, ablation.png and (where the runs have learning
    curves) curves.png of the runs banked in `keep`."""
    if keep is None:
        parser.error("--summarize needs --keep DIR: the folder whose banked runs to summarize")
    folder = Path(keep)
    try:
        plan = json.loads((folder / MANIFEST).read_text()) if (folder / MANIFEST).is_file() else None
        if plan is None or not (folder / RUNS).is_file():
            raise GradlabError(f"--keep {folder}: no {MANIFEST} and {RUNS} to summarize (nothing banked yet?)")
        keys = grid_keys(plan["grid"])
        rows = read_earlier(folder, plan, keys)
        write_summary([], keys, folder, earlier=rows, earlier_curves=read_curves(folder, plan))
        write_against(name, against, folder)
    except GradlabError as err:
        print(f"{name}: error: {one_line(err)}", file=sys.stderr)
        return 2
    print((folder / "summary.md").read_text())
    print(f"{name}: the summary of {rows['run'].nunique()} of {len(plan['trials'])} runs written into {folder}")
    return 0


def banked(study: str, where: dict[str, object] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The per-run rows of the bank of `study` (RESULTS/STUDY, checked as `--keep` checks it), those whose columns
    equal `where`'s values, and the study's grid keys; GradlabError where it has none."""
    folder = RESULTS / study
    if not (folder / MANIFEST).is_file():
        raise GradlabError(f"no bank of {study} in {folder} to compare with")
    plan = json.loads((folder / MANIFEST).read_text())
    keys = grid_keys(plan["grid"])
    rows = read_earlier(folder, plan, keys)
    unknown = [k for k in (where or {}) if k not in rows.columns]
    if unknown:
        raise GradlabError(f"the bank of {study} has no column {', '.join(unknown)}")
    for key, value in (where or {}).items():
        rows = rows[rows[key] == value]
    if rows.empty:
        raise GradlabError(f"the bank of {study} holds no runs with {where}")
    return rows, keys


def write_against(name: str, against: Against | None, folder: Path) -> None:
    """FOLDER/AGAINST from the runs.csv in `folder`, or one line saying why not (another bank missing)."""
    if against is None or not (folder / RUNS).is_file():
        return
    try:
        write_text(folder / AGAINST, against(pd.read_csv(folder / RUNS)))
    except (GradlabError, KeyError, ValueError) as err:  # another bank missing, or not comparable
        print(f"{name}: {AGAINST} not written: {one_line(err)}", file=sys.stderr)
