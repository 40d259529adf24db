"""TensorBoard: a `log=` adapter over a SummaryWriter, and finished run directories exported to event files.

    writer = SummaryWriter("tb/run")
    with gradlab.watch(model, log=TensorBoardLog(writer), log_iterations=True) as rec: ...

    gradlab export tensorboard runs/em runs/hem --logdir tb     # tb/em, tb/hem: one TensorBoard run each

Each summary key (gradlab.integrations.metrics) is a scalar. A custom-scalars layout (TensorBoard's "Custom
Scalars" tab) draws, per layer, one multiline chart per quantity with its T iteration curves t1..tT together, and
one with the decades of all its quantities. Needs the extra `gradlab[tensorboard]`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from gradlab.errors import GradlabError
from gradlab.integrations.metrics import PREFIX, iteration_key, summary

#: the tags of metrics.parquet's numbers (loss, lr, miou, ...) in an export: metrics/<name>
METRICS_PREFIX = "metrics"
#: the per-step quantities of the records exported as metrics/<name> when a run has no metrics.parquet
RECORDED_STEP_METRICS = ("loss", "lr")


def summary_writer(logdir: str | Path):
    """torch's SummaryWriter, or a GradlabError that says how to install TensorBoard."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:  # torch.utils.tensorboard imports the tensorboard package
        raise GradlabError(f"TensorBoard is not installed ({err}): pip install 'gradlab[tensorboard]'") from None
    return SummaryWriter(str(logdir))


def layout(keys: Iterable[str]) -> dict[str, dict[str, list]]:
    """The custom-scalars layout of summary keys: a category per layer (gradlab <layer>) holding a multiline chart
    per quantity with its iterations (gradlab/<layer>/<quantity>/t<k>) and one of its quantities' decades."""
    charts: dict[str, dict[str, list]] = {}
    for key in sorted(keys):
        found = iteration_key(key)
        if found is not None:
            layer, quantity, _ = found
            chart = f"{PREFIX}/{layer}/{quantity}"
            charts.setdefault(f"{PREFIX} {layer}", {})[f"{quantity} per iteration"] = [
                "Multiline", [rf"^{re.escape(chart)}/t\d+$"]]
        elif key.startswith(PREFIX + "/") and key.endswith("/decades"):
            layer = key.split("/")[1]
            charts.setdefault(f"{PREFIX} {layer}", {})["decades"] = [
                "Multiline", [rf"^{re.escape(PREFIX)}/{re.escape(layer)}/.+/decades$"]]
    return charts


class TensorBoardLog:
    """`log=` for `gradlab.watch`: each summary key as a scalar of `writer`, and the custom-scalars layout.

    TensorBoard reads the first layout of a run, so the layout is written once the keys have settled: at the
    first step that brings no chart the step before did not (the second recorded step; `loops="auto"` finds its
    loops in the first), or at `close()`."""

    def __init__(self, writer):
        self.writer = writer
        self._charts: dict | None = None  # the layout of the previous step, until it is written
        self._written = False

    def __call__(self, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        if not self._written:
            charts = layout(metrics)
            if charts and charts == self._charts:
                self._write_layout(charts)
            self._charts = charts

    def _write_layout(self, charts: dict) -> None:
        self.writer.add_custom_scalars(charts)
        self._written = True

    def close(self) -> None:
        """Write the layout if no step has yet, and flush the writer (which stays open: it is the caller's)."""
        if not self._written and self._charts:
            self._write_layout(self._charts)
        self.writer.flush()


def export_runs(paths, logdir: str | Path) -> list[Path]:
    """Write the records summary (with the per-iteration norms) and metrics.parquet of each run directory as a
    TensorBoard run under `logdir` (named as the report names runs); returns the folders written. A folder that
    holds event files already is refused, so that a second export never doubles a run's points."""
    from gradlab.analysis.load import load_metrics, load_runs, run_dirs, run_labels
    from gradlab.run_dir import RunDirectory

    dirs = run_dirs(paths)
    targets = [Path(logdir) / label for label in run_labels(dirs)]
    for target in targets:
        if target.is_dir() and any(target.glob("events.out.tfevents.*")):
            raise GradlabError(f"{target} already holds TensorBoard event files: give another --logdir, or delete "
                               "that folder to export again")
    for run_dir, target in zip(dirs, targets):
        records = load_runs([run_dir])
        records = records[(records["rank"] == 0).to_numpy()]  # what a run records (record.all_ranks adds ranks)
        metrics = load_metrics([run_dir], missing="skip")
        target.mkdir(parents=True, exist_ok=True)
        writer = summary_writer(target)
        try:
            s = summary(records, iterations=True)
            for key, step, value in zip(s["key"], s["step"], s["value"]):
                writer.add_scalar(key, value, int(step))
            for name, step, value in _step_metrics(metrics, records):
                writer.add_scalar(f"{METRICS_PREFIX}/{name}", value, int(step))
            charts = layout(s["key"].unique())
            if charts:
                writer.add_custom_scalars(charts)
            writer.add_text("config", "```toml\n" + RunDirectory(run_dir).config_path.read_text() + "\n```")
        finally:
            writer.close()
    return targets


def _step_metrics(metrics: pd.DataFrame, records: pd.DataFrame):
    """(name, step, value) of metrics.parquet, or of the records' per-step loss and lr where a run has no
    metrics.parquet (a run directory that `gradlab.watch(run_dir=...)` made in a user's own loop)."""
    if metrics.empty:
        rows = records[(records["layer"] == "").to_numpy() & records["quantity"].isin(RECORDED_STEP_METRICS).to_numpy()
                       & (records["status"] == "ok").to_numpy()]
        metrics = pd.DataFrame({"name": rows["quantity"].astype(str), "step": rows["step"], "value": rows["value"]})
    keep = metrics["value"].notna().to_numpy()
    return zip(metrics["name"][keep], metrics["step"][keep], metrics["value"][keep])
