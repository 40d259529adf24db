"""Plots of gradient flow through unrolled EM / HEM layers. Every function takes a plain tidy DataFrame (or
arrays, for attention maps) as its only positional argument, everything else by keyword, and returns a
`matplotlib.figure.Figure`; `save(fig, "x.png" | ".svg" | ".pdf")` writes it atomically.

    common.py       house style, input-frame checks, one panel per layer, save
    drawing.py      markers for values an axis cannot show; a quantity vs iteration as median lines and bands
    decay.py        decay_curves, step_iteration_heatmap, retention_over_training, sigma_and_rho
    convergence.py  objective_per_iteration, training_curves
    ablation.py     ablation_panel
    attention.py    attention_maps
"""

from __future__ import annotations

from gradlab.plots.ablation import ablation_panel
from gradlab.plots.attention import attention_maps
from gradlab.plots.common import PlotInputError, house_style, palette, save
from gradlab.plots.convergence import objective_per_iteration, training_curves
from gradlab.plots.decay import decay_curves, retention_over_training, sigma_and_rho, step_iteration_heatmap

__all__ = [
    "PlotInputError", "ablation_panel", "attention_maps", "decay_curves", "house_style",
    "objective_per_iteration", "palette", "retention_over_training", "save", "sigma_and_rho",
    "step_iteration_heatmap", "training_curves",
]
