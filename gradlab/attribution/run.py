"""Attribution of a trained run, as `gradlab attribute` does it: load its network (weights of
checkpoints/last.pt) and validation images, profile them, draw the figures, and write the table and figures where
`gradlab report` finds them (RUN/attribution.parquet and RUN/report/attribution_*.png)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import nn
from torch.utils.data import Dataset

from gradlab.atomic import atomic_path
from gradlab.attribution.core import (
    COLUMNS,
    INPUT_METHODS,
    LAYER_METHODS,
    METHODS,
    AttributionError,
    check_methods,
    class_regions,
    depth_profile,
    input_attributions,
)
from gradlab.data import splits_from_config
from gradlab.plots import save
from gradlab.plots.common import bare_axes, figure_legend, figure_title, new_figure, palette, styled, to_numpy
from gradlab.plots.drawing import mark_special, special_handles
from gradlab.run_dir import ATTRIBUTION_INPUTS, ATTRIBUTION_PROFILE, RunDirectory
from gradlab.train import load_model, run_config

CELL = 2.0  # inches per image panel
MAP_CMAPS = {"saliency": "magma"}  # signed methods use a diverging map centred at 0


# --- a run, ready to attribute ---------------------------------------------------------------------------------

@dataclass
class RunModel:
    """A run's name, network (eval mode) and validation split."""

    name: str
    net: nn.Module
    val: Dataset

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device


@dataclass
class Batch:
    """Validation images with their ids, target classes and class regions (see `class_regions`)."""

    ids: list[int]
    images: torch.Tensor
    classes: torch.Tensor
    regions: torch.Tensor


def load_run(run_dir: str | Path, device: str | torch.device | None = None) -> RunModel:
    """The network of a run directory with the weights of its last checkpoint, on `device` (None: CUDA when
    available, else the CPU), and its validation split."""
    run = RunDirectory(run_dir)
    if not run.config_path.is_file():
        raise AttributionError(f"{run.path} is not a run directory (no config.toml): give a folder made by "
                               "gradlab train")
    config = run_config(run.path)
    if config.model.kind == "none":
        raise AttributionError(f"run {run.path} has no EM layer (model.kind = none): it has no unrolled "
                               "iterations to attribute")
    net, config = load_model(run.path, device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return RunModel(run.path.resolve().name, net, splits_from_config(config.data, config.seed)[1])


def first_images(val: Dataset, count: int, device: str | torch.device = "cpu") -> list[Batch]:
    """The first `count` validation images on `device`: one `Batch`, or one per image when their sizes differ
    (VOC)."""
    if not isinstance(count, int) or count < 1:
        raise AttributionError(f"images={count!r} is invalid: give a number of validation images >= 1")
    if count > len(val):
        raise AttributionError(f"images={count} but the validation split has {len(val)} images")
    pairs = [val[i] for i in range(count)]
    groups = [list(range(count))] if len({p[0].shape for p in pairs}) == 1 else [[i] for i in range(count)]
    ignore = getattr(val, "ignore_index", 255)
    batches = []
    for ids in groups:
        images, masks = (torch.stack([pairs[i][j] for i in ids]).to(device) for j in (0, 1))
        classes, regions = class_regions(masks, ignore_index=ignore)
        batches.append(Batch(ids, images, classes, regions))
    return batches


# --- depth profiles of runs ------------------------------------------------------------------------------------

def profile_runs(run_dirs: Iterable[str | Path], *, images: int = 4, methods: str | Iterable[str] | None = None,
                 n_steps: int = 64) -> pd.DataFrame:
    """The depth profiles of several runs (e.g. EM and HEM) on their first `images` validation images."""
    frames = []
    for run_dir in run_dirs:
        run = load_run(run_dir)
        batches = first_images(run.val, images, run.device)
        frames.append(run_profile(run, batches, methods=methods, n_steps=n_steps))
    return sort_profile(pd.concat(frames, ignore_index=True))


def run_profile(run: RunModel, batches: list[Batch], *, methods: str | Iterable[str] | None = None,
                n_steps: int = 64) -> pd.DataFrame:
    """The depth profile of one run over its batches of images, rows in `sort_profile` order."""
    frames = [depth_profile(run.net, b.images, b.classes, b.regions, methods=methods, n_steps=n_steps,
                            run=run.name, image_ids=b.ids) for b in batches]
    return sort_profile(pd.concat(frames, ignore_index=True))


def sort_profile(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows by run and method (both in their first-seen order), image and iteration: the first rows of a
    table (all a report shows) are whole profiles."""
    keys = {c: frame[c].map({v: i for i, v in enumerate(dict.fromkeys(frame[c]))}) for c in ("run", "method")}
    order = frame.assign(_run=keys["run"], _method=keys["method"])
    order = order.sort_values(["_run", "_method", "image", "iteration"], kind="stable")
    return order.drop(columns=["_run", "_method"]).reset_index(drop=True)


# --- figures ---------------------------------------------------------------------------------------------------

@styled
def depth_profile_figure(frame: pd.DataFrame) -> Figure:
    """Mass Σ|A(μ^(t))| vs iteration t on a log axis, one panel per method, one line per run (its mean over
    images; thin lines: single images). EM and HEM keep their house colours. A mass of exactly 0 is a marker."""
    _check_profile(frame)
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
    figure_title(fig, "Depth profile: attribution of the class-region score to each iteration's bases")
    return fig


@styled
def input_attribution_figure(maps: Mapping[str, Sequence[torch.Tensor]], *, images: Sequence[torch.Tensor],
                             regions: Sequence[torch.Tensor], classes: Sequence[int] | None = None,
                             image_ids: Sequence[int] | None = None) -> Figure:
    """Per image (a row): the image with its class region outlined, then each method's map (`maps`: method
    name → one (3, H, W) attribution per image) summed over colour channels, drawn over the image (saliency
    0..max, signed methods symmetric around 0)."""
    ids = list(range(len(images))) if image_ids is None else list(image_ids)
    fig, axes = new_figure(len(images), 1 + len(maps), width=CELL, height=CELL)
    for row, (image, region) in enumerate(zip(images, regions)):
        what = f"image {ids[row]}" + (f", class {classes[row]}" if classes is not None else "")
        _image_panel(axes[row, 0], image, region, what)
        for col, (method, attributions) in enumerate(maps.items(), start=1):
            _map_panel(fig, axes[row, col], image, region, attributions[row], method)
    figure_title(fig, "Input attributions of the class-region score")
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
    bare_axes(ax).imshow(_displayable(image), interpolation="nearest")
    ax.contour(to_numpy(region), levels=[0.5], colors="white", linewidths=0.8)
    ax.set_title(title, fontsize="small")


def _map_panel(fig: Figure, ax: Axes, image: torch.Tensor, region: torch.Tensor, attributions: torch.Tensor,
               method: str) -> None:
    values = to_numpy(attributions.sum(0))
    limit = float(np.abs(values).max()) or 1.0
    cmap = MAP_CMAPS.get(method, "RdBu_r")
    low = 0.0 if method in MAP_CMAPS else -limit
    bare_axes(ax).imshow(_displayable(image).mean(-1), cmap="gray", interpolation="nearest")
    shown = ax.imshow(values, cmap=cmap, vmin=low, vmax=limit, alpha=0.7, interpolation="nearest")
    ax.contour(to_numpy(region), levels=[0.5], colors="black", linewidths=0.6)
    ax.set_title(method, fontsize="small")
    fig.colorbar(shown, ax=ax, shrink=0.75)


def _displayable(image: torch.Tensor) -> np.ndarray:
    """(H, W, 3) in [0, 1]: a normalised image rescaled by its own range, for display only."""
    array = to_numpy(image).transpose(1, 2, 0)
    low, high = array.min(), array.max()
    return (array - low) / (high - low) if high > low else np.zeros_like(array)


def _check_profile(frame: pd.DataFrame) -> None:
    missing = [c for c in COLUMNS if c not in getattr(frame, "columns", [])]
    if missing:
        raise AttributionError(f"depth_profile_figure needs a depth_profile frame: it lacks columns {missing}")
    if frame.empty:
        raise AttributionError("depth_profile_figure got a frame without rows")


# --- `gradlab attribute`: the files ----------------------------------------------------------------------------

@dataclass
class AttributionFiles:
    """What `attribute_run` wrote: the table (None when no layer method ran), the figures, and the frame."""

    table: Path | None
    figures: list[Path] = field(default_factory=list)
    frame: pd.DataFrame | None = None

    @property
    def paths(self) -> list[Path]:
        return ([self.table] if self.table else []) + self.figures


def attribute_run(run_dir: str | Path, *, images: int = 4, methods: str | Iterable[str] | None = None,
                  out: str | Path | None = None, n_steps: int = 64, dpi: int = 110) -> AttributionFiles:
    """Attribute the first `images` validation images of a run: the depth profile of the layer methods among
    `methods` (a table and a figure) and the maps of its input methods (a figure). None runs every method.

    Files go to `out` when given, else the table to RUN/attribution.parquet and the figures to RUN/report/,
    the places `gradlab report RUN` includes them from.
    """
    names = check_methods(methods, METHODS)
    run = load_run(run_dir)
    batches = first_images(run.val, images, run.device)
    paths = RunDirectory(run_dir)
    table = Path(out) / paths.attribution_path.name if out is not None else paths.attribution_path
    figure_dir = Path(out) if out is not None else paths.report_path
    files = AttributionFiles(None)
    layer_methods = [m for m in LAYER_METHODS if m in names]
    if layer_methods:
        files.frame = run_profile(run, batches, methods=layer_methods, n_steps=n_steps)
        files.table = write_table(files.frame, table)
        files.figures.append(save(depth_profile_figure(files.frame), figure_dir / ATTRIBUTION_PROFILE, dpi=dpi))
    input_methods = [m for m in INPUT_METHODS if m in names]
    if input_methods:
        figure = _inputs_figure(run.net, batches, input_methods, n_steps)
        files.figures.append(save(figure, figure_dir / ATTRIBUTION_INPUTS, dpi=dpi))
    return files


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    """Parquet, written atomically."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return path


def _inputs_figure(net: nn.Module, batches: list[Batch], methods: list[str], n_steps: int) -> Figure:
    """The input maps of every image in one figure (images of different sizes are drawn one per row)."""
    images, regions, classes, ids, maps = [], [], [], [], {m: [] for m in methods}
    for b in batches:
        found = input_attributions(net, b.images, b.classes, b.regions, methods=methods, n_steps=4 * n_steps)
        images += list(b.images)
        regions += list(b.regions)
        classes += b.classes.tolist()
        ids += b.ids
        for method, values in found.items():
            maps[method] += list(values)
    return input_attribution_figure(maps, images=images, regions=regions, classes=classes, image_ids=ids)
