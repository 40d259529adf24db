"""`build_report`: load the runs (tolerating partial ones), assemble the sections, write one self-contained HTML
file and a Markdown summary."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

import gradlab
from gradlab.analysis import decay, flags, load_configs, load_metrics, load_runs
from gradlab.analysis.decay import iteration_gradients
from gradlab.analysis.load import run_dirs
from gradlab.atomic import write_text
from gradlab.report import sections
from gradlab.report.render import Report, to_html, to_markdown
from gradlab.report.tables import (
    RunInfo,
    comparison_keys,
    comparison_table,
    decay_summary,
    final_scores,
    flag_summary,
    hue_column,
    regime_table,
)
from gradlab.run_dir import REPORT_HTML, REPORT_MD, RunDirectory

DEFAULT_DPI = 110


@dataclass(frozen=True)
class ReportPaths:
    """Where a report was written: the HTML file, the Markdown file and the PNG figures beside them; `report`,
    the Report both were written from (its tables' cells are what the files show)."""

    html: Path
    markdown: Path
    figures: list[Path]
    report: Report | None = field(default=None, compare=False, repr=False)

    @property
    def folder(self) -> Path:
        return self.html.parent


@dataclass
class RunData:
    """Everything loaded once: the frames of gradlab.analysis and one RunInfo per run, plus notes."""

    configs: pd.DataFrame
    records: pd.DataFrame
    metrics: pd.DataFrame
    runs: list[RunInfo]
    notes: list[str] = field(default_factory=list)  # what is missing or was skipped, one sentence each


def build_report(run_dirs: str | os.PathLike | Iterable[str | os.PathLike], out_dir: str | os.PathLike | None = None,
                 *, title: str | None = None, dpi: int = DEFAULT_DPI, fraction: float = 0.1) -> ReportPaths:
    """Write out_dir/report.html (self-contained) and out_dir/report.md (+ out_dir/figures/*.png) for the runs.

    Headline numbers and regimes are taken over each run's last `fraction` of recorded steps. A missing run
    directory raises RecordsError; anything missing inside a run is said in the report (and warned about).
    """
    data = collect(run_dirs)
    out = Path(out_dir) if out_dir is not None else default_out_dir(data)
    report, figures = assemble(data, out=out, title=title, dpi=dpi, fraction=fraction)
    write_text(out / REPORT_HTML, to_html(report))
    write_text(out / REPORT_MD, to_markdown(report))
    return ReportPaths(out / REPORT_HTML, out / REPORT_MD, figures, report)


def default_out_dir(data: RunData) -> Path:
    """RUN_DIR/report/ for one run, ./report/ for several."""
    return RunDirectory(data.runs[0].run_dir).report_path if len(data.runs) == 1 else Path("report")


def assemble(data: RunData, *, out: Path, title: str | None, dpi: int,
             fraction: float) -> tuple[Report, list[Path]]:
    """The Report of the runs, and the figure files it links (written under out/figures/)."""
    names = [r.name for r in data.runs]
    decay_frame = decay(data.records)
    regimes = regime_table(data.records, runs=data.runs, fraction=fraction)
    decay_table = decay_summary(decay_frame, fraction=fraction)
    scores = final_scores(data.metrics, runs=names)
    flag_table = flag_summary(flags(data.records), records=data.records, configs=data.configs,
                              regimes=regimes)
    figures, figure_files, failed = sections.figures_section(
        data.records, decay_frame=decay_frame, metrics=data.metrics, hue=hue_column(data.configs), out=out, dpi=dpi)
    body = [
        sections.summary_section(regimes, runs=data.runs, configs=data.configs, decay=decay_table,
                                 scores=scores, flag_table=flag_table, fraction=fraction),
        sections.diagnosis_section(regimes, fraction=fraction),
        sections.numbers_section(decay_table, scores=scores, fraction=fraction),
        sections.flags_section(flag_table, runs=data.runs, fraction=fraction),
    ]
    if len(names) > 1:
        by = comparison_keys(data.configs)
        table = comparison_table(data.records, metrics=data.metrics, by=by, fraction=fraction)
        body.append(sections.comparison_section(table, by=by, fraction=fraction))
    body += [figures, sections.configs_section(data.configs)]
    attribution, attribution_files = sections.attribution_section(data.runs, out=out)
    if attribution is not None:
        body.append(attribution)
    notes = data.notes + failed
    if notes:
        body.insert(1, sections.notes_section(notes))
    title = title or (f"gradlab report: {names[0]}" if len(names) == 1 else f"gradlab report: {', '.join(names)}")
    subtitle = [f"{len(names)} run{'s' if len(names) > 1 else ''}: " + ", ".join(str(r.run_dir) for r in data.runs),
                f"gradlab {gradlab.__version__}; numbers over the last {fraction:.0%} of each run's recorded steps"]
    return Report(title, subtitle, body), figure_files + attribution_files


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
        name=str(row.run), run_dir=Path(row.run_dir), status=RunDirectory(row.run_dir).status,
        recorded_steps=int(steps.nunique()), first_step=float(steps.min()) if len(steps) else float("nan"),
        last_step=float(steps.max()) if len(steps) else float("nan"),
        has_gradients=bool(len(iteration_gradients(mine))), has_metrics=bool((metrics["run"] == row.run).any()))


def _run_notes(run: RunInfo, config: dict) -> list[str]:
    notes = []
    if run.partial:
        notes.append(f"run {run.name} did not finish (meta.json status: {run.status}): a partial run, reported "
                     f"with the {run.recorded_steps} steps it recorded")
    if config.get("model.kind") == "none":
        notes.append(f"run {run.name} has no EM layer (model.kind = none): it has no gradient decay to report")
    elif config.get("model.grad_mode") == "implicit":
        notes.append(f"run {run.name} has model.grad_mode = implicit: its layer has no per-iteration gradients and "
                     "no decay to report; its regime says how its adjoint solve went")
    elif run.recorded_steps and not run.has_gradients:
        notes.append(f"run {run.name} recorded no per-iteration gradients (grad/x, grad/z, grad/mu)")
    return notes
