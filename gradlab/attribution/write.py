"""`gradlab attribute`: a run's depth profile and input attributions, written where `gradlab report` finds them
(RUN/attribution.parquet and RUN/report/attribution_*.png)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from matplotlib.figure import Figure

from gradlab.atomic import atomic_path
from gradlab.attribution.figures import depth_profile_figure, input_attribution_figure
from gradlab.attribution.inputs import input_attributions
from gradlab.attribution.methods import INPUT_METHODS, LAYER_METHODS, METHODS, check_methods
from gradlab.attribution.runs import Batch, first_images, load_run, run_profile
from gradlab.plots import save

TABLE = "attribution.parquet"
PROFILE_FIGURE = "attribution_profile.png"
INPUTS_FIGURE = "attribution_inputs.png"


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
    table_dir = Path(out) if out is not None else Path(run_dir)
    figure_dir = Path(out) if out is not None else Path(run_dir) / "report"
    files = AttributionFiles(None)
    layer_methods = [m for m in LAYER_METHODS if m in names]
    if layer_methods:
        files.frame = run_profile(run, batches, methods=layer_methods, n_steps=n_steps)
        files.table = write_table(files.frame, table_dir / TABLE)
        files.figures.append(save(depth_profile_figure(files.frame), figure_dir / PROFILE_FIGURE, dpi=dpi))
    input_methods = [m for m in INPUT_METHODS if m in names]
    if input_methods:
        figure = _inputs_figure(run.net, batches, input_methods, n_steps)
        files.figures.append(save(figure, figure_dir / INPUTS_FIGURE, dpi=dpi))
    return files


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    """Parquet, written atomically."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return path


def _inputs_figure(net: torch.nn.Module, batches: list[Batch], methods: list[str], n_steps: int) -> Figure:
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
    return input_attribution_figure(images, regions, maps, classes=classes, image_ids=ids)
