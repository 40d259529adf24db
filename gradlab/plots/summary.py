"""Per-iteration summaries of a quantity over steps, layers and runs: a centre line and a band per group.

Gradient norms span many decades, so on log axes the centre is the median of log10 values (a geometric
median) and the band is computed on log10 values too; exact zeros enter as −∞ (a median of −∞ means most
observations are dead). Missing gradients and NaN/Inf are not values: they are counted, never averaged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gradlab.plots.frames import PlotInputError, categorize

BANDS = ("quantile", "bootstrap", None)
COLUMNS = ["group", "x", "center", "low", "high", "n", "dead", "no_grad", "nonfinite"]


def summarize(frame: pd.DataFrame, by: str, x: str, *, log: bool, band: str | None = "quantile",
              level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """One row per (group `by`, position `x`) with columns COLUMNS (centre and band in data units).

    band="quantile": the central `level` interval of the observations (their spread over steps and runs);
    band="bootstrap": a `level` bootstrap interval of the median (steps are correlated: read it as a lower
    bound on the uncertainty); band=None: no band (low = high = centre).
    """
    if band not in BANDS:
        raise PlotInputError(f"band={band!r} is invalid: band must be one of {BANDS}")
    if not 0 < level < 1:
        raise PlotInputError(f"level={level!r} is invalid: level must be in (0, 1)")
    data = frame.assign(category=categorize(frame, log=log), group=frame[by])
    rng = np.random.default_rng(seed)
    parts = data.groupby(["group", x], sort=False)
    rows = [_row(g, xv, part, log, band, level, rng) for (g, xv), part in parts]
    return pd.DataFrame(rows, columns=COLUMNS).sort_values("x", kind="stable", ignore_index=True)


def _row(group: object, x: object, part: pd.DataFrame, log: bool, band: str | None, level: float,
         rng: np.random.Generator) -> list:
    counts = part["category"].value_counts()
    values = part.loc[part["category"].isin(["ok", "dead"]), "value"].to_numpy(dtype=float)
    if log:
        with np.errstate(divide="ignore"):
            values = np.log10(values)  # an exact 0 becomes −inf
    center, low, high = _center_band(values, band, level, rng)
    if log:
        center, low, high = (10.0 ** v for v in (center, low, high))  # −inf → 0, NaN stays NaN
    return [group, x, center, low, high, len(values),
            counts.get("dead", 0), counts.get("no_grad", 0), counts.get("nonfinite", 0)]


def _center_band(values: np.ndarray, band: str | None, level: float,
                 rng: np.random.Generator) -> tuple[float, float, float]:
    if len(values) == 0:
        return np.nan, np.nan, np.nan
    center = float(np.median(values))
    tails = [(1 - level) / 2, (1 + level) / 2]
    if band == "quantile":
        low, high = np.quantile(values, tails, method="inverted_cdf")
    elif band == "bootstrap":
        draws = values[rng.integers(0, len(values), size=(500, len(values)))]
        low, high = np.quantile(np.median(draws, axis=1), tails, method="inverted_cdf")
    else:
        low = high = center
    return center, low, high
