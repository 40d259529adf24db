"""The plots draw what the real recorder writes (dtypes, null iterations, no_grad statuses)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import gradlab
from gradlab.layers import EMAUnit, HEMLayer
from gradlab.plots import decay_curves, objective_per_iteration, step_iteration_heatmap
from tests.plots.synthetic import artists, points


def recorded(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1),
                                EMAUnit(HEMLayer(8, bases=4, iterations=4, step_size=0.5, grad_iterations=2)),
                                torch.nn.Conv2d(8, 3, 1))
    with gradlab.watch(model, run_dir=tmp_path / "hem-k2") as rec:
        for step in range(3):
            x, y = torch.randn(2, 3, 6, 6), torch.randint(0, 3, (2, 6, 6))
            F.cross_entropy(model(x), y).backward()
            rec.step(step)
    return gradlab.load_records(tmp_path / "hem-k2")


def test_recorded_frames_plot_with_no_gradient_marked(tmp_path):
    records = recorded(tmp_path)
    fig = decay_curves(records)
    assert points(fig, "no_grad") == 2  # iterations 1 and 2 ran under no_grad
    assert len(artists(fig, "center")) == 1 and fig.axes[0].get_yscale() == "log"
    heat = step_iteration_heatmap(records)
    assert len(artists(heat, "no_grad")[0].get_paths()) == 3 * 2
    assert len(artists(objective_per_iteration(records), "center")[0].get_xdata()) == 5
