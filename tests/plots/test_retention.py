from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gradlab.plots import retention_over_training
from gradlab.plots.style import KIND_COLORS
from tests.plots.synthetic import LAYER, artists, make_decay, points


def test_a_line_per_run_and_a_bold_median_per_group():
    fig = retention_over_training(make_decay(), hue="model.kind")
    (ax,) = fig.axes
    runs, groups = artists(fig, "run"), artists(fig, "group")
    assert len(runs) == 4 and len(groups) == 2
    assert {line.get_color() for line in groups} == {KIND_COLORS["em"], KIND_COLORS["hem"]}
    assert ax.get_yscale() == "linear" and "log_{10} R" in ax.get_ylabel() and ax.get_xlabel() == "training step"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["EM", "HEM"]


def test_hue_run_draws_one_bold_line_per_run():
    fig = retention_over_training(make_decay(seeds=(0,)))
    assert len(artists(fig, "run")) == 2 and artists(fig, "group") == []
    assert all(line.get_linewidth() == 2.0 for line in artists(fig, "run"))


def test_minus_infinity_and_nan_are_marked_not_dropped():
    fig = retention_over_training(make_decay(dead=[20, 30], undefined=[50]), hue="model.kind")
    assert points(fig, "dead") == 2 and points(fig, "undefined") == 1
    gaps = [int(np.isnan(line.get_ydata()).sum()) for line in artists(fig, "run")]
    assert sorted(gaps) == [0, 0, 0, 3]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "0 (dead)" in labels and "undefined (no gradient or NaN)" in labels


def test_optional_columns_filters_and_errors():
    frame = make_decay()
    assert len(retention_over_training(frame.drop(columns=["layer", "quantity"])).axes) == 1
    two_layers = pd.concat([frame, frame.assign(layer="aux.em")])
    assert len(retention_over_training(two_layers).axes) == 2
    with pytest.raises(ValueError, match="quantity='grad/mu'"):
        retention_over_training(frame, quantity="grad/mu")
    with pytest.raises(ValueError, match="missing column.*'decades'"):
        retention_over_training(frame.drop(columns="decades"))
    with pytest.raises(ValueError, match="no rows"):
        retention_over_training(frame.iloc[:0])
    assert len(retention_over_training(frame, layer=LAYER, steps=(0, 50)).axes) == 1
