"""Gradients of 1e-40 and exact zeros go through every metric, plot and the report without an error or a
warning flood (issue 5): the records of a real run are rescaled to that range and fed to all of them."""

from __future__ import annotations

import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import gradlab
from gradlab import analysis, plots
from gradlab.records import SCHEMA
from gradlab.report import build_report
from tests.report.runs import copy_run, tiny_runs


def tiny_run(tmp_path_factory, tmp_path):
    run = copy_run(tiny_runs(tmp_path_factory)["hem"], tmp_path / "tiny")
    frame = gradlab.load_records(run)
    grads = frame.quantity.str.startswith("grad/") & frame.iteration.notna()
    t = frame.loc[grads, "iteration"].astype(float).to_numpy()
    frame.loc[grads, "value"] = 10.0 ** (-40 + 3 * t)  # 1e-40 at t = 0 up to 1e-31
    frame.loc[grads & (frame.step == 2) & (frame.iteration == 1), "value"] = 0.0  # an exact zero
    for part in (run / "records").glob("*.parquet"):
        part.unlink()
    pq.write_table(pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False),
                   run / "records" / "part-r000-000000.parquet")
    return run


def test_tiny_and_zero_gradients_pass_everything(tmp_path_factory, tmp_path):
    run = tiny_run(tmp_path_factory, tmp_path)
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="raise"):
        warnings.simplefilter("always")
        records = analysis.load_runs([run])
        decay = analysis.decay(records)
        analysis.flags(records)
        analysis.regime(records)
        for fig in (plots.decay_curves(records), plots.step_iteration_heatmap(records),
                    plots.retention_over_training(decay)):
            plots.save(fig, tmp_path / "fig.png")
        paths = build_report([run], tmp_path / "report")
    assert len(caught) <= 2, [str(w.message) for w in caught]
    x = decay[decay.quantity == "grad/x"]
    assert np.isclose(x[x.step == 0].decades.iloc[0], -6.0)  # g_1 = 1e-37, g_3 = 1e-31
    assert np.isneginf(x[x.step == 2].decades.iloc[0])  # the exact zero: −∞ decades, no crash
    assert x[x.step == 2].dead.iloc[0] and not x[x.step == 0].dead.iloc[0]
    assert paths.html.is_file() and "e-" in paths.markdown.read_text()
