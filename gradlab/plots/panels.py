"""One panel per EM layer, with the colours and labels of the hue groups: the layout of the per-layer plots."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from gradlab.plots.frames import hue_groups
from gradlab.plots.style import hue_label, new_figure, palette


@dataclass
class LayerPanels:
    rows: pd.DataFrame  # the input rows, `hue` made categorical in group order
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
