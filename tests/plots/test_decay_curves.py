from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from gradlab.plots import PlotInputError, decay_curves
from gradlab.plots.style import KIND_COLORS
from tests.plots.synthetic import LAYER, artists, make_records, points


def test_one_median_line_and_band_per_group_on_a_log_axis():
    fig = decay_curves(make_records(seeds=(0, 1)), hue="model.kind")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    lines = artists(fig, "center")
    assert [line.get_label() for line in lines] == ["EM", "HEM"]
    assert [line.get_color() for line in lines] == [KIND_COLORS["em"], KIND_COLORS["hem"]]
    assert len(artists(fig, "band")) == 2
    assert list(lines[0].get_xdata()) == [1, 2, 3, 4]
    assert "∂" in ax.get_ylabel() or "partial" in ax.get_ylabel()
    assert ax.get_xlabel() == "iteration t"


def test_median_is_geometric_and_ignores_no_gradient_rows():
    records = make_records(kinds=("em",), steps=[0, 1, 2])
    x = records["quantity"] == "grad/x"
    records.loc[x & (records["iteration"] == 2), "value"] = [1e-8, 1e-4, 1.0]
    fig = decay_curves(records, band=None)
    (line,) = artists(fig, "center")
    assert line.get_ydata()[1] == pytest.approx(1e-4)
    assert artists(fig, "band") == []


def test_exact_zeros_are_drawn_as_dead_markers_not_dropped():
    fig = decay_curves(make_records(dead=[0, 8]), hue="model.kind")
    dead = artists(fig, "dead")
    assert len(dead) == 1 and len(dead[0].get_xdata()) == 1  # EM, iteration 1
    assert dead[0].get_xdata()[0] == pytest.approx(1, abs=0.2)
    assert "0 (dead)" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_a_mostly_dead_iteration_has_no_median_point_but_a_marker():
    fig = decay_curves(make_records(kinds=("em",), dead=range(0, 40, 4)))
    (line,) = artists(fig, "center")
    assert np.isnan(line.get_ydata()[0]) and points(fig, "dead") == 1


def test_no_gradient_and_nonfinite_are_drawn_with_their_own_markers():
    fig = decay_curves(make_records(no_grad_below=3, nonfinite=[4]), hue="model.kind")
    assert points(fig, "no_grad") == 2  # HEM, iterations 1 and 2
    assert points(fig, "nonfinite") == 1  # HEM, iteration 4
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"no gradient", "non-finite (NaN/Inf)"} <= set(labels)


def test_all_no_gradient_still_draws_a_log_axis():
    records = make_records(kinds=("hem",), no_grad_below=99)
    fig = decay_curves(records)
    assert fig.axes[0].get_yscale() == "log" and points(fig, "no_grad") == 4
    fig.canvas.draw()


def test_one_panel_per_layer_and_a_layer_filter():
    records = make_records(layers=(LAYER, "aux.em"))
    assert len(decay_curves(records).axes) == 2
    assert len(decay_curves(records, layer="aux.em").axes) == 1


def test_steps_window_and_depth_axis():
    records = make_records(steps=range(10))
    fig = decay_curves(records, steps=(2, 4), x="depth")
    assert "3 steps" in fig.get_suptitle()
    ax = fig.axes[0]
    assert ax.xaxis_inverted() and "depth" in ax.get_xlabel()
    assert sorted(artists(fig, "center")[0].get_xdata()) == [0, 1, 2, 3]


@pytest.mark.parametrize("column", ["value", "iteration", "quantity", "run"])
def test_missing_column_is_named(column):
    with pytest.raises(ValueError, match=f"missing column.*'{column}'"):
        decay_curves(make_records().drop(columns=column))


def test_missing_hue_column_and_empty_frame_and_unknown_quantity():
    records = make_records()
    with pytest.raises(PlotInputError, match="'model.step_size'"):
        decay_curves(records, hue="model.step_size")
    with pytest.raises(ValueError, match="no rows"):
        decay_curves(records.iloc[:0])
    with pytest.raises(ValueError, match="quantity='grad/nope'.*grad/x"):
        decay_curves(records, quantity="grad/nope")
    with pytest.raises(ValueError, match="steps="):
        decay_curves(records, steps=(1000, 2000))


def test_negative_norms_and_bad_arguments_raise():
    records = make_records()
    records.loc[records["quantity"] == "grad/x", "value"] *= -1
    with pytest.raises(ValueError, match="negative"):
        decay_curves(records)
    with pytest.raises(ValueError, match="band="):
        decay_curves(make_records(), band="ci")
    with pytest.raises(ValueError, match="x="):
        decay_curves(make_records(), x="step")


def test_groups_are_in_sorted_order_whatever_the_row_order():
    records = make_records(kinds=("hem", "em"))
    assert [line.get_label() for line in artists(decay_curves(records, hue="model.kind"), "center")] == ["EM", "HEM"]


def test_bootstrap_band_is_reproducible_and_inside_the_quantile_band():
    records = make_records(seeds=(0, 1, 2))
    boot = [decay_curves(records, band="bootstrap") for _ in range(2)]
    paths = [artists(fig, "band")[0].get_paths()[0].vertices for fig in boot]
    np.testing.assert_array_equal(paths[0], paths[1])
    wide = artists(decay_curves(records, band="quantile"), "band")[0].get_paths()[0].vertices
    assert np.ptp(np.log10(paths[0][:, 1])) < np.ptp(np.log10(wide[:, 1]))
