"""The house style: a small seaborn theme, fixed colours for EM / HEM / step sizes, axis labels, the figure
factory and its legend. (How values a log axis cannot show are drawn lives in `markers.py`.)

Figures are built with `matplotlib.figure.Figure` (no pyplot state, nothing to close); the theme is applied
with `rc_context` while a figure is built, so importing gradlab never changes the user's rcParams.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import ParamSpec, TypeVar

import matplotlib as mpl

if sys.platform.startswith("linux") and "matplotlib.pyplot" not in sys.modules and not (
        os.environ.get("MPLBACKEND") or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    mpl.use("Agg")  # headless: no display, no GUI backend to try (seaborn imports pyplot below)

import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

P = ParamSpec("P")
R = TypeVar("R")

THEME = {
    **sns.axes_style("ticks"),
    **sns.plotting_context("notebook", font_scale=0.85),
    "axes.grid": True, "grid.alpha": 0.35, "axes.spines.top": False, "axes.spines.right": False,
    "legend.frameon": False, "figure.dpi": 100, "savefig.dpi": 150, "image.cmap": "viridis",
    "figure.titlesize": "medium", "axes.titlesize": "medium", "legend.title_fontsize": "small",
    "svg.hashsalt": "gradlab",  # stable SVG ids: one figure saved twice gives the same file
}

_CB = sns.color_palette("colorblind").as_hex()
KIND_COLORS = {"em": _CB[0], "hem": _CB[3], "none": _CB[7]}  # EM blue, HEM vermillion, no EM layer grey
CATEGORICAL = [c for i, c in enumerate(_CB) if i not in (0, 3, 7)]  # runs etc.: never EM's or HEM's colour

QUANTITY_LABELS = {
    "grad/x": r"$\|\partial L/\partial X^{(t)}\|_F$",
    "grad/mu": r"$\|\partial L/\partial \mu^{(t)}\|_F$",
    "grad/z": r"$\|\partial L/\partial Z^{(t)}\|_F$",
    "loglik": r"objective $\ell(\mu^{(t)})$",
    "entropy": r"entropy of $Z^{(t)}$ (nats)",
    "shift": r"$\|\mu^{(t)} - \mu^{(t-1)}\|_F\ /\ B$",
    "similarity": r"mean cosine between bases of $\mu^{(t)}$",
}
METRIC_LABELS = {  # decay metrics (MATH.md §7) and scores, for summary / ablation frames
    "decades": r"decades of decay $\log_{10} R$,  $R = g_{\mathrm{first}}\,/\,g_{\mathrm{last}}$",
    "retention": r"retention $R = g_{\mathrm{first}}\,/\,g_{\mathrm{last}}$",
    "rho": r"per-iteration factor $\rho$",
    "half_depth": r"half-depth $D_{1/2}$ (iterations)",
    "miou": "mIoU", "loss": "training loss", "pixel_acc": "pixel accuracy", "lr": "learning rate",
    "grad_norm": "total gradient norm",
}
AXIS_LABELS = {"model.iterations": r"$T_{\mathrm{train}}$ (unrolled iterations in training)",
               "model.step_size": r"HEM step size $\eta$", "model.temperature": r"softmax temperature $\tau$",
               "model.grad_iterations": "differentiable iterations", "step": "training step"}
HUE_FORMATS = {"model.kind": "{}", "model.step_size": "η = {}", "model.iterations": "T = {}",
               "model.grad_iterations": "grad iterations = {}", "model.temperature": "τ = {}"}


@contextlib.contextmanager
def house_style() -> Iterator[None]:
    """Apply the theme to whatever is built inside the block (rcParams are restored after)."""
    with mpl.rc_context(THEME):
        yield


def styled(plot: Callable[P, R]) -> Callable[P, R]:
    """Decorator: build the figure of `plot` under the house style."""
    @functools.wraps(plot)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with house_style():
            return plot(*args, **kwargs)
    return wrapper


def new_figure(nrows: int = 1, ncols: int = 1, *, width: float = 5.2, height: float = 3.6,
               **subplot_kw: object) -> tuple[Figure, np.ndarray]:
    """A constrained-layout Figure (no pyplot) and its axes as a 2-D array, each panel width × height inches."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


def quantity_label(quantity: str) -> str:
    """The axis label of a recorded quantity, with its MATH.md symbol where it has one."""
    if quantity in QUANTITY_LABELS:
        return QUANTITY_LABELS[quantity]
    if quantity.startswith("grad/"):
        return f"‖∂L/∂{quantity[5:]}‖"
    return quantity


def hue_label(hue: str, value: object) -> str:
    """A legend label for one group: "EM", "HEM", "η = 0.5", "T = 3", or the value itself."""
    if hue.endswith("kind") and str(value).lower() in KIND_COLORS:
        return str(value).upper() if str(value).lower() != "none" else "no EM layer"
    return HUE_FORMATS.get(hue, "{}").format(value)


def kind_color(kind: str) -> str:
    """EM, HEM and "none" always have the same colour."""
    return KIND_COLORS[str(kind).lower()]


def step_size_color(eta: float) -> tuple[float, float, float, float]:
    """HEM step sizes η: η = 1 is EM (EM's colour); η < 1 oranges (darker for smaller η); η > 1 purples."""
    if math.isclose(eta, 1.0):
        return mpl.colors.to_rgba(KIND_COLORS["em"])
    if eta < 1:
        return mpl.colormaps["Oranges"](0.45 + 0.5 * (1 - eta))
    return mpl.colormaps["Purples"](0.45 + 0.5 * min(eta - 1, 1))


def palette(values: Sequence, hue: str = "") -> dict:
    """A colour per group value. Kinds and step sizes get fixed colours whatever else is plotted; numbers
    (e.g. T) a sequential ramp in ascending order; anything else (runs) colour-blind colours in sorted order."""
    if all(str(v).lower() in KIND_COLORS for v in values):
        return {v: kind_color(v) for v in values}
    if hue.endswith("step_size"):
        return {v: step_size_color(float(v)) if isinstance(v, int | float | np.number) else "0.6" for v in values}
    if all(isinstance(v, int | float | np.number) for v in values):
        ramp = sns.color_palette("crest", n_colors=max(len(values), 2))
        return {v: ramp[i] for i, v in enumerate(sorted(values))}
    colors = CATEGORICAL if len(values) <= len(CATEGORICAL) else sns.color_palette("husl", len(values))
    return {v: colors[i] for i, v in enumerate(sorted(values, key=str))}


def figure_legend(fig: Figure, handles: Sequence, title: str) -> None:
    """The groups and special markers of every panel, once, right of the panels."""
    fig.legend(handles=list(handles), title=title, loc="outside right center")
