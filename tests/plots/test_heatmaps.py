from __future__ import annotations

import numpy as np
import pytest
from matplotlib.collections import QuadMesh
from matplotlib.colors import LogNorm

from gradlab.plots import step_iteration_heatmap
from tests.plots.synthetic import LAYER, artists, make_records


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
