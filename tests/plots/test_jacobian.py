"""sigma_and_rho: σ_t beside the measured ρ_t (MATH.md §9), from hand-built records with known medians."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from gradlab.plots import PlotInputError, sigma_and_rho
from gradlab.plots.jacobian import sigma_rho_frame
from tests.analysis.synthetic import series


def records() -> pd.DataFrame:
    frames = []
    for step, scale in ((0, 1.0), (100, 3.0), (200, 2.0)):
        frames += [series([2.0 * scale, 0.5, 7.0], "jac/sigma_max", step=step),
                   series([1.0, 4.0, 2.0, 3.0], "grad/mu", start=0, step=step)]
    frames.append(series([9.0, 9.0, 9.0, 9.0], "grad/mu", start=0, step=50))  # not a Jacobian step: left out
    return pd.concat(frames, ignore_index=True)


def test_frame_takes_medians_over_jacobian_steps_and_rho_below_the_last_iteration():
    f = sigma_rho_frame(records()).set_index("iteration")
    assert f.loc[1, "sigma"] == pytest.approx(4.0)  # median of 2, 6, 4
    assert f.loc[1, "rho"] == pytest.approx(0.25) and f.loc[2, "rho"] == pytest.approx(2.0)
    assert math.isnan(f.loc[3, "rho"])  # t = T: ∂L/∂μ^(T−1) also flows through Z^(T), no bound


def test_figure_draws_both_lines_per_group_and_a_line_at_one():
    fig = sigma_and_rho(records())
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and len(ax.get_lines()) == 3


def test_missing_jacobians_say_why():
    with pytest.raises(PlotInputError, match="jac/sigma_max"):
        sigma_and_rho(series([1.0, 2.0], "grad/mu", start=0))
