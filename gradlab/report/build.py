"""`build_report`: one self-contained HTML file and a Markdown summary of one or several runs."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import gradlab
from gradlab.analysis import decay
from gradlab.atomic import write_text
from gradlab.report import formatting as fmt
from gradlab.report import sections
from gradlab.report.attribution import attribution_images, attribution_table, copy_image
from gradlab.report.comparison import comparison_keys, comparison_table, hue_column
from gradlab.report.diagnosis import flag_summary, regimes
from gradlab.report.document import Image, Report, Section, Table, Text
from gradlab.report.figures import FIGURES_DIR, figure_specs, render
from gradlab.report.html import to_html
from gradlab.report.markdown import to_markdown
from gradlab.report.numbers import decay_summary, final_scores
from gradlab.report.runs import RunData, collect

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


def default_out_dir(data: RunData) -> Path:
    """RUN_DIR/report/ for one run, ./report/ for several."""
    return data.runs[0].run_dir / "report" if len(data.runs) == 1 else Path("report")


def build_report(run_dirs: str | os.PathLike | Iterable[str | os.PathLike], out_dir: str | os.PathLike | None = None,
                 *, title: str | None = None, dpi: int = DEFAULT_DPI, fraction: float = 0.1) -> ReportPaths:
    """Write out_dir/report.html (self-contained) and out_dir/report.md (+ out_dir/figures/*.png) for the runs.

    Headline numbers and regimes are taken over each run's last `fraction` of recorded steps. A missing run
    directory raises RecordsError; anything missing inside a run is said in the report (and warned about).
    """
    data = collect(run_dirs)
    out = Path(out_dir) if out_dir is not None else default_out_dir(data)
    report, figures = assemble(data, out, title=title, dpi=dpi, fraction=fraction)
    write_text(out / "report.html", to_html(report))
    write_text(out / "report.md", to_markdown(report))
    return ReportPaths(out / "report.html", out / "report.md", figures, report)


def assemble(data: RunData, out: Path, *, title: str | None, dpi: int, fraction: float) -> tuple[Report, list[Path]]:
    """The Report of the runs, and the figure files it links (written under out/figures/)."""
    names = [r.name for r in data.runs]
    decay_frame = decay(data.records)
    regime_table = regimes(data.records, data.runs, fraction)
    decay_table = decay_summary(decay_frame, fraction)
    scores = final_scores(data.metrics, names)
    flag_table = flag_summary(data.records, data.configs)
    figure_section, figures, notes = _figures(data, decay_frame, out, dpi)
    body = [
        sections.summary_section(data.runs, data.configs, regime_table, decay_table, scores, flag_table, fraction),
        sections.diagnosis_section(regime_table, fraction),
        sections.numbers_section(decay_table, scores, fraction),
        sections.flags_section(flag_table, data.runs),
    ]
    if len(names) > 1:
        by = comparison_keys(data.configs)
        body.append(sections.comparison_section(comparison_table(data.records, data.metrics, by, fraction=fraction),
                                                by, fraction))
    body += [figure_section, sections.configs_section(data.configs)]
    attribution, attribution_files = _attribution(data, out)
    if attribution is not None:
        body.append(attribution)
    all_notes = data.notes + notes
    if all_notes:
        body.insert(1, sections.notes_section(all_notes))
    title = title or (f"gradlab report: {names[0]}" if len(names) == 1 else f"gradlab report: {', '.join(names)}")
    subtitle = [f"{len(names)} run{'s' if len(names) > 1 else ''}: " + ", ".join(str(r.run_dir) for r in data.runs),
                f"gradlab {gradlab.__version__}; numbers over the last {fraction:.0%} of each run's recorded steps"]
    return Report(title, subtitle, body), figures + attribution_files


def _figures(data: RunData, decay_frame, out: Path, dpi: int) -> tuple[Section, list[Path], list[str]]:
    specs, missing = figure_specs(data.records, decay_frame, data.metrics, hue_column(data.configs))
    saved, failed = render(specs, out, dpi)
    blocks = [Image(spec.title, spec.caption, f"{FIGURES_DIR}/{path.name}", path.read_bytes())
              for spec, path in saved]
    blocks += [Text(n, "warning") for n in missing + failed]
    return Section("figures", "Figures", blocks), [p for _, p in saved], failed


def _attribution(data: RunData, out: Path) -> tuple[Section | None, list[Path]]:
    """Attribution tables and figures the runs hold (optional: None when no run has any)."""
    blocks, files = [], []
    for run in data.runs:
        table = attribution_table(run.run_dir)
        if table is not None:
            rows = [[fmt.number(v) if isinstance(v, float) else str(v) for v in row]
                    for row in table.itertuples(index=False, name=None)]
            blocks.append(Table([str(c) for c in table.columns], rows,
                                caption=f"{run.name}: attribution.parquet (first {len(table)} rows)"))
        for source in attribution_images(run.run_dir):
            path = copy_image(source, out / FIGURES_DIR, run.name)
            files.append(path)
            blocks.append(Image(f"{run.name}: {source.stem}", f"{source} from the run directory",
                                f"{FIGURES_DIR}/{path.name}", path.read_bytes()))
    return (Section("attribution", "Attribution", blocks) if blocks else None), files
