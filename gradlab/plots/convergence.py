"""Convergence: the EM objective ℓ(μ^(t)) over the unrolled iterations (forward), and loss / mIoU over
training steps (from metrics.parquet)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from gradlab.plots.common import (
    AXIS_LABELS,
    METRIC_LABELS,
    PlotInputError,
    Steps,
    figure_legend,
    figure_title,
    hue_groups,
    hue_label,
    metric_title,
    new_figure,
    palette,
    quantity_label,
    records_for,
    require_columns,
    require_rows,
    select,
    select_steps,
    styled,
)
from gradlab.plots.drawing import (
    iteration_figure,
    iteration_title,
    mark_special,
    reserve_marker_strips,
    special_handles,
)

LOG_AXIS_METRICS = {"loss", "grad_norm"}  # drawn on a log axis when every value is positive and they span 2 decades
AUTO_SMOOTH = 0.05  # smooth="auto": a rolling median over this share of a series' points (at least 5)


@styled
def objective_per_iteration(records: pd.DataFrame, *, layer: str | None = None, hue: str = "run",
                            steps: Steps = None, relative: bool = False, band: str | None = "quantile",
                            level: float = 0.95) -> Figure:
    """ℓ(μ^(t)) (quantity "loglik") vs iteration t = 0..T: the median over steps per `hue` group with a band.

    EM and HEM with 0 < η ≤ 1 never decrease it (MATH.md §3). relative=True plots ℓ^(t) − ℓ^(0) per step,
    so that steps whose features differ in scale line up.
    """
    rows = records_for(records, "loglik", "objective_per_iteration(records)", layer=layer, steps=steps,
                       extra=[hue])
    if relative:
        keys = [c for c in ("run", "rank", "step", "layer") if c in rows.columns]
        first = rows.sort_values("iteration").groupby(keys)["value"].transform("first")
        rows = rows.assign(value=rows["value"] - first)
    fig, axes = iteration_figure(rows, hue, "iteration", log=False, band=band, level=level)
    for ax in axes[0]:
        ax.set_xlabel("iteration t")
    axes[0, 0].set_ylabel(r"$\ell(\mu^{(t)}) - \ell(\mu^{(0)})$" if relative else quantity_label("loglik"))
    figure_title(fig, iteration_title("Forward convergence of the EM objective", rows, band, level))
    return fig


@styled
def training_curves(metrics: pd.DataFrame, *, names: Sequence[str] = ("loss", "miou"), hue: str = "run",
                    steps: Steps = None, smooth: int | str | None = "auto") -> Figure:
    """One panel per metric name: value vs training step, one line per run coloured by `hue`.

    `metrics` is tidy (step, name, value) as in metrics.parquet, plus `run` (a single run may leave it out)
    and the `hue` column. Series of at least 3k points get a bold rolling median over k logged points over
    their faint raw values, so that runs do not hide each other: smooth=k, "auto" (k = 5% of the points, at
    least 5) or None (raw lines only). NaN/Inf values are markers at the top of the axis.
    """
    what = "training_curves(metrics)"
    if smooth != "auto" and smooth is not None and not isinstance(smooth, int):
        raise PlotInputError(f"smooth={smooth!r} is invalid: give a number of points, 'auto' or None")
    if isinstance(metrics, pd.DataFrame) and "run" not in metrics.columns:
        metrics = metrics.assign(run="run")
    require_columns(metrics, ["step", "name", "value", "run", hue], what)
    require_rows(metrics, what)
    metrics, groups = hue_groups(select_steps(metrics, steps, what), hue)
    colors, labels = palette(groups, hue), {g: hue_label(hue, g) for g in groups}
    fig, axes = new_figure(1, len(names), width=4.4)
    kinds: set[str] = set()
    smoothed = False
    for ax, name in zip(axes[0], names):
        rows = select(metrics, "name", name, what).astype({"value": float})
        drawn, any_smoothed = _metric_panel(ax, rows, hue, colors, smooth)
        reserve_marker_strips([ax], bottom=False, top=bool(drawn))
        kinds, smoothed = kinds | drawn, smoothed or any_smoothed
        ax.set(xlabel=AXIS_LABELS["step"], ylabel=METRIC_LABELS.get(name, name), title=metric_title(name))
    handles = [Line2D([], [], color=colors[g], label=labels[g]) for g in groups] + special_handles(kinds)
    figure_legend(fig, handles, hue)
    figure_title(fig, "Training curves" + (f"\n{_smoothing_note(smooth)}" if smoothed else ""))
    return fig


def _smoothing_note(smooth: int | str) -> str:
    window = f"{smooth} points" if smooth != "auto" else f"{AUTO_SMOOTH:.0%} of each series' points"
    return f"bold: rolling median over {window}; faint: logged values"


def _smoothing_window(smooth: int | str | None, points: int) -> int | None:
    """The rolling-median window of a series of `points` values, or None when it is not smoothed (fewer than
    three windows of points: a few validation scores are never smoothed)."""
    window = max(5, round(AUTO_SMOOTH * points)) if smooth == "auto" else smooth
    return window if window and points >= 3 * window else None


def _metric_panel(ax: Axes, rows: pd.DataFrame, hue: str, colors: dict,
                  smooth: int | str | None) -> tuple[set[str], bool]:
    """Each run's series; returns the special kinds drawn and whether any series was smoothed."""
    values = rows.loc[np.isfinite(rows["value"]), "value"]
    if rows["name"].iloc[0] in LOG_AXIS_METRICS and (values > 0).all() and values.max() >= 100 * values.min():
        ax.set_yscale("log")
    kinds, smoothed = set(), False
    for (group, _), run in rows.groupby([hue, "run"], sort=False):
        run = run.sort_values("step")
        ok = np.isfinite(run["value"]).to_numpy()
        window = _smoothing_window(smooth, len(run))
        (line,) = ax.plot(run["step"], run["value"].where(ok), color=colors[group], markersize=3,
                          marker="o" if len(run) <= 40 else None, alpha=0.3 if window else 1.0,
                          linewidth=0.9 if window else 1.2)
        line.set_gid("raw")
        if window:
            rolled = run["value"].where(ok).rolling(window, min_periods=1, center=True).median()
            ax.plot(run["step"], rolled, color=colors[group], linewidth=2.0, gid="smooth")
            smoothed = True
        if mark_special(ax, run["step"].to_numpy()[~ok], "nonfinite", colors[group]) is not None:
            kinds.add("nonfinite")
    return kinds, smoothed
