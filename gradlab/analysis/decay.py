"""Decay metrics of the gradient through the unrolled iterations (MATH.md §7).

For one series g_t (one run, rank, step, layer and `grad/*` quantity) with d = T − t the depth counted back from
the output: retention R = g_first / g_last, decades log10 R, per-iteration factor ρ, half-depth D½. The series
of all groups are laid out as one dense (groups × iterations) matrix, so every metric is a numpy row reduction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gradlab.analysis import thresholds as th
from gradlab.analysis._codes import group_ids, iteration_sets, matching, of_quantity, status_codes
from gradlab.records import AGREEMENT, COLUMNS, INPUT_GRADIENT, SERIES_KEY, STATUSES

#: per-series flags of MATH.md §7 (True when any iteration shows it), the last of DECAY_COLUMNS
DECAY_FLAGS = ("no_grad", "dead", "nonfinite", "vanishing", "exploding")
DECAY_COLUMNS = [
    "T", "iterations", "first_iteration", "last_iteration", "first", "last", "retention", "decades", "rho",
    "half_depth", "no_grad_iterations", *DECAY_FLAGS,
]



def is_gradient_norm(quantity: str) -> bool:
    """A `grad/*` quantity that is a norm ‖∂L/∂·‖ (≥ 0, spans decades): every one but the agreement cosines."""
    return isinstance(quantity, str) and quantity.startswith("grad/") and quantity not in AGREEMENT


def iteration_gradients(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of `grad/*` norms recorded per iteration (a non-null iteration: grad/x, grad/mu, grad/z, a loop's
    grad/in and grad/out, custom taps); not the per-layer ones such as grad/x_total."""
    keep = matching(frame["quantity"], is_gradient_norm) & frame["iteration"].notna().to_numpy()
    return frame[keep]


def extra_columns(frame: pd.DataFrame) -> list[str]:
    """Columns beyond the record schema (config columns, run_dir) that decay carries through."""
    return [c for c in frame.columns if c not in COLUMNS]


def decay(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, rank, step, layer, quantity) of the per-iteration `grad/*` series, with DECAY_COLUMNS.

    `first`/`last` are g at the earliest/latest iteration with status ok; R, decades, ρ and D½ need two ok
    iterations (NaN otherwise). Columns beyond the record schema (e.g. config) are carried through.
    """
    rows = iteration_gradients(frame)
    gid, first_row = group_ids(rows, SERIES_KEY)
    keys = rows.iloc[first_row][SERIES_KEY + extra_columns(rows)].reset_index(drop=True)
    values, status = _dense(rows, gid, len(first_row))
    return pd.concat([keys, pd.DataFrame(series_metrics(values, status))], axis=1)


def _dense(rows: pd.DataFrame, gid: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """(groups × iterations) values (NaN where absent) and status codes (−1 where absent).

    One row per cell is expected (load_records drops repeated steps of resumed runs).
    """
    it = rows["iteration"].to_numpy(dtype=np.int64)
    width = int(it.max()) + 1 if len(it) else 1
    values = np.full((groups, width), np.nan)
    status = np.full((groups, width), -1, dtype=np.int8)
    values[gid, it] = rows["value"].to_numpy(dtype=np.float64)
    status[gid, it] = status_codes(rows["status"], STATUSES)
    return values, status


def _last_true(mask: np.ndarray) -> np.ndarray:
    """Column index of the last True per row (−1 where none)."""
    idx = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
    return np.where(mask.any(axis=1), idx, -1)


def _first_true(mask: np.ndarray) -> np.ndarray:
    return np.where(mask.any(axis=1), np.argmax(mask, axis=1), -1)


def series_metrics(values: np.ndarray, status: np.ndarray) -> dict[str, np.ndarray]:
    """All decay metrics and flags of a dense (series × iteration t) matrix; status codes as in records.STATUSES."""
    rows = np.arange(len(values))
    T = _last_true(status >= 0)
    ok = (status == 0) & ~np.isnan(values)
    n_ok = ok.sum(axis=1)
    i_first, i_last = _first_true(ok), _last_true(ok)
    first = np.where(n_ok > 0, values[rows, i_first], np.nan)
    last = np.where(n_ok > 0, values[rows, i_last], np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        retention = np.where(n_ok >= 2, first / last, np.nan)  # x/0 = inf, 0/0 = NaN
        decades = np.log10(retention)  # log10 0 = −inf: dead, not a crash
    depth = T[:, None] - np.arange(values.shape[1])[None, :]  # d = T − t
    rho = _rho(values, ok, depth)
    no_grad = (status >= 2).any(axis=1)
    return {
        "T": T,
        "iterations": n_ok,
        "first_iteration": _nullable(i_first),
        "last_iteration": _nullable(i_last),
        "first": first,
        "last": last,
        "retention": retention,
        "decades": decades,
        "rho": rho,
        "half_depth": _half_depth(values, ok, last, i_last, T),
        "no_grad_iterations": iteration_sets(status >= 2),
        "no_grad": no_grad,
        "dead": (ok & (values <= th.DEAD_NORM)).any(axis=1),
        "nonfinite": (status == 1).any(axis=1),
        "vanishing": retention < th.VANISHING_RETENTION,
        "exploding": (retention > th.EXPLODING_RETENTION) | (rho > th.EXPLODING_RHO),
    }


def _nullable(index: np.ndarray) -> pd.arrays.IntegerArray:
    """Column indices as a nullable Int64 array (−1 → <NA>)."""
    return pd.arrays.IntegerArray(np.maximum(index, 0).astype(np.int64), index < 0)


def _rho(values: np.ndarray, ok: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """ρ = exp(b), b the least-squares slope of log g against the depth d (over ok, positive, finite g).

    g_d = g_last · ρ^d gives exactly ρ; ρ < 1 decays toward the early iterations. (MATH.md §7 writes "against
    −d"; with −d a decaying series would give ρ > 1, so the slope is taken against d, as "ρ < 1 decays" says.)
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        fit = ok & (values > 0) & np.isfinite(values)
        n = fit.sum(axis=1)
        y = np.where(fit, np.log(np.where(fit, values, 1.0)), 0.0)
        x = np.where(fit, depth, 0).astype(np.float64)
        xm, ym = x.sum(axis=1) / n, y.sum(axis=1) / n
        dx = np.where(fit, x - xm[:, None], 0.0)
        dy = np.where(fit, y - ym[:, None], 0.0)
        sxx = (dx * dx).sum(axis=1)
        slope = (dx * dy).sum(axis=1) / sxx
        return np.where((n >= 2) & (sxx > 0), np.exp(slope), np.nan)


def _half_depth(values, ok, last, i_last, T) -> np.ndarray:
    """D½: the smallest d (earlier than the last ok iteration) with g ≤ g_last / 2; NaN if never."""
    cols = np.arange(values.shape[1])[None, :]
    with np.errstate(invalid="ignore"):
        hit = ok & (cols < i_last[:, None]) & (values <= last[:, None] / 2)
    col = _last_true(hit)  # the latest such iteration is the smallest depth
    return np.where(col >= 0, T - col, np.nan)


def shares(frame: pd.DataFrame, quantity: str | tuple[str, ...] = INPUT_GRADIENT) -> pd.DataFrame:
    """s_t = g_t / Σ_t g_t per (run, rank, step, layer): which iteration the backbone's gradient enters through.

    Rows with status no_grad / unused / nonfinite keep a NaN share (never a zero); the sum is over ok rows.
    """
    rows = frame[of_quantity(frame, quantity) & frame["iteration"].notna().to_numpy()]
    gid, _ = group_ids(rows, ["run", "rank", "step", "layer"])
    ok = (rows["status"] == "ok").to_numpy() & rows["value"].notna().to_numpy()
    value = np.where(ok, rows["value"].to_numpy(dtype=np.float64), 0.0)
    total = np.bincount(gid, weights=value)[gid]
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(ok, value / total, np.nan)
    out = rows.reset_index(drop=True)
    out["share"] = share
    return out


def profile(frame: pd.DataFrame, quantity: str | tuple[str, ...] = INPUT_GRADIENT, how: str = "mean") -> pd.DataFrame:
    """The decay curve: per (run, rank, layer, iteration t), g_t / g_last aggregated over the frame's steps.

    `decades` is the mean (or median) over steps of log10(g_t / g_last), `ratio` = 10**decades (a geometric
    mean), `depth` d = T − t. Only ok rows count; an exact 0 gives −inf decades.
    """
    rows = frame[of_quantity(frame, quantity) & (frame["status"] == "ok").to_numpy()
                 & frame["iteration"].notna().to_numpy()]
    gid, first = group_ids(rows, ["run", "rank", "step", "layer"])
    it = rows["iteration"].to_numpy(dtype=np.int64)
    value = rows["value"].to_numpy(dtype=np.float64)
    order = np.lexsort((it, gid))
    last = np.empty(len(first))
    last[gid[order]] = value[order]  # the last (largest) iteration of each step is written last
    with np.errstate(divide="ignore", invalid="ignore"):
        decades = np.log10(value / last[gid])
    keys = ["run", "rank", "layer", "iteration"]
    work = pd.DataFrame({k: rows[k].array for k in keys} | {"decades": decades})
    out = work.groupby(keys, observed=True, sort=True).agg(decades=("decades", how), steps=("decades", "size"))
    out = out.reset_index()
    out["ratio"] = 10.0 ** out["decades"]
    T = out.groupby(["run", "rank", "layer"], observed=True)["iteration"].transform("max")
    out["depth"] = (T - out["iteration"]).astype("int64")
    return out[["run", "rank", "layer", "iteration", "depth", "steps", "ratio", "decades"]]
