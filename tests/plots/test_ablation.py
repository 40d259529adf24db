from __future__ import annotations

import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer

from gradlab.plots import ablation_panel
from gradlab.plots.common import KIND_COLORS
from tests.plots.synthetic import make_summary


def errorbars(ax):
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def test_one_panel_per_metric_one_errorbar_series_per_method():
    fig = ablation_panel(make_summary())
    decades, miou = fig.axes
    for ax in (decades, miou):
        em, hem = errorbars(ax)
        assert em.lines[0].get_color() == KIND_COLORS["em"] and hem.lines[0].get_color() == KIND_COLORS["hem"]
        assert len(em.lines[0].get_xdata()) == 6
        assert "T_{\\mathrm{train}}" in ax.get_xlabel()
    assert "log_{10} R" in decades.get_ylabel() and miou.get_ylabel() == "mIoU"
    em_x = errorbars(decades)[0].lines[0].get_xdata()
    hem_x = errorbars(decades)[1].lines[0].get_xdata()
    assert np.all(em_x < hem_x) and np.allclose((em_x + hem_x) / 2, [1, 2, 3, 4, 6, 8])  # dodged around T


def test_error_bars_span_ci_low_to_ci_high():
    summary = make_summary(Ts=(2,))
    fig = ablation_panel(summary, metrics=("miou",))
    (ax,) = fig.axes
    em = errorbars(ax)[0]
    (bar,) = em.lines[2]
    (segment,) = bar.get_segments()
    row = summary.query("metric == 'miou' and `model.kind` == 'em'").iloc[0]
    assert segment[:, 1] == pytest.approx([row.ci_low, row.ci_high])


def test_categorical_x_and_a_nan_interval():
    summary = make_summary(Ts=(2, 4)).assign(**{"model.iterations": lambda f: "T" + f["model.iterations"].astype(str)})
    summary.loc[0, "ci_low"] = np.nan
    fig = ablation_panel(summary)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["T2", "T4"]


def test_bad_summaries_raise():
    summary = make_summary()
    with pytest.raises(ValueError, match="missing column.*'ci_high'"):
        ablation_panel(summary.drop(columns="ci_high"))
    with pytest.raises(ValueError, match="metric='pixel_acc'.*decades"):
        ablation_panel(summary, metrics=("pixel_acc",))
    with pytest.raises(ValueError, match="missing column.*'model.step_size'"):
        ablation_panel(summary, x="model.step_size")
    bad = summary.copy()
    bad.loc[0, "ci_low"] = bad.loc[0, "estimate"] + 1
    with pytest.raises(ValueError, match="interval must contain the estimate"):
        ablation_panel(bad)
    with pytest.raises(ValueError, match="no rows"):
        ablation_panel(summary.iloc[:0])


def test_many_numeric_x_values_get_matplotlibs_ticks_and_a_title_can_be_given():
    """Learning curves (12 validations): one tick per value would overlap, so the axis keeps its own locator; up
    to MAX_TICKS values each gets its tick."""
    from gradlab.plots.ablation import MAX_TICKS

    many = make_summary(Ts=tuple(range(2000, 26000, 2000)))
    fig = ablation_panel(many, metrics=("miou",), title="Learning curves")
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] != [str(v) for v in range(2000, 26000, 2000)]
    assert fig.get_suptitle() == "Learning curves"
    few = ablation_panel(make_summary(Ts=tuple(range(1, MAX_TICKS + 1))), metrics=("miou",))
    assert [t.get_text() for t in few.axes[0].get_xticklabels()] == [str(v) for v in range(1, MAX_TICKS + 1)]
