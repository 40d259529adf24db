"""Ablation panel: each metric (decades of decay, mIoU, ...) vs a setting such as T_train, one line per method,
with confidence-interval error bars."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gradlab.plots.common import (
    AXIS_LABELS,
    GREY,
    METRIC_LABELS,
    PlotInputError,
    figure_legend,
    figure_title,
    hue_groups,
    hue_label,
    new_figure,
    palette,
    require_columns,
    require_rows,
    select,
    styled,
)

LOG_AXIS_METRICS = {"retention"}  # drawn on a log axis
DODGE = 0.12  # groups' points side by side, as a fraction of the smallest x spacing (numbers) or of one slot
MAX_TICKS = 8  # numeric x with more values than this (training steps) gets matplotlib's ticks, not one per value


@styled
def ablation_panel(summary: pd.DataFrame, *, metrics: Sequence[str] = ("decades", "miou"),
                   hue: str = "model.kind", x: str = "model.iterations", title: str | None = None) -> Figure:
    """One panel per metric: `estimate` vs `x` per `hue` group, error bars from `ci_low` to `ci_high`; `title`
    replaces "Ablation over x: ...".

    `summary` is long: one row per (metric, x, hue) with columns metric, estimate, ci_low, ci_high, the `x`
    column and the `hue` column (a NaN bound draws no bar). Numeric x keeps its spacing; anything else is
    placed in sorted order.
    """
    what = "ablation_panel(summary)"
    require_columns(summary, ["metric", "estimate", "ci_low", "ci_high", x, hue], what)
    require_rows(summary, what)
    summary, groups = hue_groups(summary, hue)
    colors, labels = palette(groups, hue), {g: hue_label(hue, g) for g in groups}
    fig, axes = new_figure(1, len(metrics), width=4.4)
    for ax, metric in zip(axes[0], metrics):
        rows = _checked(select(summary, "metric", metric, what), metric)
        _panel(ax, rows, x, hue, groups, colors, labels)
        ax.set(xlabel=AXIS_LABELS.get(x, x), ylabel=METRIC_LABELS.get(metric, metric))
    figure_legend(fig, axes[0, 0].get_legend_handles_labels()[0], hue)
    figure_title(fig, title or f"Ablation over {x}: estimates with confidence intervals")
    return fig


def _checked(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Float columns, and every interval around its estimate (ci_low ≤ estimate ≤ ci_high)."""
    rows = rows.astype({"estimate": float, "ci_low": float, "ci_high": float})
    bad = (rows["ci_low"] > rows["estimate"]) | (rows["ci_high"] < rows["estimate"])
    if bad.any():
        raise PlotInputError(f"ablation_panel(summary): metric {metric!r} has {int(bad.sum())} row(s) with "
                             "ci_low > estimate or ci_high < estimate; the interval must contain the estimate")
    return rows


def _panel(ax: Axes, rows: pd.DataFrame, x: str, hue: str, groups: list, colors: dict, labels: dict) -> None:
    positions, spacing = _positions(rows[x])
    present = [g for g in groups if (rows[hue] == g).any()]
    for i, group in enumerate(present):
        part = rows[rows[hue] == group].sort_values(x)
        offset = (i - (len(present) - 1) / 2) * DODGE * spacing
        xs = part[x].map(positions).to_numpy(dtype=float) + offset
        yerr = np.vstack([part["estimate"] - part["ci_low"], part["ci_high"] - part["estimate"]])
        ax.errorbar(xs, part["estimate"], yerr=np.nan_to_num(yerr), marker="o", markersize=5, capsize=3,
                    color=colors[group], label=labels[group])
    if len(positions) <= MAX_TICKS or not pd.api.types.is_numeric_dtype(rows[x]):  # else matplotlib's own ticks
        ax.set_xticks(list(positions.values()), [str(v) for v in positions])
    if rows["metric"].iloc[0] in LOG_AXIS_METRICS:
        ax.set_yscale("log")
    elif rows["metric"].iloc[0] == "decades":
        ax.axhline(0.0, color=GREY, linewidth=0.8)


def _positions(values: pd.Series) -> tuple[dict, float]:
    """x value → position (numbers map to themselves, anything else to 0, 1, 2, ... in sorted order) and the
    smallest spacing between positions."""
    if pd.api.types.is_numeric_dtype(values):
        unique = sorted(values.unique())
        gaps = np.diff(np.asarray(unique, dtype=float))
        return {v: float(v) for v in unique}, float(gaps.min()) if len(gaps) else 1.0
    return {v: float(i) for i, v in enumerate(sorted(values.unique(), key=str))}, 1.0
