"""Decades of decay (log10 retention, MATH.md §7) over training: does the gradient vanish more as training
goes on, and does the highway keep it alive?"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from gradlab.plots.frames import Steps, require_columns, require_rows, select, select_steps
from gradlab.plots.markers import GREY, mark_special, reserve_marker_strips, special_handles
from gradlab.plots.panels import layer_panels
from gradlab.plots.style import METRIC_LABELS, figure_legend, styled

LIMITS = {-3.0: "vanishing (R < 1e−3)", 3.0: "exploding (R > 1e3)"}  # MATH.md §7 flags


@styled
def retention_over_training(decay_frame: pd.DataFrame, hue: str = "run", *, quantity: str = "grad/x",
                            layer: str | None = None, steps: Steps = None) -> Figure:
    """log10 R vs training step, one line per run (coloured by `hue`; with several runs per group a bold
    median over the group's runs), one panel per layer. Columns: run, step, decades, and optionally layer,
    quantity (filtered to `quantity` when present) and the `hue` column. −∞ (the first iteration got an exact
    0) is marked "0 (dead)"; NaN (no gradient or NaN norms) is marked "undefined"."""
    rows = _rows(decay_frame, hue, quantity, layer, steps)
    p = layer_panels(rows, hue)
    rows, groups, colors, labels, layers, fig, axes = p.rows, p.groups, p.colors, p.labels, p.layers, p.fig, p.axes
    kinds: set[str] = set()
    for ax, name in zip(axes[0], layers):
        kinds |= _panel(ax, rows[rows["layer"] == name], hue, colors)
        ax.set(title=f"layer {name}" if len(layers) > 1 else "", xlabel="training step")
    axes[0, 0].set_ylabel(METRIC_LABELS["decades"])
    reserve_marker_strips(axes[0], bottom=bool(kinds & {"dead", "undefined"}), top="nonfinite" in kinds)
    handles = [Line2D([], [], color=colors[g], label=labels[g]) for g in groups] + special_handles(kinds)
    figure_legend(fig, handles, hue)
    where = f" — layer {layers[0]}" if len(layers) == 1 and layers[0] else ""
    grouped = rows.groupby(hue)["run"].nunique().max() > 1
    note = "\nthin lines: runs; bold: median over the group's runs" if grouped else ""
    fig.suptitle(f"Gradient retention over training ({quantity}){where}{note}")
    return fig


def _rows(frame: pd.DataFrame, hue: str, quantity: str, layer: str | None, steps: Steps) -> pd.DataFrame:
    what = "retention_over_training(decay_frame)"
    require_columns(frame, ["run", "step", "decades", hue], what)
    require_rows(frame, what)
    if "quantity" in frame.columns:
        frame = select(frame, "quantity", quantity, what)
    if layer is not None:
        require_columns(frame, ["layer"], what)
        frame = select(frame, "layer", layer, what)
    frame = select_steps(frame, steps, what)
    return frame.assign(layer=frame["layer"] if "layer" in frame.columns else "",
                        decades=pd.to_numeric(frame["decades"]).astype(float))


def _panel(ax: Axes, rows: pd.DataFrame, hue: str, colors: dict) -> set[str]:
    for value, label in LIMITS.items():
        ax.axhline(value, color=GREY, linestyle="--", linewidth=0.8)
        ax.annotate(label, (0.01, value), xycoords=("axes fraction", "data"), fontsize="x-small", color=GREY,
                    va="bottom")
    ax.axhline(0.0, color=GREY, linewidth=0.8)
    kinds: set[str] = set()
    for group, part in rows.groupby(hue, sort=False):
        runs = part.groupby("run")
        for _, run in runs:
            kinds |= _line(ax, run, colors[group], bold=runs.ngroups == 1, gid="run")
        if runs.ngroups > 1:
            _line(ax, part, colors[group], bold=True, gid="group", marks=False)
    return kinds


def _line(ax: Axes, rows: pd.DataFrame, color: object, *, bold: bool, gid: str, marks: bool = True) -> set[str]:
    """One series: the median decades per step (over ranks, or over a group's runs) and, with `marks`, a
    marker for every step whose value is −∞, NaN or +∞ (so one run's dead step is never hidden)."""
    per_step = rows.groupby("step")["decades"].median().sort_index()  # −∞ and +∞ survive a median of few
    step, decades = per_step.index.to_numpy(dtype=float), per_step.to_numpy()
    finite = np.isfinite(decades)
    (line,) = ax.plot(step, np.where(finite, decades, np.nan), color=color, alpha=1.0 if bold else 0.35,
                      linewidth=2.0 if bold else 1.0, marker="o" if bold and len(step) < 40 else None, markersize=3)
    line.set_gid(gid)
    if not marks:
        return set()
    special = {"dead": decades == -np.inf, "undefined": np.isnan(decades), "nonfinite": decades == np.inf}
    return {kind for kind, where in special.items() if mark_special(ax, step[where], kind, color) is not None}
