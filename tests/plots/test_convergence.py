from __future__ import annotations

import numpy as np
import pytest

from gradlab.plots import objective_per_iteration, training_curves
from tests.plots.synthetic import artists, make_metrics, make_records, points


def test_objective_per_iteration_runs_from_t0_to_T_on_a_linear_axis():
    fig = objective_per_iteration(make_records(seeds=(0, 1)), hue="model.kind")
    (ax,) = fig.axes
    em, hem = artists(fig, "center")
    assert list(em.get_xdata()) == [0, 1, 2, 3, 4]
    assert ax.get_yscale() == "linear" and "ell" in ax.get_ylabel()
    assert np.all(np.diff(em.get_ydata()) > 0)  # the synthetic objective climbs
    assert len(artists(fig, "band")) == 2


def test_relative_objective_starts_at_zero():
    fig = objective_per_iteration(make_records(), relative=True, band=None)
    for line in artists(fig, "center"):
        assert line.get_ydata()[0] == 0.0
    assert "- \\ell(\\mu^{(0)})" in fig.axes[0].get_ylabel()


def test_objective_needs_loglik_rows():
    records = make_records()
    with pytest.raises(ValueError, match="quantity='loglik'"):
        objective_per_iteration(records[records["quantity"] != "loglik"])


def test_training_curves_one_panel_per_metric_one_line_per_run():
    metrics = make_metrics()
    fig = training_curves(metrics)
    loss, miou = fig.axes
    assert len(artists(fig, "raw")) == 4
    assert loss.get_ylabel() == "training loss" and miou.get_ylabel() == "mIoU"
    assert loss.get_xlabel() == "training step"
    assert len(miou.lines[0].get_xdata()) == 4  # validations every 50 of 200 steps


def test_training_curves_smooth_only_long_series_and_mark_nonfinite():
    metrics = make_metrics()
    metrics.loc[(metrics["name"] == "loss") & (metrics["step"] == 10), "value"] = np.nan
    fig = training_curves(metrics, smooth=9)
    assert len(artists(fig, "smooth")) == 2  # loss only: 4 mIoU points are never smoothed
    assert points(fig, "nonfinite") == 2


def test_training_curves_from_a_single_metrics_parquet_frame_and_errors():
    metrics = make_metrics(runs=("a",)).drop(columns="run")  # metrics.parquet has step, name, value
    fig = training_curves(metrics, names=("loss",))
    assert len(fig.axes) == 1
    with pytest.raises(ValueError, match="name='lr'.*loss"):
        training_curves(metrics, names=("lr",))
    with pytest.raises(ValueError, match="missing column.*'value'"):
        training_curves(metrics.drop(columns="value"))
    with pytest.raises(ValueError, match="must be a pandas DataFrame"):
        training_curves([1, 2, 3])


def test_training_curves_have_readable_titles_and_a_smoothed_line_over_faint_raw_values():
    fig = training_curves(make_metrics())
    loss, miou = fig.axes
    assert [loss.get_title(), miou.get_title()] == ["Training loss", "Validation mIoU"]
    assert len(artists(fig, "smooth")) == 2  # "auto": the 200 loss points, never the 4 mIoU points
    assert [line.get_alpha() < 0.5 for line in artists(fig, "raw")] == [True, True, False, False]
    assert "rolling median" in fig.get_suptitle()
    raw_only = training_curves(make_metrics(), smooth=None)
    assert artists(raw_only, "smooth") == [] and raw_only.get_suptitle() == "Training curves"
    with pytest.raises(ValueError, match="smooth='median' is invalid"):
        training_curves(make_metrics(), smooth="median")
