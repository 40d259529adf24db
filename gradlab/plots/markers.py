"""Values an axis cannot show, drawn explicitly: exact zeros on a log axis ("0 (dead)"), missing gradients
("no gradient"), NaN/Inf. They get markers in strips at the bottom / top of the axis, shaded and without tick
labels, so they are never silently dropped and never read as a number."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import Formatter

GREY = "0.45"
STRIP = 0.12  # the share of the axis height each strip takes
SPECIAL = {  # kind: marker, height in axes coordinates, legend text
    "dead": ("v", 0.035, "0 (dead)"),
    "no_grad": ("X", 0.085, "no gradient"),
    "undefined": ("X", 0.085, "undefined (no gradient or NaN)"),
    "nonfinite": ("^", 0.94, "non-finite (NaN/Inf)"),
}


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
