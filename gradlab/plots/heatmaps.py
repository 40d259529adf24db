"""Step × iteration heatmap of a gradient norm with a log colour scale: where in training and at which
unrolled iteration the gradient vanishes, dies or is absent."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import PatchCollection, QuadMesh
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter, MaxNLocator

from gradlab.plots.frames import Steps, categorize, records_for, select
from gradlab.plots.markers import SPECIAL
from gradlab.plots.style import new_figure, quantity_label, styled

CELLS = {  # how a cell that has no colour on the log scale is drawn
    "dead": {"facecolor": "black", "edgecolor": "0.75", "hatch": ".."},
    "no_grad": {"facecolor": "0.88", "edgecolor": "0.35", "hatch": "///"},
    "nonfinite": {"facecolor": "#d62728", "edgecolor": "0.2", "hatch": "xx"},
}


@styled
def step_iteration_heatmap(records: pd.DataFrame, layer: str | None = None, quantity: str = "grad/x", *,
                           run: str | None = None, steps: Steps = None, ncols: int = 3) -> Figure:
    """log-colour map of `quantity` over recorded steps (rows) × iterations t (columns), one panel per
    (run, layer), all on one colour scale. Exact zeros are black ("0 (dead)"), missing gradients hatched grey
    ("no gradient"), NaN/Inf hatched red; a cell with several rows (ranks) shows their geometric median."""
    rows = records_for(records, quantity, "step_iteration_heatmap(records)", layer=layer, steps=steps)
    if run is not None:
        rows = select(rows, "run", run, "step_iteration_heatmap(records)")
    panels = sorted(rows.groupby(["run", "layer"]).groups)
    cells = {key: _cells(rows[(rows["run"] == key[0]) & (rows["layer"] == key[1])]) for key in panels}
    norm = _norm(pd.concat(cells.values())["center"])
    nrows, ncols = math.ceil(len(panels) / ncols), min(ncols, len(panels))
    fig, axes = new_figure(nrows, ncols, width=3.6, height=3.4)
    kinds: set[str] = set()
    for ax, (name, lay) in zip(axes.flat, panels):
        mesh, drawn = _panel(ax, cells[name, lay], norm)
        kinds |= drawn
        ax.set_title(name if rows["layer"].nunique() == 1 else f"{name}\n{lay}", fontsize="medium")
    for ax in axes.flat[len(panels):]:
        ax.set_axis_off()
    fig.colorbar(mesh, ax=axes.ravel().tolist(), label=quantity_label(quantity), shrink=0.9)
    if kinds:
        fig.legend(handles=[Patch(label=SPECIAL[k][2], **CELLS[k]) for k in CELLS if k in kinds],
                   loc="outside lower center", ncols=len(kinds))
    where = f" — layer {rows['layer'].iloc[0]}" if rows["layer"].nunique() == 1 else ""
    fig.suptitle(f"{quantity} per training step and iteration (log colour){where}")
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


def _panel(ax: Axes, cells: pd.DataFrame, norm: LogNorm) -> tuple[QuadMesh, set[str]]:
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
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
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
