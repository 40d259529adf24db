"""Gradient norm vs unrolled iteration on a log axis: how fast the gradient decays back through EM / HEM."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from gradlab.plots.frames import PlotInputError, Steps, records_for
from gradlab.plots.iteration_lines import iteration_figure, title
from gradlab.plots.style import quantity_label, styled

X_LABELS = {"iteration": "iteration t", "depth": "depth d = T − t (iterations before the output)"}


@styled
def decay_curves(records: pd.DataFrame, quantity: str = "grad/x", hue: str = "run", steps: Steps = None, *,
                 layer: str | None = None, x: str = "iteration", band: str | None = "quantile",
                 level: float = 0.95) -> Figure:
    """‖∂L/∂·^(t)‖ vs iteration t on a log axis, one panel per EM layer, one line per `hue` group (a run, or a
    config column such as "model.kind").

    The line is the median over the group's steps, runs and ranks (geometric: taken on log10); the band is the
    central `level` of the observations (band="quantile") or a bootstrap interval of the median ("bootstrap").
    Exact zeros ("0 (dead)") and missing gradients ("no gradient") are markers at the bottom of the axis.
    x="depth" aligns runs of different T at the output (d = T − t).
    """
    if x not in X_LABELS:
        raise PlotInputError(f"x={x!r} is invalid: x must be one of {list(X_LABELS)}")
    rows = records_for(records, quantity, "decay_curves(records)", layer=layer, steps=steps, extra=[hue])
    if x == "depth":
        rows = rows.assign(depth=rows.groupby(["run", "layer"])["iteration"].transform("max") - rows["iteration"])
    fig, axes = iteration_figure(rows, hue, x, log=True, band=band, level=level)
    for ax in axes[0]:
        ax.set_xlabel(X_LABELS[x])
        if x == "depth":
            ax.invert_xaxis()  # the output (d = 0) on the right, as on the iteration axis
    axes[0, 0].set_ylabel(quantity_label(quantity))
    fig.suptitle(title(f"Gradient reaching each iteration ({quantity})", rows, band, level))
    return fig

