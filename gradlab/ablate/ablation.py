"""`gradlab ablate`: expand a grid, run every trial (skipping finished ones, resuming unfinished ones), then write
what was found: OUT/summary.csv and summary.md (estimates with CIs over seeds), OUT/ablation.png and a combined
report of all runs in OUT/report/.

    run_ablation("demo", [parse_axis("model.kind=em,hem"), parse_axis("model.iterations=1,3,8")], seeds=3,
                 out="runs/ablate-T", workers=2)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gradlab.ablate.executors import SUBMITIT
from gradlab.ablate.grid import Axis, Trial, expand, grid_keys
from gradlab.ablate.runner import Outcome, run_trials
from gradlab.ablate.summary import (
    CURVE_COLUMNS,
    LATER_COLUMNS,
    NUMBER_COLUMNS,
    RUN_COLUMNS,
    contrast_markdown,
    curve_panel_frame,
    panel_frame,
    pool,
    run_curves,
    run_table,
    to_markdown,
)
from gradlab.analysis import load_metrics, load_runs
from gradlab.analysis.intervals import INTERVAL_METHOD
from gradlab.analysis.regime import REGIMES
from gradlab.atomic import write_text
from gradlab.errors import ConfigError
from gradlab.run_dir import RunDirectory

MANIFEST = "ablation.json"
RUNS = "runs.csv"  # the per-run numbers the summary pools (summary.run_table)
CURVES = "curves.csv"  # the runs' learning curves, per validation (summary.run_curves)


@dataclass
class AblationResult:
    out: Path
    trials: list[Trial]
    outcomes: list[Outcome]
    dropped: int  # grid points identical to an earlier one after resolution
    summary: pd.DataFrame | None = None
    report: Path | None = None

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.state == "failed"]

    @property
    def pending(self) -> list[Outcome]:
        """Trials that jobs still have (running or just submitted)."""
        return [o for o in self.outcomes if o.state in ("running", "submitted")]


def run_ablation(config: str | None, axes: Sequence[Axis], seeds: int = 1, out: str | Path = "runs/ablation", *,
                 overrides: Sequence[str] = (), workers: int = 1, threads: int | None = None, quick: bool = False,
                 report: bool = True, progress: bool = True, gpus: Sequence[str] = (), executor: Any = None,
                 job_state: Callable[[str], str] | None = None, wait: bool = True,
                 processes: int = 1, earlier: str | Path | None = None) -> AblationResult:
    """Run the grid into `out` (see the module docstring); rerunning the same call continues it. `executor`,
    `job_state` and `wait` send the trials out as jobs (gradlab.ablate.runner, gradlab.ablate.executors): the
    summary is written once every trial is complete; `processes` > 1 runs each job's trial under torchrun.

    `earlier`: the folder of an earlier run of this same ablation elsewhere (another machine, whose run
    directories are gone): its ablation.json and runs.csv (and curves.csv, where it has one), e.g. committed. Its
    trials are not run again (outcome "earlier"), their rows join the summary, and OUT/runs.csv and
    OUT/curves.csv hold them with the new ones. A trial complete in `out` itself is read from its run
    directory."""
    if workers < 1:
        raise ConfigError(f"--workers {workers} is out of range: allowed >= 1")
    out = Path(out)
    trials, dropped = expand(config, axes, seeds, overrides, quick)
    plan = manifest(config, axes, seeds, overrides, quick, trials)
    kept = read_earlier(earlier, plan, grid_keys(axes)) if earlier is not None else None
    kept_curves = read_curves(earlier, plan) if earlier is not None else None
    claim(out, plan)
    if kept is not None:
        local = {t.name for t in trials if RunDirectory(out / t.name).complete}
        kept = kept[~kept["run"].isin(local)]  # the run directory here is the fuller record of the same trial
        named = set(kept["run"])
        earlier_trials, trials_here = [t for t in trials if t.name in named], [t for t in trials if t.name not in named]
    else:
        earlier_trials, trials_here = [], trials
    if progress:
        extra = f" ({dropped} grid points coincide after resolution and run once)" if dropped else ""
        print(f"ablation: {len(trials)} runs into {out}{extra}; logs in {out / 'logs'}")
        if earlier_trials:
            print(f"ablation: {len(earlier_trials)} of them finished elsewhere ({earlier}): not run again")
    outcomes = run_trials(trials_here, out, config, workers, threads, progress, gpus=gpus, executor=executor,
                          job_state=job_state, wait=wait, processes=processes)
    outcomes = sorted([*outcomes, *(Outcome(t, "earlier") for t in earlier_trials)],
                      key=lambda o: trials.index(o.trial))
    result = AblationResult(out, trials, outcomes, dropped)
    done = [out / t.name for t in trials_here if RunDirectory(out / t.name).complete]
    if (done or earlier_trials) and (executor is None or len(done) == len(trials_here)):
        result.summary = write_summary(done, grid_keys(axes), out, kept, kept_curves)
        if report and done:
            from gradlab.report import build_report

            result.report = build_report(done, out / "report", title=f"Ablation: {', '.join(a.key for a in axes)}").html
    return result


def keep_finished(out: str | Path, folder: str | Path) -> int:
    """Write into `folder` what another machine needs to go on with the ablation in `out` (`--earlier folder`):
    its ablation.json, and a runs.csv and curves.csv of the runs complete in `out` together with the rows
    `folder` holds already (of runs not in `out`). Callable at any time, also while trials still run; returns the
    runs kept."""
    out, folder = Path(out), Path(folder)
    plan = json.loads((out / MANIFEST).read_text())
    keys = grid_keys(plan["grid"])
    done = [out / name for name in plan["trials"] if RunDirectory(out / name).complete]
    banked = (folder / RUNS).is_file()
    rows = finished_runs(done, keys, read_earlier(folder, plan, keys) if banked else None)
    if rows is None:
        return 0
    curves = finished_curves(done, read_curves(folder, plan) if banked else None)
    write_text(folder / MANIFEST, (out / MANIFEST).read_text())
    write_text(folder / RUNS, rows.to_csv(index=False))
    if curves is not None:
        write_text(folder / CURVES, curves.to_csv(index=False))
    return rows["run"].nunique()


def finished_runs(run_dirs: list[Path], keys: list[str], earlier: pd.DataFrame | None = None) -> pd.DataFrame | None:
    """The per-run rows (summary.run_table) of `run_dirs`, with the `earlier` rows of runs not among them (a run
    directory here is the fuller record of the same trial); None when there are none."""
    runs = run_table(load_runs(run_dirs), load_metrics(run_dirs), keys) if run_dirs else None
    return _with_earlier(runs, earlier, "layer")


def finished_curves(run_dirs: list[Path], earlier: pd.DataFrame | None = None) -> pd.DataFrame | None:
    """The learning curves (summary.run_curves) of `run_dirs`, with the `earlier` ones of runs not among them;
    None when there are none."""
    curves = run_curves(load_metrics(run_dirs)) if run_dirs else None
    return _with_earlier(curves if curves is not None and len(curves) else None, earlier, "step")


def _with_earlier(here: pd.DataFrame | None, earlier: pd.DataFrame | None, within: str) -> pd.DataFrame | None:
    """The rows made `here` with the `earlier` rows of runs not among them, sorted by run and `within`; None when
    there are none."""
    if earlier is not None and here is not None:
        earlier = earlier[~earlier["run"].isin(set(here["run"]))]
    parts = [r for r in (earlier, here) if r is not None]
    return pd.concat(parts, ignore_index=True).sort_values(["run", within], ignore_index=True) if parts else None


def read_curves(folder: str | Path, plan: dict) -> pd.DataFrame | None:
    """The learning curves an earlier run of this ablation left in `folder` (its curves.csv), checked as
    `read_earlier` checks runs.csv; None where it has none (banked before curves were kept)."""
    path = Path(folder) / CURVES
    if not path.is_file():
        return None
    where = f"--earlier {folder}: its {CURVES}"
    try:
        curves = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise ConfigError(f"{where} cannot be read ({type(err).__name__}: {err}): give the file that ablate "
                          "wrote") from None
    _refuse_foreign(curves, ["run", "step", *CURVE_COLUMNS], plan, where)
    for column in ("step", *CURVE_COLUMNS):
        curves[column] = _numbers(curves, column, where, integers=column == "step")
    _refuse_cells(curves, "step", curves["step"].isna(), where, "a step (every row of a curve has one)")
    return curves.astype({"run": str, "step": "int64"})[["run", "step", *CURVE_COLUMNS]]


def read_earlier(folder: str | Path, plan: dict, keys: list[str]) -> pd.DataFrame:
    """The per-run rows that an earlier run of this same ablation left in `folder` (its OUT, or a copy of its
    ablation.json and runs.csv without the run directories), checked: the manifest equal to `plan`, runs.csv
    readable, with its columns, and every run one of the plan's trials (ConfigError naming what is wrong)."""
    folder = Path(folder)
    try:
        old = json.loads((folder / MANIFEST).read_text())
        rows = pd.read_csv(folder / RUNS)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise ConfigError(f"--earlier {folder}: give the folder of an earlier run of this ablation, with its "
                          f"{MANIFEST} and {RUNS} ({type(err).__name__}: {err})") from None
    differ = [k for k in plan if not isinstance(old, dict) or old.get(k) != plan[k]]
    if differ:
        raise ConfigError(f"--earlier {folder}: another ablation ({', '.join(differ)} differ from this one's): "
                          "give the folder of an earlier run of the same grid, seeds and --set")
    where = f"--earlier {folder}: its {RUNS}"
    _refuse_foreign(rows, [c for c in ("run", "layer", *keys, *RUN_COLUMNS) if c not in LATER_COLUMNS], plan, where)
    for column in ("seed", *NUMBER_COLUMNS):
        if column in rows.columns:
            rows[column] = _numbers(rows, column, where, integers=column == "seed")
    _refuse_cells(rows, "regime", rows["regime"].notna() & ~rows["regime"].isin(REGIMES), where,
                  f"a regime (one of {', '.join(REGIMES)})")
    return rows.astype({"run": str}).reindex(columns=[*rows.columns, *(c for c in LATER_COLUMNS if c not in rows)])


def _refuse_foreign(rows: pd.DataFrame, columns: list[str], plan: dict, where: str) -> None:
    """A ConfigError unless `rows` (a banked file) has `columns` and only runs among the plan's trials."""
    missing = [c for c in columns if c not in rows.columns]
    foreign = sorted(set(rows["run"].astype(str)) - set(plan["trials"])) if "run" in rows.columns else []
    if missing or foreign:
        raise ConfigError(f"{where} is not one of this ablation's (" + (
            f"no column {', '.join(missing)}" if missing else f"{foreign[0]!r} is not one of its trials") + ")")


def _numbers(rows: pd.DataFrame, column: str, where: str, integers: bool = False) -> pd.Series:
    """`rows[column]` as numbers (empty cells NaN: not recorded), or a ConfigError naming the first cell that is
    not one (a hand-edited or damaged runs.csv or curves.csv), so that no text reaches a mean."""
    values = pd.to_numeric(rows[column], errors="coerce")
    bad = rows[column].notna() & (values.isna() | (values % 1 != 0 if integers else False))
    _refuse_cells(rows, column, bad, where, f"{'an integer' if integers else 'a number'} (give the file that "
                  "ablate wrote)")
    return values


def _refuse_cells(rows: pd.DataFrame, column: str, bad: pd.Series, where: str, expected: str) -> None:
    """A ConfigError naming the first of the `bad` cells of `column`, and its run, when there is one."""
    if bad.any():
        i = bad.to_numpy().argmax()
        value = rows[column].iloc[i]
        shown = "an empty cell" if pd.isna(value) else repr(value.item() if isinstance(value, np.generic) else value)
        raise ConfigError(f"{where} has {shown} in column {column} of run {rows['run'].iloc[i]!r}: not {expected}")


def manifest(config, axes, seeds, overrides, quick, trials) -> dict:
    grid = {a.key: [list(v) if isinstance(v, tuple) else v for v in a.values] for a in axes}  # JSON's lists
    return {"config": config, "set": list(overrides), "grid": grid, "seeds": seeds, "quick": quick,
            "trials": [t.name for t in trials]}


def claim(out: Path, plan: dict) -> None:
    """Write OUT/ablation.json, or check that OUT holds this same ablation (so a rerun continues it)."""
    path = out / MANIFEST
    if path.is_file():
        old = json.loads(path.read_text())
        differ = [k for k in plan if old.get(k) != plan[k]]
        if differ:
            raise ConfigError(f"{out} holds another ablation ({', '.join(differ)} differ from {path}): "
                              "rerun it with its own arguments, or choose another --out")
        return
    if out.exists() and any(p.name != SUBMITIT for p in out.iterdir()):  # submitit makes its folder at once
        raise ConfigError(f"{out} exists, is not empty and holds no {MANIFEST}: choose another --out")
    write_text(path, json.dumps(plan, indent=2))


def write_summary(run_dirs: list[Path], keys: list[str], out: Path, earlier: pd.DataFrame | None = None,
                  earlier_curves: pd.DataFrame | None = None) -> pd.DataFrame:
    """OUT/summary.csv, OUT/summary.md, OUT/runs.csv (the per-run numbers the summary pools: the run directories'
    and the `earlier` rows), OUT/ablation.png (metrics vs the first numeric axis), with EM and HEM in the grid
    OUT/contrast.md (HEM − EM with Welch intervals), and where runs have learning curves OUT/curves.csv (theirs
    and the `earlier_curves`) with OUT/curves.png (val mIoU and training loss per setting vs step)."""
    from gradlab.plots import ablation_panel, save

    runs = finished_runs(run_dirs, keys, earlier)
    table = pool(runs, keys)
    write_text(out / "summary.md", to_markdown(table, keys))
    effect = contrast_markdown(runs, keys)
    if effect is not None:
        write_text(out / "contrast.md", effect)
    write_text(out / "summary.csv", table.to_csv(index=False))
    write_text(out / RUNS, runs.to_csv(index=False))
    x = "model.iterations" if "model.iterations" in keys else next(
        (k for k in keys if pd.api.types.is_numeric_dtype(table[k])), keys[0])
    long = panel_frame(table, x, keys)
    save(ablation_panel(long, x=x, hue="setting", metrics=tuple(long["metric"].unique())), out / "ablation.png")
    curves = finished_curves(run_dirs, earlier_curves)
    if curves is not None:
        write_text(out / CURVES, curves.to_csv(index=False))
        long = curve_panel_frame(curves, runs, keys)
        if len(long):
            title = f"Learning curves: mean over seeds with a {INTERVAL_METHOD}"
            save(ablation_panel(long, x="step", hue="setting", metrics=CURVE_COLUMNS, title=title), out / "curves.png")
    return table
