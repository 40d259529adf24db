"""Reports of one or several runs: a self-contained HTML file and a Markdown summary with the configs, headline
decay numbers and scores, flags with their reasons, the regime of each EM layer (diagnosis), the figures and a
comparison of the runs.

    paths = build_report(["runs/em", "runs/hem"], "report")     # report/report.html, report/report.md
    print(format_comparison(compare_runs("runs", by=["model.kind"])))

Along the data path: tables.py (every table and number, from the frames of gradlab.analysis) → sections.py (the
sections, figures included) → render.py (the Report model, HTML and Markdown) → build.py (load, assemble, write).
"""

from gradlab.report.build import ReportPaths, build_report
from gradlab.report.tables import compare_runs, comparison_keys, format_comparison

__all__ = ["ReportPaths", "build_report", "compare_runs", "comparison_keys", "format_comparison"]
