"""A quantity vs unrolled iteration: one panel per EM layer, per group a median line, a band, and markers for
observations the axis cannot show. Shared by `decay_curves` (log axis) and `objective_per_iteration`."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from gradlab.plots.markers import finish_log_axis, mark_special, reserve_marker_strips, special_handles
from gradlab.plots.panels import layer_panels
from gradlab.plots.style import figure_legend
from gradlab.plots.summary import summarize

BAND_NAMES = {"quantile": "central {:.0%} of observations", "bootstrap": "{:.0%} bootstrap CI of the median",
              None: "none"}
DODGE = 0.08  # x offset between groups' special markers, so markers at one iteration do not hide each other


def iteration_figure(rows: pd.DataFrame, hue: str, x: str, *, log: bool, band: str | None,
                     level: float) -> tuple[Figure, np.ndarray]:
    """Panels per layer (titled when there are several), shared y, a figure legend with the groups and the
    special markers drawn. The caller sets labels and the title."""
    p = layer_panels(rows, hue)
    rows, colors, labels, layers, fig, axes = p.rows, p.colors, p.labels, p.layers, p.fig, p.axes
    special: set[str] = set()
    for ax, name in zip(axes[0], layers):
        if log:
            ax.set_yscale("log")
        summary = summarize(rows[rows["layer"] == name], hue, x, log=log, band=band, level=level)
        special |= draw_summary(ax, summary, colors, labels)
        if log:
            finish_log_axis(ax, bool((summary[["center", "high"]] > 0).to_numpy().any()))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"layer {name}" if len(layers) > 1 else "", fontsize="medium")
    reserve_marker_strips(axes[0], bottom=bool(special & {"dead", "no_grad"}), top="nonfinite" in special)
    handles = [h for ax in axes[0] for h in ax.get_legend_handles_labels()[0]]
    unique = {h.get_label(): h for h in handles}  # a group drawn in several panels: one entry
    figure_legend(fig, [*unique.values(), *special_handles(special)], hue)
    return fig, axes


def draw_summary(ax: Axes, summary: pd.DataFrame, colors: dict, labels: dict) -> set[str]:
    """Per group, in the order of `colors`: the centre line (gid "center"), its band (gid "band"), and markers
    at every x where an observation was dead, had no gradient or was NaN/Inf. Returns the special kinds drawn."""
    drawn: set[str] = set()
    present = [g for g in colors if (summary["group"] == g).any()]
    for i, group in enumerate(present):
        rows, color = summary[summary["group"] == group], colors[group]
        x = rows["x"].to_numpy(dtype=float)
        center = rows["center"].to_numpy(dtype=float)
        shown = np.where(center > 0, center, np.nan) if ax.get_yscale() == "log" else center
        (line,) = ax.plot(x, shown, marker="o", markersize=4, color=color, label=labels[group])
        line.set_gid("center")
        if not np.allclose(rows["low"], rows["high"], equal_nan=True):
            band = ax.fill_between(x, rows["low"], rows["high"], color=color, alpha=0.2, linewidth=0)
            band.set_gid("band")
        offset = (i - (len(present) - 1) / 2) * DODGE
        for kind in ("dead", "no_grad", "nonfinite"):
            if mark_special(ax, x[rows[kind].to_numpy() > 0] + offset, kind, color) is not None:
                drawn.add(kind)
    return drawn


def title(what: str, rows: pd.DataFrame, band: str | None, level: float) -> str:
    """"what — layer L" over "median over S steps × R run(s); band: ..."."""
    layers = rows["layer"].unique()
    where = f" — layer {layers[0]}" if len(layers) == 1 else ""
    return (f"{what}{where}\nmedian over {rows['step'].nunique()} steps × {rows['run'].nunique()} run(s); "
            f"band: {BAND_NAMES[band].format(level)}")
