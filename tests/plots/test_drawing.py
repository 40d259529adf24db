"""Values an axis cannot show: markers in strips of their own, never a tick label inside a strip."""

from __future__ import annotations

import numpy as np
import pytest

from gradlab.plots.common import new_figure
from gradlab.plots.drawing import mark_special, reserve_marker_strips


def test_special_markers_sit_at_the_axis_edges_whatever_the_limits():
    fig, axes = new_figure()
    ax = axes[0, 0]
    ax.set_yscale("log")
    ax.plot([1, 2, 3], [1e-9, 1e-3, 1.0])
    line = mark_special(ax, [1, 3], "dead", "red")
    assert line.get_gid() == "dead" and list(line.get_xdata()) == [1, 3]
    assert np.all(line.get_ydata() < 0.05)  # axes coordinates: the bottom strip
    assert mark_special(ax, [], "no_grad") is None
    low, high = ax.get_ylim()
    reserve_marker_strips([ax], bottom=True, top=False)
    assert ax.get_ylim()[0] < low and ax.get_ylim()[1] == pytest.approx(high)
    fig.canvas.draw()
    bottom = ax.get_ylim()[0]
    labelled = [t.get_position()[1] for t in ax.yaxis.get_majorticklabels() if t.get_text()]
    labelled = [y for y in labelled if y >= bottom]
    assert labelled and min(labelled) >= low * (1 - 1e-9)  # no tick label inside the marker strip
    assert [p.get_gid() for p in ax.patches] == ["strip"]
