"""Gradient decay across iterations: decay curves, the step × iteration heatmap, retention over training, and
σ_t beside the measured ρ_t (MATH.md §9, from hand-built records with known medians)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import QuadMesh
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from gradlab.analysis import thresholds
from gradlab.plots import (
    PlotInputError,
    decay_curves,
    retention_over_training,
    sigma_and_rho,
    step_iteration_heatmap,
)
from gradlab.plots.common import KIND_COLORS
from tests.analysis.synthetic import jacobian_records, series
from tests.plots.synthetic import LAYER, artists, make_decay, make_records, points, render, suptitle

# --- decay curves

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


# --- the step × iteration heatmap

def meshes(fig):
    return artists(fig, "heatmap")


def test_one_log_coloured_panel_per_run_on_one_scale():
    fig = step_iteration_heatmap(make_records(seeds=(0, 1)))
    panels = meshes(fig)
    assert len(panels) == 4
    assert all(isinstance(m.norm, LogNorm) for m in panels)
    assert len({(m.norm.vmin, m.norm.vmax) for m in panels}) == 1
    assert [ax.get_title() for ax in fig.axes[:4]] == ["em-T4-s0", "em-T4-s1", "hem-T4-s0", "hem-T4-s1"]
    assert all(isinstance(m, QuadMesh) for m in panels)
    assert any(ax.get_label() == "<colorbar>" for ax in fig.axes)
    grid = panels[0].get_array()
    assert grid.shape == (10, 4)  # 10 recorded steps × 4 iterations


def test_dead_no_gradient_and_nonfinite_cells_are_patches_with_a_legend():
    fig = step_iteration_heatmap(make_records(dead=[0, 8, 16], no_grad_below=3, nonfinite=[4]))
    (dead,) = artists(fig, "dead")
    (no_grad,) = artists(fig, "no_grad")
    (nonfinite,) = artists(fig, "nonfinite")
    assert len(dead.get_paths()) == 3
    assert len(no_grad.get_paths()) == 20  # 10 steps × iterations 1, 2
    assert no_grad.get_hatch() == "///"
    assert len(nonfinite.get_paths()) == 1
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["0 (dead)", "no gradient", "non-finite (NaN/Inf)"]
    em, hem = meshes(fig)
    assert np.ma.count_masked(em.get_array()) == 3 and np.ma.count_masked(hem.get_array()) == 21


def test_filters_and_errors():
    records = make_records(layers=(LAYER, "aux.em"))
    assert len(meshes(step_iteration_heatmap(records))) == 4
    fig = step_iteration_heatmap(records, layer="aux.em", run="hem-T4-s0", quantity="grad/mu")
    (mesh,) = meshes(fig)
    assert mesh.get_array().shape == (10, 5)  # grad/mu: t = 0..4
    with pytest.raises(ValueError, match="layer='nope'.*aux.em"):
        step_iteration_heatmap(records, layer="nope")
    with pytest.raises(ValueError, match="missing column.*'layer'"):
        step_iteration_heatmap(records.drop(columns="layer"))


def test_all_no_gradient_draws_without_positive_values():
    fig = step_iteration_heatmap(make_records(kinds=("hem",), no_grad_below=99))
    assert len(artists(fig, "no_grad")[0].get_paths()) == 40
    fig.canvas.draw()

def test_a_single_run_heatmap_wraps_its_title_inside_the_figure():
    fig = step_iteration_heatmap(make_records(kinds=("em",)))
    renderer = render(fig)
    box = suptitle(fig).get_window_extent(renderer)
    assert "\n" in fig.get_suptitle() and 0 <= box.x0 and box.x1 <= fig.bbox.width


def test_the_tick_labels_of_a_thousand_iterations_do_not_run_together():
    records = make_records(kinds=("em",), T=1000, steps=range(0, 12, 4))
    records = records[records["quantity"] == "grad/x"].assign(value=lambda f: f["value"].clip(lower=1e-30))
    fig = step_iteration_heatmap(records)
    renderer = render(fig)
    ax = fig.axes[0]
    low, high = ax.get_xlim()
    shown = [t for t, x in zip(ax.get_xticklabels(), ax.get_xticks()) if t.get_text() and low <= x <= high]
    boxes = [t.get_window_extent(renderer) for t in shown]
    assert len(boxes) >= 3 and all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:]))


# --- retention over training

def test_a_line_per_run_and_a_bold_median_per_group():
    fig = retention_over_training(make_decay(), hue="model.kind")
    (ax,) = fig.axes
    runs, groups = artists(fig, "run"), artists(fig, "group")
    assert len(runs) == 4 and len(groups) == 2
    assert {line.get_color() for line in groups} == {KIND_COLORS["em"], KIND_COLORS["hem"]}
    assert ax.get_yscale() == "linear" and "log_{10} R" in ax.get_ylabel() and ax.get_xlabel() == "training step"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["EM", "HEM"]


def test_hue_run_draws_one_bold_line_per_run():
    fig = retention_over_training(make_decay(seeds=(0,)))
    assert len(artists(fig, "run")) == 2 and artists(fig, "group") == []
    assert all(line.get_linewidth() == 2.0 for line in artists(fig, "run"))


def test_minus_infinity_and_nan_are_marked_not_dropped():
    fig = retention_over_training(make_decay(dead=[20, 30], undefined=[50]), hue="model.kind")
    assert points(fig, "dead") == 2 and points(fig, "undefined") == 1
    gaps = [int(np.isnan(line.get_ydata()).sum()) for line in artists(fig, "run")]
    assert sorted(gaps) == [0, 0, 0, 3]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "0 (dead)" in labels and "undefined (no gradient or NaN)" in labels


def test_optional_columns_filters_and_errors():
    frame = make_decay()
    assert len(retention_over_training(frame.drop(columns=["layer", "quantity"])).axes) == 1
    two_layers = pd.concat([frame, frame.assign(layer="aux.em")])
    assert len(retention_over_training(two_layers).axes) == 2
    with pytest.raises(ValueError, match="quantity='grad/mu'"):
        retention_over_training(frame, quantity="grad/mu")
    with pytest.raises(ValueError, match="missing column.*'decades'"):
        retention_over_training(frame.drop(columns="decades"))
    with pytest.raises(ValueError, match="no rows"):
        retention_over_training(frame.iloc[:0])
    assert len(retention_over_training(frame, layer=LAYER, steps=(0, 50)).axes) == 1

def test_the_threshold_lines_are_read_from_the_thresholds_module(monkeypatch):
    monkeypatch.setattr(thresholds, "VANISHING_RETENTION", 1e-4)
    ax = retention_over_training(make_decay()).axes[0]
    assert sorted(line.get_ydata()[0] for line in ax.lines if line.get_linestyle() == "--") == [-4.0, 3.0]
    assert [t.get_text() for t in ax.texts] == ["vanishing (R < 1e−4)", "exploding (R > 1e3)"]


# --- σ_t and ρ_t

def test_figure_draws_both_lines_per_group_and_a_line_at_one():
    fig = sigma_and_rho(jacobian_records())
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and len(ax.get_lines()) == 3


def test_missing_jacobians_say_why():
    with pytest.raises(PlotInputError, match="jac/sigma_max"):
        sigma_and_rho(series([1.0, 2.0], "grad/mu", start=0))


def test_the_line_between_contraction_and_growth_is_the_exploding_factor(monkeypatch):
    monkeypatch.setattr(thresholds, "EXPLODING_RHO", 2.0)
    (dotted,) = [line for line in sigma_and_rho(jacobian_records()).axes[0].lines if line.get_linestyle() == ":"]
    assert list(dotted.get_ydata()) == [2.0, 2.0]
