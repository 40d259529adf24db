"""Figures of attributions: the depth profile (mass per iteration, runs side by side) and input maps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from gradlab.attribution.depth_profile import COLUMNS
from gradlab.attribution.errors import AttributionError
from gradlab.plots.common import figure_legend, new_figure, palette, styled
from gradlab.plots.drawing import mark_special, special_handles

CELL = 2.0  # inches per image panel
MAP_CMAPS = {"saliency": "magma"}  # signed methods use a diverging map centred at 0


@styled
def depth_profile_figure(frame: pd.DataFrame) -> Figure:
    """Mass Σ|A(μ^(t))| vs iteration t on a log axis, one panel per method, one line per run (its mean over
    images; thin lines: single images). EM and HEM keep their house colours. A mass of exactly 0 is a marker."""
    _check_frame(frame)
    methods = list(dict.fromkeys(frame["method"]))
    colors = _run_colors(frame)
    fig, axes = new_figure(1, len(methods), width=3.6, height=3.0)
    dead = False
    for ax, method in zip(axes[0], methods):
        for run, rows in frame[frame["method"] == method].groupby("run", sort=False):
            dead |= _profile_lines(ax, rows, colors[run])
        ax.set(title=method, xlabel="iteration t", yscale="log")
        ax.set_xticks(sorted(frame["iteration"].unique()))
    axes[0, 0].set_ylabel(r"attribution mass $\sum |A(\mu^{(t)})|$")
    handles = [Line2D([], [], color=c, marker="o", label=_run_label(frame, r)) for r, c in colors.items()]
    figure_legend(fig, handles + (special_handles({"dead"}) if dead else []), "run")
    fig.suptitle("Depth profile: attribution of the class-region score to each iteration's bases")
    return fig


@styled
def input_attribution_figure(images: torch.Tensor, regions: torch.Tensor, maps: Mapping[str, torch.Tensor], *,
                             classes: Sequence[int] | None = None, image_ids: Sequence[int] | None = None) -> Figure:
    """Per image (a row): the image with its class region outlined, then each method's map summed over colour
    channels, drawn over the image (saliency 0..max, signed methods symmetric around 0)."""
    ids = list(range(len(images))) if image_ids is None else list(image_ids)
    fig, axes = new_figure(len(images), 1 + len(maps), width=CELL, height=CELL)
    for row, (image, region) in enumerate(zip(images, regions)):
        what = f"image {ids[row]}" + (f", class {classes[row]}" if classes is not None else "")
        _image_panel(axes[row, 0], image, region, what)
        for col, (method, attributions) in enumerate(maps.items(), start=1):
            _map_panel(fig, axes[row, col], image, region, attributions[row], method)
    fig.suptitle("Input attributions of the class-region score")
    return fig


def _profile_lines(ax: Axes, rows: pd.DataFrame, color: object) -> bool:
    """The run's mean line and its images' thin lines; True when a mean mass is exactly 0 (drawn as a marker)."""
    for _, image in rows.groupby("image"):
        image = image.sort_values("iteration")
        ax.plot(image["iteration"], image["abs_value"].where(image["abs_value"] > 0), color=color, lw=0.6,
                alpha=0.35)
    mean = rows.groupby("iteration")["abs_value"].mean()
    ax.plot(mean.index, mean.where(mean > 0), color=color, marker="o", lw=2)
    zeros = mean.index[mean == 0]
    mark_special(ax, list(zeros), "dead", color)
    return len(zeros) > 0


def _run_colors(frame: pd.DataFrame) -> dict:
    """EM / HEM colours when each run has its own kind, otherwise one colour per run."""
    kinds = frame.groupby("run", sort=False)["kind"].first()
    if kinds.is_unique:
        return {run: palette(list(kinds))[kind] for run, kind in kinds.items()}
    return palette(list(kinds.index), "run")


def _run_label(frame: pd.DataFrame, run: str) -> str:
    kind = frame.loc[frame["run"] == run, "kind"].iloc[0]
    return f"{run} ({kind.upper()})" if run else kind.upper()


def _image_panel(ax: Axes, image: torch.Tensor, region: torch.Tensor, title: str) -> None:
    _bare(ax)
    ax.imshow(_displayable(image), interpolation="nearest")
    ax.contour(region.cpu().numpy(), levels=[0.5], colors="white", linewidths=0.8)
    ax.set_title(title, fontsize="small")


def _map_panel(fig: Figure, ax: Axes, image: torch.Tensor, region: torch.Tensor, attributions: torch.Tensor,
               method: str) -> None:
    _bare(ax)
    values = attributions.sum(0).cpu().numpy()
    limit = float(np.abs(values).max()) or 1.0
    cmap = MAP_CMAPS.get(method, "RdBu_r")
    low = 0.0 if method in MAP_CMAPS else -limit
    ax.imshow(_displayable(image).mean(-1), cmap="gray", interpolation="nearest")
    shown = ax.imshow(values, cmap=cmap, vmin=low, vmax=limit, alpha=0.7, interpolation="nearest")
    ax.contour(region.cpu().numpy(), levels=[0.5], colors="black", linewidths=0.6)
    ax.set_title(method, fontsize="small")
    fig.colorbar(shown, ax=ax, shrink=0.75)


def _displayable(image: torch.Tensor) -> np.ndarray:
    """(H, W, 3) in [0, 1]: a normalised image rescaled by its own range, for display only."""
    array = image.detach().cpu().float().permute(1, 2, 0).numpy()
    low, high = array.min(), array.max()
    return (array - low) / (high - low) if high > low else np.zeros_like(array)


def _bare(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def _check_frame(frame: pd.DataFrame) -> None:
    missing = [c for c in COLUMNS if c not in getattr(frame, "columns", [])]
    if missing:
        raise AttributionError(f"depth_profile_figure needs a depth_profile frame: it lacks columns {missing}")
    if frame.empty:
        raise AttributionError("depth_profile_figure got a frame without rows")
