from __future__ import annotations

import subprocess
import sys

import matplotlib as mpl
import numpy as np
import pytest
from matplotlib.figure import Figure

import gradlab.plots
from gradlab.plots import palette
from gradlab.plots.markers import mark_special, reserve_marker_strips
from gradlab.plots.style import CATEGORICAL, KIND_COLORS, THEME, hue_label, new_figure, quantity_label, styled


def test_em_and_hem_keep_their_colours_whatever_else_is_plotted():
    two, three = palette(["em", "hem"], "model.kind"), palette(["hem", "em", "none"], "model.kind")
    assert two == {k: three[k] for k in two} and two["em"] != two["hem"]
    assert palette(["hem"])["hem"] == KIND_COLORS["hem"]
    assert palette(["EM"])["EM"] == KIND_COLORS["em"]


def test_step_sizes_have_fixed_distinct_colours_and_eta_one_is_em():
    few, many = palette([0.5, 1.0], "model.step_size"), palette([0.1, 0.5, 1.0, 1.5], "model.step_size")
    assert few[0.5] == many[0.5] and mpl.colors.to_hex(many[1.0]) == KIND_COLORS["em"]
    assert len({mpl.colors.to_hex(c) for c in many.values()}) == 4


def test_runs_never_take_em_or_hem_colours_and_numbers_get_a_ramp():
    runs = palette([f"run{i}" for i in range(len(CATEGORICAL))], "run")
    assert not set(runs.values()) & {KIND_COLORS["em"], KIND_COLORS["hem"]}
    assert len(set(runs.values())) == len(runs)
    assert len(palette(list(range(20)), "run")) == 20
    ramp = palette([8, 1, 3], "model.iterations")
    assert list(ramp) == [1, 3, 8]


def test_labels():
    assert hue_label("model.kind", "hem") == "HEM" and hue_label("model.step_size", 0.5) == "η = 0.5"
    assert hue_label("run", "a") == "a" and quantity_label("grad/slots") == "‖∂L/∂slots‖"
    assert "partial" in quantity_label("grad/x")


def test_the_theme_applies_while_building_and_never_leaks():
    before = dict(mpl.rcParams)

    @styled
    def build() -> Figure:
        assert mpl.rcParams["axes.spines.top"] is THEME["axes.spines.top"]
        return new_figure()[0]

    assert isinstance(build(), Figure)
    assert dict(mpl.rcParams) == before


def test_special_markers_sit_at_the_axis_edges_whatever_the_limits():
    fig, axes = new_figure()
    ax = axes[0, 0]
    ax.set_yscale("log")
    ax.plot([1, 2, 3], [1e-9, 1e-3, 1.0])
    line = mark_special(ax, [1, 3], "dead", "red")
    assert line.get_gid() == "dead" and list(line.get_xdata()) == [1, 3]
    assert np.all(line.get_ydata() < 0.05)  # axes coordinates: the bottom strip
    assert mark_special(ax, [], "no_grad") is None
    low, high = ax.get_ylim()
    reserve_marker_strips([ax], bottom=True, top=False)
    assert ax.get_ylim()[0] < low and ax.get_ylim()[1] == pytest.approx(high)
    fig.canvas.draw()
    bottom = ax.get_ylim()[0]
    labelled = [t.get_position()[1] for t in ax.yaxis.get_majorticklabels() if t.get_text()]
    labelled = [y for y in labelled if y >= bottom]
    assert labelled and min(labelled) >= low * (1 - 1e-9)  # no tick label inside the marker strip
    assert [p.get_gid() for p in ax.patches] == ["strip"]


def test_importing_the_plots_without_a_display_uses_a_non_gui_backend():
    code = "import gradlab.plots, matplotlib; print(matplotlib.get_backend())"
    env = {"PATH": "", "HOME": "/tmp"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().lower() == "agg"


def test_public_names():
    assert set(gradlab.plots.__all__) == {
        "PlotInputError", "ablation_panel", "attention_maps", "decay_curves", "house_style",
        "objective_per_iteration", "palette", "retention_over_training", "save", "sigma_and_rho",
        "step_iteration_heatmap", "training_curves",
    }
    assert issubclass(gradlab.plots.PlotInputError, ValueError)
