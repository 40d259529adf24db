"""The mechanism of decay per iteration (MATH.md §9): the state Jacobians' norms σ_t next to the measured factors
ρ_t = ‖∂L/∂μ^(t−1)‖ / ‖∂L/∂μ^(t)‖. ρ_t ≤ σ_t below the last iteration; where ρ_t lies far under σ_t the
gradient meets a weak direction of J_t (alignment), not a contraction."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from gradlab.plots.frames import PlotInputError, hue_groups, require_columns
from gradlab.plots.style import figure_legend, hue_label, new_figure, palette, styled

KEY = ["run", "step", "layer"]


def sigma_rho_frame(records: pd.DataFrame, hue: str = "run") -> pd.DataFrame:
    """(hue, layer, iteration t, sigma, rho): medians over the Jacobian steps of σ_t (max over the sampled images)
    and of ρ_t from grad/mu at the same steps; ρ_t only for t < T, where the bound holds."""
    ok = records[(records["status"] == "ok").to_numpy() & records["iteration"].notna().to_numpy()]
    sigma = ok[(ok["quantity"] == "jac/sigma_max").to_numpy()]
    if sigma.empty:
        raise PlotInputError("sigma_and_rho(records): no jac/sigma_max rows (record.jacobian_every = 0, or no "
                             "recorded step was a multiple of it)")
    mu = ok[(ok["quantity"] == "grad/mu").to_numpy()].merge(sigma[KEY].drop_duplicates(), on=KEY)
    mu = mu.sort_values("iteration")
    prev = mu.groupby(KEY, observed=True)["value"].shift(1)  # g_{t−1} beside g_t
    mu = mu.assign(rho=prev / mu["value"])
    T = sigma.groupby(KEY, observed=True)["iteration"].transform("max")
    sigma = sigma.assign(T=T)
    rows = sigma.merge(mu[[*KEY, "iteration", "rho"]], on=[*KEY, "iteration"], how="left")
    rows.loc[rows["iteration"] >= rows["T"], "rho"] = np.nan
    return (rows.rename(columns={"value": "sigma"}).groupby([hue, "layer", "iteration"], observed=True)
            [["sigma", "rho"]].median().reset_index())


@styled
def sigma_and_rho(records: pd.DataFrame, hue: str = "run") -> Figure:
    """σ_t (solid) and ρ_t (dashed) against iteration t on a log axis, one panel per EM layer, one colour per
    `hue` group; the dotted line at 1 separates contraction from growth."""
    require_columns(records, ["run", "step", "layer", "iteration", "quantity", "value", "status", hue],
                    "sigma_and_rho(records)")
    frame, groups = hue_groups(sigma_rho_frame(records, hue), hue)
    colors = palette(groups, hue)
    layers = sorted(frame["layer"].unique())
    fig, axes = new_figure(1, len(layers), width=4.8)
    for ax, layer in zip(axes[0], layers):
        for group in groups:
            g = frame[(frame["layer"] == layer) & (frame[hue] == group)]
            ax.plot(g["iteration"], g["sigma"], color=colors[group], marker="o", markersize=3)
            ax.plot(g["iteration"], g["rho"], color=colors[group], marker="s", markersize=3, linestyle="--")
        ax.axhline(1.0, color="0.4", linestyle=":", linewidth=1)
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="iteration t", title=f"layer {layer}" if len(layers) > 1 else "")
    axes[0, 0].set_ylabel(r"$\sigma_t = \|J_t\|_2$ (solid),  $\rho_t$ (dashed)")
    handles = [Line2D([], [], color=colors[g], label=hue_label(hue, g)) for g in groups]
    handles += [Line2D([], [], color="0.3", marker="o", label="σ_t (max over images)"),
                Line2D([], [], color="0.3", marker="s", linestyle="--", label="ρ_t (measured, t < T)")]
    figure_legend(fig, handles, hue)
    fig.suptitle("State Jacobians: the bound σ_t and the measured factor ρ_t (medians over Jacobian steps)")
    return fig
