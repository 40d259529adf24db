"""What every figure shares: the house style (theme, fixed colours, labels, the figure factory, its legend and
title), the checks and selections of the input frames, one panel per EM layer, and `save`.

Figures are built with `matplotlib.figure.Figure` (no pyplot state, nothing to close); the theme is applied
with `rc_context` while a figure is built, so importing gradlab never changes the user's rcParams. A bad frame
raises `PlotInputError` (a ValueError) whose message names what is missing and what is there.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

import matplotlib as mpl

if sys.platform.startswith("linux") and "matplotlib.pyplot" not in sys.modules and not (
        os.environ.get("MPLBACKEND") or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    mpl.use("Agg")  # headless: no display, no GUI backend to try (seaborn imports pyplot below)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.cbook import is_math_text  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.textpath import text_to_path  # noqa: E402

from gradlab.atomic import atomic_path  # noqa: E402
from gradlab.errors import GradlabError  # noqa: E402
from gradlab.records import COLUMNS, NO_GRAD_STATUSES  # noqa: E402

P = ParamSpec("P")
R = TypeVar("R")
Steps = tuple[int, int] | range | Sequence[int] | None


class PlotInputError(GradlabError, ValueError):
    """A frame given to a plot lacks a column, has no rows, or holds values the plot cannot draw."""


# --- the house style -------------------------------------------------------------------------------------------

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
GREY = "0.45"  # reference lines, special markers

QUANTITY_LABELS = {
    "grad/x": r"$\|\partial L/\partial X^{(t)}\|_F$",
    "grad/mu": r"$\|\partial L/\partial \mu^{(t)}\|_F$",
    "grad/z": r"$\|\partial L/\partial Z^{(t)}\|_F$",
    "grad/in": r"$\|\partial L/\partial \mathrm{input}_c\|_F$ (call $c$)",
    "grad/out": r"$\|\partial L/\partial \mathrm{output}_c\|_F$ (call $c$)",
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
    "miou": "mIoU", "loss": "training loss", "train_loss": "training loss (mean since the last validation)",
    "pixel_acc": "pixel accuracy", "lr": "learning rate",
    "grad_norm": "total gradient norm",
}
METRIC_TITLES = {"loss": "Training loss", "miou": "Validation mIoU", "pixel_acc": "Validation pixel accuracy",
                 "lr": "Learning rate", "grad_norm": "Total gradient norm"}  # panel titles of metrics.parquet names
AXIS_LABELS = {"model.iterations": r"$T_{\mathrm{train}}$ (unrolled iterations in training)",
               "model.step_size": r"HEM step size $\eta$", "model.temperature": r"softmax temperature $\tau$",
               "model.grad_iterations": "differentiable iterations", "step": "training step"}
HUE_FORMATS = {"model.kind": "{}", "model.step_size": "η = {}", "model.iterations": "T = {}",
               "model.grad_iterations": "grad iterations = {}", "model.temperature": "τ = {}"}
TITLE_SHARE = 0.96  # a figure title's lines take at most this share of the figure's width
NBSP = "\u00a0"  # a space inside a formula or a remark while a title is wrapped


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


def metric_title(name: str) -> str:
    """A panel title for a metrics.parquet name: "Training loss", "Validation mIoU", or the name in words."""
    return METRIC_TITLES.get(name, name.replace("_", " ").capitalize())


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


def figure_title(fig: Figure, text: str) -> None:
    """The figure's title, each line wrapped at spaces to the figure's width (a narrow single-panel figure
    would otherwise clip a long title on both sides); a $…$ formula or a (…) remark is never broken."""
    font = FontProperties(size=mpl.rcParams["figure.titlesize"])
    limit = TITLE_SHARE * fig.get_figwidth() * 72  # points
    lines = [wrapped for line in text.split("\n") for wrapped in _wrap(line, font, limit)]
    fig.suptitle("\n".join(lines))


def _wrap(line: str, font: FontProperties, limit: float) -> list[str]:
    glued = re.sub(r"\$[^$]*\$|\([^()$]*\)", lambda group: group.group().replace(" ", NBSP), line)
    words = [word.replace(NBSP, " ") for word in glued.split(" ")]
    lines = [words[0]]
    for word in words[1:]:
        joined = f"{lines[-1]} {word}"
        if _text_width(joined, font) <= limit:
            lines[-1] = joined
        else:
            lines.append(word)
    return lines


def _text_width(text: str, font: FontProperties) -> float:
    """The width of one line of text (mathtext included) in points."""
    return float(text_to_path.get_text_width_height_descent(text, font, ismath=is_math_text(text))[0])


def bare_axes(ax: Axes) -> Axes:
    """An axis for an image: no ticks, no grid."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    return ax


# --- input frames ----------------------------------------------------------------------------------------------

#: the record columns every records plot needs; `status` is derived from the value when absent, `rank` optional
REQUIRED_RECORD_COLUMNS = [c for c in COLUMNS if c not in ("status", "rank")]


def require_columns(frame: pd.DataFrame, columns: Iterable[str | None], what: str) -> None:
    """Raise unless `frame` is a DataFrame with every named column (None entries are skipped)."""
    if not isinstance(frame, pd.DataFrame):
        raise PlotInputError(f"{what} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c is not None and c not in frame.columns]
    if missing:
        names = ", ".join(repr(c) for c in missing)
        raise PlotInputError(f"{what} is missing column(s) {names}; it has columns {list(frame.columns)}")


def require_rows(frame: pd.DataFrame, what: str) -> None:
    """Raise when `frame` has no rows, saying what selected them."""
    if frame.empty:
        raise PlotInputError(f"{what}: no rows to plot")


def select(frame: pd.DataFrame, column: str, value: object, what: str) -> pd.DataFrame:
    """Rows where `column == value`, or a PlotInputError listing the values there are."""
    rows = frame[frame[column] == value]
    if rows.empty:
        there = sorted(map(str, frame[column].dropna().unique()))
        raise PlotInputError(f"{what} has no rows with {column}={value!r}; it has {column} in {there}")
    return rows


def select_steps(frame: pd.DataFrame, steps: Steps, what: str) -> pd.DataFrame:
    """Keep a window of training steps: None (all), (first, last) inclusive, or a range / list of steps."""
    if steps is None:
        return frame
    if isinstance(steps, tuple) and len(steps) == 2:
        keep = frame["step"].between(*steps)
    else:
        keep = frame["step"].isin(list(steps))
    rows = frame[keep]
    require_rows(rows, f"{what} with steps={steps!r} (recorded steps {_span(frame['step'])})")
    return rows


def records_for(records: pd.DataFrame, quantity: str, what: str, *, layer: str | None = None,
                steps: Steps = None, extra: Iterable[str | None] = ()) -> pd.DataFrame:
    """The rows of one quantity (and layer, and step window) of a records frame, with a `status` column."""
    require_columns(records, [*REQUIRED_RECORD_COLUMNS, *extra], what)
    require_rows(records, what)
    rows = select(records, "quantity", quantity, what)
    if layer is not None:
        rows = select(rows, "layer", layer, what)
    rows = rows[rows["iteration"].notna()]
    require_rows(rows, f"{what}: quantity {quantity!r} has no per-iteration rows")
    rows = select_steps(rows, steps, what)
    return with_status(rows)


def with_status(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with float `value`, int `iteration` and a `status` (derived from the value when absent)."""
    out = frame.copy()
    out["value"] = pd.to_numeric(out["value"]).astype(float)
    out["iteration"] = out["iteration"].astype("int64")
    if "status" not in out.columns:
        out["status"] = np.where(np.isfinite(out["value"]), "ok", "nonfinite")
    return out


def categorize(frame: pd.DataFrame, *, log: bool) -> pd.Series:
    """Each row's drawing category: "ok", "dead" (an exact 0, log axes only), "no_grad", "nonfinite".

    no_grad covers the statuses NO_GRAD_STATUSES; an `ok` row whose value is NaN/Inf counts as nonfinite.
    A negative value on a log axis is an error: norms are never negative.
    """
    value = frame["value"].to_numpy(dtype=float)
    status = frame["status"].astype(str).to_numpy()
    no_grad = np.isin(status, NO_GRAD_STATUSES)
    nonfinite = ~no_grad & ((status == "nonfinite") | ~np.isfinite(value))
    if log and np.any(~no_grad & ~nonfinite & (value < 0)):
        raise PlotInputError("negative values cannot be drawn on a log axis (norms are never negative); "
                             "plot this quantity on a linear axis")
    dead = log & ~no_grad & ~nonfinite & (value == 0)
    category = np.select([no_grad, nonfinite, dead], ["no_grad", "nonfinite", "dead"], "ok")
    return pd.Series(category, index=frame.index, name="category")


def hue_groups(frame: pd.DataFrame, hue: str) -> tuple[pd.DataFrame, list]:
    """The frame with missing `hue` values shown as "n/a" (never dropped), and its groups in a stable order
    (numbers ascending, anything else alphabetical)."""
    if frame[hue].isna().any():
        frame = frame.assign(**{hue: frame[hue].astype(object).where(frame[hue].notna(), "n/a")})
    values = frame[hue].unique().tolist()
    try:
        return frame, sorted(values)
    except TypeError:
        return frame, sorted(values, key=str)


def to_numpy(array: object) -> np.ndarray:
    """A float numpy array from a numpy array, a list, or a torch tensor (detached, moved to the CPU)."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().float()
    return np.asarray(array, dtype=float)


def _span(steps: pd.Series) -> str:
    return f"{steps.min()}..{steps.max()}" if len(steps) else "none"


# --- one panel per EM layer ------------------------------------------------------------------------------------

@dataclass
class LayerPanels:
    """The layout of the per-layer plots: the rows, the hue groups' colours and labels, one panel per layer."""

    rows: pd.DataFrame  # the input rows, missing `hue` values as "n/a"
    groups: list
    colors: dict
    labels: dict
    layers: list
    fig: Figure
    axes: np.ndarray  # (1, len(layers)), shared y


def layer_panels(rows: pd.DataFrame, hue: str) -> LayerPanels:
    rows, groups = hue_groups(rows, hue)
    layers = sorted(rows["layer"].unique())
    fig, axes = new_figure(1, len(layers), sharey=True)
    return LayerPanels(rows, groups, palette(groups, hue), {g: hue_label(hue, g) for g in groups}, layers, fig, axes)


# --- saving ----------------------------------------------------------------------------------------------------

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}


def save(fig: Figure, path: str | os.PathLike, *, dpi: int = 150) -> Path:
    """Save `fig` in the format its suffix names (.png, .svg, .pdf) atomically (temp file beside the target,
    then `os.replace`): readers never see a half-written file."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise PlotInputError(f"cannot save {path.name!r}: the suffix must be one of {sorted(FORMATS)}")
    with house_style(), atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, metadata=_metadata(fmt))
    return path


def _metadata(fmt: str) -> dict[str, str | None]:
    """No creation date in SVG/PDF, so one figure saved twice gives the same bytes."""
    return {"Date": None} if fmt == "svg" else {"CreationDate": None} if fmt == "pdf" else {}
