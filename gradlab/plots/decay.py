"""Gradient decay across the unrolled iterations (MATH.md §7, §9): the norm vs iteration t on a log axis, a
step × iteration heatmap of it, the decades of decay log10 R over training, and the mechanism σ_t beside ρ_t."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import PatchCollection, QuadMesh
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter, MaxNLocator

from gradlab.analysis import thresholds as th
from gradlab.analysis.mechanism import sigma_rho
from gradlab.plots.common import (
    GREY,
    METRIC_LABELS,
    REQUIRED_RECORD_COLUMNS,
    PlotInputError,
    Steps,
    categorize,
    figure_legend,
    figure_title,
    hue_groups,
    hue_label,
    layer_panels,
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
    SPECIAL,
    iteration_figure,
    iteration_title,
    mark_special,
    reserve_marker_strips,
    special_handles,
)

X_LABELS = {"iteration": "iteration t", "depth": "depth d = T − t (iterations before the output)"}
CELLS = {  # how a heatmap cell that has no colour on the log scale is drawn
    "dead": {"facecolor": "black", "edgecolor": "0.75", "hatch": ".."},
    "no_grad": {"facecolor": "0.88", "edgecolor": "0.35", "hatch": "///"},
    "nonfinite": {"facecolor": "#d62728", "edgecolor": "0.2", "hatch": "xx"},
}


# --- the norm vs iteration -------------------------------------------------------------------------------------

@styled
def decay_curves(records: pd.DataFrame, *, quantity: str = "grad/x", layer: str | None = None, hue: str = "run",
                 steps: Steps = None, x: str = "iteration", band: str | None = "quantile",
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
    figure_title(fig, iteration_title(f"Gradient reaching each iteration ({quantity})", rows, band, level))
    return fig


# --- the step × iteration heatmap ------------------------------------------------------------------------------

@styled
def step_iteration_heatmap(records: pd.DataFrame, *, quantity: str = "grad/x", layer: str | None = None,
                           run: str | None = None, steps: Steps = None, ncols: int = 3) -> Figure:
    """log-colour map of `quantity` over recorded steps (rows) × iterations t (columns), one panel per
    (run, layer), all on one colour scale. Exact zeros are black ("0 (dead)"), missing gradients hatched grey
    ("no gradient"), NaN/Inf hatched red; a cell with several rows (ranks) shows their geometric median."""
    what = "step_iteration_heatmap(records)"
    rows = records_for(records, quantity, what, layer=layer, steps=steps)
    if run is not None:
        rows = select(rows, "run", run, what)
    panels = sorted(rows.groupby(["run", "layer"]).groups)
    cells = {key: _cells(rows[(rows["run"] == key[0]) & (rows["layer"] == key[1])]) for key in panels}
    norm = _norm(pd.concat(cells.values())["center"])
    nrows, ncols = math.ceil(len(panels) / ncols), min(ncols, len(panels))
    fig, axes = new_figure(nrows, ncols, width=3.6, height=3.4)
    kinds: set[str] = set()
    for ax, (name, lay) in zip(axes.flat, panels):
        mesh, drawn = _heatmap_panel(ax, cells[name, lay], norm)
        kinds |= drawn
        ax.set_title(name if rows["layer"].nunique() == 1 else f"{name}\n{lay}", fontsize="medium")
    for ax in axes.flat[len(panels):]:
        ax.set_axis_off()
    fig.colorbar(mesh, ax=axes.ravel().tolist(), label=quantity_label(quantity), shrink=0.9)
    if kinds:
        fig.legend(handles=[Patch(label=SPECIAL[k][2], **CELLS[k]) for k in CELLS if k in kinds],
                   loc="outside lower center", ncols=len(kinds))
    where = f" — layer {rows['layer'].iloc[0]}" if rows["layer"].nunique() == 1 else ""
    figure_title(fig, f"{quantity} per training step and iteration (log colour){where}")
    return fig


def _cells(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (step, iteration): the geometric median of its rows (ranks) and what kind of cell it is.
    Vectorised: a long run has tens of thousands of cells."""
    category = categorize(rows, log=True).to_numpy()
    valued = np.isin(category, ["ok", "dead"])
    with np.errstate(divide="ignore"):
        logged = np.where(valued, np.log10(np.where(valued, rows["value"], 1.0)), np.nan)  # 0 → −inf
    cells = (pd.DataFrame({"step": rows["step"].to_numpy(), "x": rows["iteration"].to_numpy(), "log": logged,
                           "n": valued, "no_grad": category == "no_grad"})
             .groupby(["step", "x"], as_index=False)
             .agg(log=("log", "median"), n=("n", "sum"), no_grad=("no_grad", "sum")))
    kind = np.select([(cells["n"] == 0) & (cells["no_grad"] > 0), cells["n"] == 0, cells["log"] == -np.inf],
                     ["no_grad", "nonfinite", "dead"], "ok")
    return cells.assign(center=10.0 ** cells["log"], kind=kind,
                        row=cells["step"].rank(method="dense").astype(int) - 1)


def _norm(values: pd.Series) -> LogNorm:
    positive = values[(values > 0) & np.isfinite(values)]
    if positive.empty:
        return LogNorm(1e-3, 1.0)
    low, high = positive.min(), positive.max()
    return LogNorm(low, high) if high > low else LogNorm(low / 10, high * 10)


def _heatmap_panel(ax: Axes, cells: pd.DataFrame, norm: LogNorm) -> tuple[QuadMesh, set[str]]:
    iterations = np.arange(cells["x"].min(), cells["x"].max() + 1)
    grid = np.full((cells["row"].max() + 1, len(iterations)), np.nan)
    ok = cells[cells["kind"] == "ok"]
    grid[ok["row"].to_numpy(), (ok["x"] - iterations[0]).to_numpy()] = ok["center"].to_numpy()
    mesh = ax.pcolormesh(np.append(iterations, iterations[-1] + 1) - 0.5, np.arange(grid.shape[0] + 1) - 0.5,
                         np.ma.masked_invalid(grid), norm=norm, cmap="viridis")
    mesh.set_gid("heatmap")
    drawn = {kind for kind in CELLS if _special_cells(ax, cells[cells["kind"] == kind], kind)}
    steps = cells.drop_duplicates("row").set_index("row")["step"]
    ax.yaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: str(steps.get(int(v), "")) if v == int(v) else ""))
    ax.xaxis.set_major_locator(MaxNLocator(nbins="auto", integer=True))  # as many as fit: T = 1000 gets a few
    ax.set(xlabel="iteration t", ylabel="training step", xlim=(iterations[0] - 0.5, iterations[-1] + 0.5),
           ylim=(-0.5, grid.shape[0] - 0.5))
    ax.grid(False)
    return mesh, drawn


def _special_cells(ax: Axes, cells: pd.DataFrame, kind: str) -> PatchCollection | None:
    """Dead / no-gradient / NaN cells as one patch collection (gid `kind`, one patch per cell)."""
    if cells.empty:
        return None
    boxes = [Rectangle((x - 0.5, r - 0.5), 1, 1) for x, r in zip(cells["x"], cells["row"])]
    patches = PatchCollection(boxes, linewidth=0.3, **CELLS[kind])
    patches.set_gid(kind)
    ax.add_collection(patches)
    return patches


# --- decades of decay over training ----------------------------------------------------------------------------

@styled
def retention_over_training(decay_frame: pd.DataFrame, *, quantity: str = "grad/x", layer: str | None = None,
                            hue: str = "run", steps: Steps = None) -> Figure:
    """log10 R vs training step, one line per run (coloured by `hue`; with several runs per group a bold
    median over the group's runs), one panel per layer, dashed lines at the vanishing and exploding thresholds.
    Columns: run, step, decades, and optionally layer, quantity (filtered to `quantity` when present) and the
    `hue` column. −∞ (the first iteration got an exact 0) is marked "0 (dead)"; NaN (no gradient or NaN norms)
    is marked "undefined"."""
    p = layer_panels(_decay_rows(decay_frame, quantity, layer, hue, steps), hue)
    kinds: set[str] = set()
    for ax, name in zip(p.axes[0], p.layers):
        kinds |= _retention_panel(ax, p.rows[p.rows["layer"] == name], hue, p.colors)
        ax.set(title=f"layer {name}" if len(p.layers) > 1 else "", xlabel="training step")
    p.axes[0, 0].set_ylabel(METRIC_LABELS["decades"])
    reserve_marker_strips(p.axes[0], bottom=bool(kinds & {"dead", "undefined"}), top="nonfinite" in kinds)
    handles = [Line2D([], [], color=p.colors[g], label=p.labels[g]) for g in p.groups] + special_handles(kinds)
    figure_legend(p.fig, handles, hue)
    where = f" — layer {p.layers[0]}" if len(p.layers) == 1 and p.layers[0] else ""
    grouped = p.rows.groupby(hue)["run"].nunique().max() > 1
    note = "\nthin lines: runs; bold: median over the group's runs" if grouped else ""
    figure_title(p.fig, f"Gradient retention over training ({quantity}){where}{note}")
    return p.fig


def retention_limits() -> dict[float, str]:
    """The flag thresholds of MATH.md §7 in decades (read from gradlab.analysis.thresholds when drawn)."""
    vanishing, exploding = th.VANISHING_RETENTION, th.EXPLODING_RETENTION
    return {math.log10(vanishing): f"vanishing (R < {_power_of_ten(vanishing)})",
            math.log10(exploding): f"exploding (R > {_power_of_ten(exploding)})"}


def _power_of_ten(value: float) -> str:
    """1e−3 for 0.001, 1e3 for 1000; other values in three significant digits."""
    exponent = math.log10(value)
    return f"1e{round(exponent)}".replace("-", "−") if exponent == round(exponent) else f"{value:.3g}"


def _decay_rows(frame: pd.DataFrame, quantity: str, layer: str | None, hue: str, steps: Steps) -> pd.DataFrame:
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


def _retention_panel(ax: Axes, rows: pd.DataFrame, hue: str, colors: dict) -> set[str]:
    for value, label in retention_limits().items():
        ax.axhline(value, color=GREY, linestyle="--", linewidth=0.8)
        ax.annotate(label, (0.01, value), xycoords=("axes fraction", "data"), fontsize="x-small", color=GREY,
                    va="bottom")
    ax.axhline(0.0, color=GREY, linewidth=0.8)
    kinds: set[str] = set()
    for group, part in rows.groupby(hue, sort=False):
        runs = part.groupby("run")
        for _, run in runs:
            kinds |= _retention_line(ax, run, colors[group], bold=runs.ngroups == 1, gid="run")
        if runs.ngroups > 1:
            _retention_line(ax, part, colors[group], bold=True, gid="group", marks=False)
    return kinds


def _retention_line(ax: Axes, rows: pd.DataFrame, color: object, *, bold: bool, gid: str,
                    marks: bool = True) -> set[str]:
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


# --- the mechanism: σ_t beside ρ_t -----------------------------------------------------------------------------

@styled
def sigma_and_rho(records: pd.DataFrame, *, hue: str = "run") -> Figure:
    """σ_t (solid) and ρ_t (dashed) against iteration t on a log axis, one panel per EM layer, one colour per
    `hue` group; the dotted line at EXPLODING_RHO (1) separates contraction from growth."""
    require_columns(records, [*REQUIRED_RECORD_COLUMNS, "status", hue], "sigma_and_rho(records)")
    per_iteration = sigma_rho(records, by=hue)
    if per_iteration.empty:
        raise PlotInputError("sigma_and_rho(records): no jac/sigma_max rows (record.jacobian_every = 0, or no "
                             "recorded step was a multiple of it)")
    frame, groups = hue_groups(per_iteration, hue)
    colors = palette(groups, hue)
    layers = sorted(frame["layer"].unique())
    fig, axes = new_figure(1, len(layers), width=4.8)
    for ax, layer in zip(axes[0], layers):
        for group in groups:
            g = frame[(frame["layer"] == layer) & (frame[hue] == group)]
            ax.plot(g["iteration"], g["sigma"], color=colors[group], marker="o", markersize=3)
            ax.plot(g["iteration"], g["rho"], color=colors[group], marker="s", markersize=3, linestyle="--")
        ax.axhline(th.EXPLODING_RHO, color="0.4", linestyle=":", linewidth=1)
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="iteration t", title=f"layer {layer}" if len(layers) > 1 else "")
    axes[0, 0].set_ylabel(r"$\sigma_t = \|J_t\|_2$ (solid),  $\rho_t$ (dashed)")
    handles = [Line2D([], [], color=colors[g], label=hue_label(hue, g)) for g in groups]
    handles += [Line2D([], [], color="0.3", marker="o", label="σ_t (max over images)"),
                Line2D([], [], color="0.3", marker="s", linestyle="--", label="ρ_t (measured, t < T)")]
    figure_legend(fig, handles, hue)
    figure_title(fig, "State Jacobians: the bound σ_t and the measured factor ρ_t (medians over Jacobian steps)")
    return fig
