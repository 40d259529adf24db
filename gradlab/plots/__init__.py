"""Plots of gradient flow through unrolled EM / HEM layers. Every function takes a plain tidy DataFrame (or
arrays, for attention maps) and returns a `matplotlib.figure.Figure`; `save(fig, "x.png" | ".svg" | ".pdf")`
writes it atomically."""

from gradlab.plots.ablation import ablation_panel
from gradlab.plots.attention import attention_maps
from gradlab.plots.convergence import objective_per_iteration, training_curves
from gradlab.plots.decay_curves import decay_curves
from gradlab.plots.frames import PlotInputError
from gradlab.plots.heatmaps import step_iteration_heatmap
from gradlab.plots.jacobian import sigma_and_rho
from gradlab.plots.retention import retention_over_training
from gradlab.plots.save import save
from gradlab.plots.style import house_style, palette

__all__ = [
    "PlotInputError", "ablation_panel", "attention_maps", "decay_curves", "house_style",
    "objective_per_iteration", "palette", "retention_over_training", "save", "sigma_and_rho",
    "step_iteration_heatmap", "training_curves",
]
