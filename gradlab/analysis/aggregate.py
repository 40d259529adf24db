"""Windows over training and geometric aggregation over steps (intervals over runs: `intervals`).

Gradient norms and their ratios span many decades, so metrics that are ratios or norms (`first`, `last`,
`retention`, `rho`) are aggregated on the log scale: the geometric mean exp(mean log v), or the median of logs.
An exact 0 has log −∞, so one dead step makes the geometric mean 0 (dead is reported, not averaged away); the
median of logs ignores it unless half the steps are dead. NaN (undefined: fewer than two ok iterations) is
skipped. `decades` is already a log and is averaged as it is; `half_depth` takes the median of the steps where
the gradient halves, with `half_reached` the fraction of steps where it does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from gradlab.analysis.decay import DECAY_COLUMNS, DECAY_FLAGS
from gradlab.records import SERIES_KEY, SKIPPED_STEP

WINDOWS = ("first", "middle", "last")
LOG_METRICS = ("first", "last", "retention", "rho")  # positive: aggregated as logs
LINEAR_METRICS = ("decades",)
SUMMARY_BY = ["run", "rank", "layer", "quantity"]


def skipped_steps(frame: pd.DataFrame) -> pd.DataFrame:
    """(run, rank, step) of every step the GradScaler skipped (`amp/skipped` = 1, records.SKIPPED_STEP)."""
    rows = frame[frame["quantity"] == SKIPPED_STEP]  # a decay frame has none (and no value column)
    return rows.loc[rows["value"] == 1, ["run", "rank", "step"]].drop_duplicates()


def trained_steps(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of the steps that trained: every row of a step the GradScaler skipped is left out (its norms
    are those of the overflowed scaled backward, and it updated nothing). The verdicts (regime, flags,
    compare) read these; `skipped_steps` says what was left out."""
    skipped = skipped_steps(frame)
    if skipped.empty:
        return frame
    inside = pd.MultiIndex.from_frame(frame[["run", "rank", "step"]]).isin(pd.MultiIndex.from_frame(skipped))
    return frame[~inside]


def window(frame: pd.DataFrame, which: str = "last", fraction: float = 0.1) -> pd.DataFrame:
    """Rows of the first, middle or last `fraction` of each run's recorded steps (at least one step), with a
    `window` column. "all" (or None) keeps every row."""
    if which in ("all", None):
        return frame.assign(window="all")
    if which not in WINDOWS:
        raise ValueError(f"window {which!r} is not one of first, middle, last, all")
    if not 0 < fraction <= 1:
        raise ValueError(f"window fraction {fraction} is out of range: allowed (0, 1]")
    pairs = frame[["run", "step"]].drop_duplicates().sort_values(["run", "step"])
    by_run = pairs.groupby("run", observed=True, sort=False)["step"]
    pos, n = by_run.cumcount().to_numpy(), by_run.transform("size").to_numpy()
    m = np.maximum(1, np.ceil(fraction * n - 1e-9)).astype(np.int64)
    start = {"first": np.zeros_like(n), "middle": (n - m) // 2, "last": n - m}[which]
    chosen = pairs[(pos >= start) & (pos < start + m)]
    inside = pd.MultiIndex.from_frame(frame[["run", "step"]]).isin(pd.MultiIndex.from_frame(chosen))
    return frame[inside].assign(window=which)


def rows_with(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The rows where any of `columns` is not NaN: the steps of quantities recorded on a sparser schedule than the
    steps (the diagnostics, record.diagnostics_every), whose windows are taken over those steps alone, never
    diluted by the steps that do not have them."""
    return frame[frame[list(columns)].notna().any(axis=1).to_numpy()]


def windows(frame: pd.DataFrame, fraction: float = 0.1) -> pd.DataFrame:
    """The first, middle and last windows stacked, labelled by `window` (a step may fall in several)."""
    return pd.concat([window(frame, w, fraction) for w in WINDOWS], ignore_index=True)


def geometric_mean(values: Sequence[float] | np.ndarray) -> float:
    """exp(mean log v) over the non-NaN values; 0 if any value is 0 (log 0 = −∞)."""
    with np.errstate(divide="ignore"):
        logs = np.log(np.asarray(values, dtype=np.float64))
    logs = logs[~np.isnan(logs)]
    return float(np.exp(logs.mean())) if len(logs) else math.nan


def log_median(values: Sequence[float] | np.ndarray) -> float:
    """exp(median log v) over the non-NaN values: robust to a few zeros or spikes."""
    with np.errstate(divide="ignore"):
        logs = np.log(np.asarray(values, dtype=np.float64))
    logs = logs[~np.isnan(logs)]
    return float(np.exp(np.median(logs))) if len(logs) else math.nan


def summarize(decay_frame: pd.DataFrame, by: Sequence[str] = tuple(SUMMARY_BY), how: str = "mean") -> pd.DataFrame:
    """Aggregate decay rows over steps (and whatever `by` leaves out): one row per group.

    Columns: `by`, `steps` (rows aggregated), LOG_METRICS (geometric mean or median of logs), `decades`
    (mean or median), `half_depth` (median where reached), `half_reached`, and the fraction of rows with each
    flag. With "run" in `by`, the run's other columns (config) are carried along.
    """
    if how not in ("mean", "median"):
        raise ValueError(f"how={how!r}: use 'mean' (geometric) or 'median' (of logs)")
    by, d = list(by), decay_frame
    with np.errstate(divide="ignore", invalid="ignore"):
        work = pd.DataFrame({m: np.log(d[m].to_numpy(dtype=np.float64)) for m in LOG_METRICS})
    for m in (*LINEAR_METRICS, "half_depth"):
        work[m] = d[m].to_numpy(dtype=np.float64)
    work["half_reached"] = d["half_depth"].notna().to_numpy(dtype=np.float64)
    for f in DECAY_FLAGS:
        work[f] = d[f].to_numpy(dtype=np.float64)
    for name in by:
        work[name] = d[name].array
    groups = work.groupby(by, observed=True, sort=True, dropna=False)
    out = pd.concat([groups.size().rename("steps"), groups[[*LOG_METRICS, *LINEAR_METRICS]].agg(how),
                     groups["half_depth"].median(), groups[["half_reached", *DECAY_FLAGS]].mean()], axis=1)
    out[list(LOG_METRICS)] = np.exp(out[list(LOG_METRICS)])
    out = out.reset_index()
    if "run" in by:
        out = _carry_run_columns(out, decay_frame, by)
    return out


def _carry_run_columns(out: pd.DataFrame, decay_frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Add the columns that are constant within a run (config, run_dir) to a table keyed by run."""
    extra = [c for c in decay_frame.columns if c not in by and c not in SERIES_KEY and c not in DECAY_COLUMNS
             and c != "window"]
    if not extra:
        return out
    per_run = decay_frame.drop_duplicates("run")[["run", *extra]]
    return out.merge(per_run, on="run", how="left")
