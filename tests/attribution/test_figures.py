from __future__ import annotations

import pandas as pd
import pytest
from matplotlib.figure import Figure

from gradlab.attribution import AttributionError, depth_profile_figure, input_attribution_figure, input_attributions
from gradlab.plots.common import KIND_COLORS


def test_profile_figure_has_a_panel_per_method_and_em_hem_in_their_colours(profiles):
    frame = pd.concat([profiles["em"], profiles["hem"]])
    fig = depth_profile_figure(frame)
    assert isinstance(fig, Figure)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["integrated-gradients", "gradient-x-activation", "conductance"]
    assert all(ax.get_yscale() == "log" for ax in panels)
    widths = {line.get_color() for ax in panels for line in ax.get_lines() if line.get_linewidth() >= 2}
    assert widths == {KIND_COLORS["em"], KIND_COLORS["hem"]}


def test_profile_figure_refuses_a_frame_that_is_not_a_profile():
    with pytest.raises(AttributionError, match="lacks columns"):
        depth_profile_figure(pd.DataFrame({"run": ["x"]}))


def test_input_figure_has_a_row_per_image_and_a_column_per_method(loaded, batch):
    maps = input_attributions(loaded["em"].net, batch.images, batch.classes, batch.regions, n_steps=4)
    fig = input_attribution_figure(batch.images, batch.regions, maps, classes=batch.classes.tolist())
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [f"image 0, class {int(batch.classes[0])}", "saliency", "integrated-gradients",
                      f"image 1, class {int(batch.classes[1])}", "saliency", "integrated-gradients"]
