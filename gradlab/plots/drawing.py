"""How the figures draw what they share: values an axis cannot show, and a quantity vs unrolled iteration.

Exact zeros on a log axis ("0 (dead)"), missing gradients ("no gradient") and NaN/Inf get markers in strips at
the bottom / top of the axis, shaded and without tick labels, so they are never silently dropped and never read
as a number. A quantity vs iteration t is one panel per EM layer with, per group, a centre line and a band over
its steps, layers and runs: on log axes the centre is the median of log10 values (a geometric median) and the
band is computed on log10 values too; exact zeros enter as −∞ (a median of −∞ means most observations are dead).
Missing gradients and NaN/Inf are not values: they are counted, never averaged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import Formatter, MaxNLocator

from gradlab.analysis.intervals import bootstrap_ci
from gradlab.plots.common import GREY, PlotInputError, categorize, figure_legend, layer_panels

STRIP = 0.12  # the share of the axis height each strip takes
SPECIAL = {  # kind: marker, height in axes coordinates, legend text
    "dead": ("v", 0.035, "0 (dead)"),
    "no_grad": ("X", 0.085, "no gradient"),
    "undefined": ("X", 0.085, "undefined (no gradient or NaN)"),
    "nonfinite": ("^", 0.94, "non-finite (NaN/Inf)"),
}
BANDS = ("quantile", "bootstrap", None)
BAND_NAMES = {"quantile": "central {:.0%} of observations", "bootstrap": "{:.0%} bootstrap CI of the median",
              None: "none"}
SUMMARY_COLUMNS = ["group", "x", "center", "low", "high", "n", "dead", "no_grad", "nonfinite"]
DODGE = 0.08  # x offset between groups' special markers, so markers at one iteration do not hide each other


# --- values an axis cannot show --------------------------------------------------------------------------------

def mark_special(ax: Axes, x: Sequence[float], kind: str, color: object = GREY) -> Line2D | None:
    """One marker per x for a value the axis cannot show (a kind of SPECIAL), at a fixed height in axes
    coordinates so it is visible whatever the y limits. The artist's gid is `kind`; None when x is empty."""
    if len(x) == 0:
        return None
    marker, height, _ = SPECIAL[kind]
    (line,) = ax.plot(np.asarray(x, dtype=float), np.full(len(x), height), linestyle="none", marker=marker,
                      markersize=7, color=color, markeredgecolor="white", markeredgewidth=0.6,
                      transform=ax.get_xaxis_transform(), clip_on=False, zorder=4, label="_nolegend_")
    line.set_gid(kind)
    return line


def special_handles(kinds: Sequence[str] | set[str]) -> list[Line2D]:
    """Grey legend entries ("0 (dead)", "no gradient", ...) for the kinds that were drawn, in a fixed order."""
    return [Line2D([], [], linestyle="none", marker=SPECIAL[k][0], markersize=7, color=GREY, label=SPECIAL[k][2])
            for k in SPECIAL if k in kinds]


def finish_log_axis(ax: Axes, has_positive: bool) -> None:
    """Log y axis that never fails: with no positive value to show, fixed limits instead of a warning."""
    ax.set_yscale("log")
    if not has_positive:
        ax.set_ylim(1e-3, 1.0)


def reserve_marker_strips(axes: Sequence[Axes], *, bottom: bool, top: bool) -> None:
    """Widen the y limits of `axes` (panels sharing y, or one axis) so the special markers get strips of their
    own: shaded, without tick labels, never covering data."""
    if not (bottom or top):
        return
    log = axes[0].get_yscale() == "log"
    low, high = np.log10(axes[0].get_ylim()) if log else axes[0].get_ylim()
    pad = STRIP * (high - low) / (1 - STRIP * (bottom + top))
    to_data = (lambda v: 10.0 ** v) if log else (lambda v: v)
    limits = to_data(low - pad * bottom), to_data(high + pad * top)
    for ax in axes:
        ax.set_ylim(*limits)
        for y0, on in ((0.0, bottom), (1 - STRIP, top)):
            if on:
                ax.add_patch(Rectangle((0, y0), 1, STRIP, transform=ax.transAxes, facecolor="0.95",
                                       edgecolor="none", zorder=1, gid="strip"))
        for get, put in ((ax.yaxis.get_major_formatter, ax.yaxis.set_major_formatter),
                         (ax.yaxis.get_minor_formatter, ax.yaxis.set_minor_formatter)):
            if not isinstance(get(), _Inside):  # panels sharing y share their formatters
                put(_Inside(get(), to_data(low), to_data(high)))


class _Inside(Formatter):
    """Tick labels only between `low` and `high` (a tick inside a marker strip would read as a value)."""

    def __init__(self, inner: Formatter, low: float, high: float):
        self.inner = inner
        self.low, self.high = low - 1e-9 * abs(low), high + 1e-9 * abs(high)  # round-off at the edges

    def set_axis(self, axis) -> None:
        super().set_axis(axis)
        self.inner.set_axis(axis)

    def set_locs(self, locs) -> None:
        super().set_locs(locs)
        self.inner.set_locs(locs)

    def __call__(self, x: float, pos: int | None = None) -> str:
        return self.inner(x, pos) if self.low <= x <= self.high else ""

    def get_offset(self) -> str:
        return self.inner.get_offset()


# --- a quantity vs unrolled iteration --------------------------------------------------------------------------

def iteration_figure(rows: pd.DataFrame, hue: str, x: str, *, log: bool, band: str | None,
                     level: float) -> tuple[Figure, np.ndarray]:
    """Panels per layer (titled when there are several), shared y, a figure legend with the groups and the
    special markers drawn. The caller sets labels and the title."""
    p = layer_panels(rows, hue)
    special: set[str] = set()
    for ax, name in zip(p.axes[0], p.layers):
        if log:
            ax.set_yscale("log")
        summary = iteration_summary(p.rows[p.rows["layer"] == name], hue, x, log=log, band=band, level=level)
        special |= draw_summary(ax, summary, p.colors, p.labels)
        if log:
            finish_log_axis(ax, bool((summary[["center", "high"]] > 0).to_numpy().any()))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"layer {name}" if len(p.layers) > 1 else "", fontsize="medium")
    reserve_marker_strips(p.axes[0], bottom=bool(special & {"dead", "no_grad"}), top="nonfinite" in special)
    handles = [h for ax in p.axes[0] for h in ax.get_legend_handles_labels()[0]]
    unique = {h.get_label(): h for h in handles}  # a group drawn in several panels: one entry
    figure_legend(p.fig, [*unique.values(), *special_handles(special)], hue)
    return p.fig, p.axes


def iteration_title(what: str, rows: pd.DataFrame, band: str | None, level: float) -> str:
    """"what — layer L" over "median over S steps × R run(s); band: ..."."""
    layers = rows["layer"].unique()
    where = f" — layer {layers[0]}" if len(layers) == 1 else ""
    return (f"{what}{where}\nmedian over {rows['step'].nunique()} steps × {rows['run'].nunique()} run(s); "
            f"band: {BAND_NAMES[band].format(level)}")


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


def iteration_summary(frame: pd.DataFrame, by: str, x: str, *, log: bool, band: str | None = "quantile",
                      level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """One row per (group `by`, position `x`) with columns SUMMARY_COLUMNS (centre and band in data units).

    band="quantile": the central `level` interval of the observations (their spread over steps and runs);
    band="bootstrap": a `level` bootstrap interval of the median (`gradlab.analysis.bootstrap_ci`; steps are
    correlated: read it as a lower bound on the uncertainty); band=None: no band (low = high = centre).
    """
    if band not in BANDS:
        raise PlotInputError(f"band={band!r} is invalid: band must be one of {BANDS}")
    if not 0 < level < 1:
        raise PlotInputError(f"level={level!r} is invalid: level must be in (0, 1)")
    data = frame.assign(category=categorize(frame, log=log), group=frame[by])
    parts = data.groupby(["group", x], sort=False)
    rows = [_summary_row(g, xv, part, log, band, level, seed) for (g, xv), part in parts]
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS).sort_values("x", kind="stable", ignore_index=True)


def _summary_row(group: object, x: object, part: pd.DataFrame, log: bool, band: str | None, level: float,
                 seed: int) -> list:
    counts = part["category"].value_counts()
    values = part.loc[part["category"].isin(["ok", "dead"]), "value"].to_numpy(dtype=float)
    if log:
        with np.errstate(divide="ignore"):
            values = np.log10(values)  # an exact 0 becomes −inf
    center, low, high = _center_band(values, band, level, seed)
    if log:
        center, low, high = (10.0 ** v for v in (center, low, high))  # −inf → 0, NaN stays NaN
    return [group, x, center, low, high, len(values),
            counts.get("dead", 0), counts.get("no_grad", 0), counts.get("nonfinite", 0)]


def _center_band(values: np.ndarray, band: str | None, level: float, seed: int) -> tuple[float, float, float]:
    if len(values) == 0:
        return np.nan, np.nan, np.nan
    center = float(np.median(values))
    if band == "quantile":
        low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf")
    elif band == "bootstrap" and len(values) > 1:
        low, high = bootstrap_ci(values, seed=seed, level=level, stat="median")
    else:
        low = high = center
    return center, low, high
