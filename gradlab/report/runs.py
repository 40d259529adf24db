"""Gather what a report needs from run directories, tolerating partial runs: configs, records, metrics, each
run's status, and a note for everything that is missing (a missing run directory still raises RecordsError)."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from gradlab.analysis import load_configs, load_metrics, load_runs
from gradlab.analysis.decay import iteration_gradients
from gradlab.analysis.load import run_dirs


@dataclass(frozen=True)
class RunInfo:
    """One run as the report shows it: its name, folder, meta.json status and what it recorded."""

    name: str
    run_dir: Path
    status: str  # meta.json "status": complete, running (killed or still going), stopped, failed, unknown
    recorded_steps: int
    first_step: float
    last_step: float
    has_gradients: bool  # per-iteration grad/* records of an EM/HEM layer (or a tap)
    has_metrics: bool

    @property
    def partial(self) -> bool:
        return self.status != "complete"


@dataclass
class RunData:
    """Everything loaded once: the frames of gradlab.analysis and one RunInfo per run, plus notes."""

    configs: pd.DataFrame
    records: pd.DataFrame
    metrics: pd.DataFrame
    runs: list[RunInfo]
    notes: list[str] = field(default_factory=list)  # what is missing or was skipped, one sentence each


def collect(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> RunData:
    """Load the runs named by `paths` (run directories or folders of them). Missing records or metrics, a
    corrupt records part and an unfinished run become notes (and warnings), never errors."""
    dirs = run_dirs(paths)
    configs = load_configs(dirs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = load_runs(dirs, missing="skip")
        metrics = load_metrics(dirs, missing="skip")
    notes = [str(w.message) for w in caught]
    runs = [_run_info(row, records, metrics) for row in configs.itertuples(index=False)]
    notes += [n for run, row in zip(runs, configs.to_dict("records")) for n in _run_notes(run, row)]
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return RunData(configs, records, metrics, runs, notes)


def _run_info(row, records: pd.DataFrame, metrics: pd.DataFrame) -> RunInfo:
    mine = records[(records["run"] == row.run).to_numpy()]
    steps = mine["step"]
    return RunInfo(
        name=str(row.run), run_dir=Path(row.run_dir), status=_status(Path(row.run_dir)),
        recorded_steps=int(steps.nunique()), first_step=float(steps.min()) if len(steps) else float("nan"),
        last_step=float(steps.max()) if len(steps) else float("nan"),
        has_gradients=bool(len(iteration_gradients(mine))), has_metrics=bool((metrics["run"] == row.run).any()))


def _status(run_dir: Path) -> str:
    try:
        return str(json.loads((run_dir / "meta.json").read_text()).get("status", "unknown"))
    except (OSError, ValueError):
        return "unknown"


def _run_notes(run: RunInfo, config: dict) -> list[str]:
    notes = []
    if run.partial:
        notes.append(f"run {run.name} did not finish (meta.json status: {run.status}): a partial run, reported "
                     f"with the {run.recorded_steps} steps it recorded")
    if config.get("model.kind") == "none":
        notes.append(f"run {run.name} has no EM layer (model.kind = none): it has no gradient decay to report")
    elif run.recorded_steps and not run.has_gradients:
        notes.append(f"run {run.name} recorded no per-iteration gradients (grad/x, grad/z, grad/mu)")
    return notes
