"""Flags (MATH.md §7): each with a threshold from `thresholds` and the evidence that raised it.

`flags(frame)` returns one row per (run, rank, step, layer, quantity, flag) with FLAG_TABLE columns:

- no_grad:    status no_grad / unused (a missing gradient, never shown as a zero)
- dead:       an ok norm ≤ DEAD_NORM (an exact 0 or an underflow)
- nonfinite:  status nonfinite (NaN or Inf)
- vanishing:  retention R < VANISHING_RETENTION
- exploding:  R > EXPLODING_RETENTION, or ρ > EXPLODING_RHO
- spike:      a norm > SPIKE_FACTOR × the running median of the same series' previous SPIKE_WINDOW steps
- collapse:   similarity > COLLAPSE_SIMILARITY and entropy > COLLAPSE_ENTROPY · ln K (bases alike, attention uniform)
- saturation: entropy < SATURATION_ENTROPY · ln K (attention one-hot, the softmax Jacobian vanishes)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gradlab.analysis import thresholds as th
from gradlab.analysis._codes import dense_mask, group_ids, iteration_sets, matching, status_codes
from gradlab.analysis.aggregate import trained_steps
from gradlab.analysis.decay import decay, is_gradient_norm
from gradlab.analysis.wording import iterations, signed
from gradlab.records import SERIES_KEY, STATUSES, STEP_KEY

FLAG_TABLE = ["run", "rank", "step", "layer", "quantity", "flag", "value", "threshold", "evidence"]


def _table(keys: pd.DataFrame, flag: str, value, threshold, evidence: list[str]) -> pd.DataFrame:
    out = keys.reset_index(drop=True)
    out["flag"] = flag
    out["value"] = np.asarray(value, dtype=np.float64)
    out["threshold"] = np.broadcast_to(np.asarray(threshold, dtype=np.float64), len(out))
    out["evidence"] = pd.Series(evidence, dtype=object)
    return out


def _at(its: str) -> str:
    return f" at {iterations(its)}" if its else ""


def _per_series(rows: pd.DataFrame, flag: str, value: np.ndarray, how: str, threshold: float, describe):
    """Flagged rows grouped by (run, rank, step, layer, quantity): `value` aggregated by `how`, and
    `describe(quantity, status, iterations, value) -> str` (status and value of the group, its iterations)."""
    if rows.empty:
        return None
    gid, first = group_ids(rows, SERIES_KEY)
    keys = rows.iloc[first][SERIES_KEY].reset_index(drop=True)
    its = iteration_sets(dense_mask(gid, rows["iteration"].fillna(-1).to_numpy(dtype=np.int64), len(first)))
    agg = pd.Series(value).groupby(gid).agg(how).to_numpy()
    status = rows["status"].to_numpy()[first]
    text = [describe(q, s, i, v) for q, s, i, v in zip(keys["quantity"], status, its, agg)]
    return _table(keys, flag, agg, threshold, text)


def status_flags(frame: pd.DataFrame) -> list[pd.DataFrame | None]:
    """no_grad, nonfinite (every quantity) and dead (`grad/*` norms) from the records' statuses and values."""
    status = status_codes(frame["status"], STATUSES)
    grad = matching(frame["quantity"], is_gradient_norm)
    value = frame["value"].to_numpy(dtype=np.float64)
    no_grad, nonfinite = frame[status >= 2], frame[status == 1]
    with np.errstate(invalid="ignore"):
        dead = frame[grad & (status == 0) & (value <= th.DEAD_NORM)]
    return [
        _per_series(no_grad, "no_grad", np.ones(len(no_grad)), "sum", np.nan,
                    lambda q, s, its, v: f"{q}: no gradient{_at(its)} (status {s})"),
        _per_series(nonfinite, "nonfinite", nonfinite["value"].to_numpy(), "first", np.nan,
                    lambda q, s, its, v: f"{q}: NaN/Inf norm{_at(its)} (status nonfinite)"),
        _per_series(dead, "dead", dead["value"].to_numpy(), "min", th.DEAD_NORM,
                    lambda q, s, its, v: f"{q}: norm {v:.1e} ≤ {th.DEAD_NORM:.1e} (zero or underflow){_at(its)}"),
    ]


def decay_flags(decay_frame: pd.DataFrame) -> list[pd.DataFrame]:
    """vanishing and exploding from the decay metrics (R, ρ) of each series."""
    def text(r) -> str:
        return (f"R = {r.retention:.1e} ({signed(r.decades)} decades from iteration {r.first_iteration} to "
                f"{r.last_iteration})")

    v = decay_frame[decay_frame["vanishing"].to_numpy()]
    e = decay_frame[decay_frame["exploding"].to_numpy()]
    by_r = (e["retention"] > th.EXPLODING_RETENTION).to_numpy()
    return [
        _table(v[SERIES_KEY], "vanishing", v["retention"], th.VANISHING_RETENTION,
               [f"{r.quantity}: {text(r)} < {th.VANISHING_RETENTION:.0e}" for r in v.itertuples()]),
        _table(e[SERIES_KEY], "exploding", np.where(by_r, e["retention"], e["rho"]),
               np.where(by_r, th.EXPLODING_RETENTION, th.EXPLODING_RHO),
               [f"{r.quantity}: {text(r)} > {th.EXPLODING_RETENTION:.0e}" if big else
                f"{r.quantity}: ρ = {r.rho:.3g} > {th.EXPLODING_RHO:g} per iteration (the gradient grows toward "
                f"the early iterations; {text(r)})" for r, big in zip(e.itertuples(), by_r)]),
    ]


def spikes(frame: pd.DataFrame) -> pd.DataFrame:
    """Steps where an ok `grad/*` norm exceeds SPIKE_FACTOR × the median of the series' previous steps, as
    FLAG_TABLE rows (none: an empty table)."""
    grad = matching(frame["quantity"], is_gradient_norm)
    rows = frame[grad & (frame["status"] == "ok").to_numpy()]
    series = group_ids(rows, ["run", "rank", "layer", "quantity", "iteration"])[0]
    order = np.lexsort((rows["step"].to_numpy(), series))
    rows, series = rows.iloc[order], series[order]
    value = pd.Series(rows["value"].to_numpy(dtype=np.float64))
    previous = value.groupby(series).shift(1)
    median = (previous.groupby(series).rolling(th.SPIKE_WINDOW, min_periods=th.SPIKE_MIN_STEPS).median()
              .reset_index(level=0, drop=True).sort_index().to_numpy())
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = value.to_numpy() / median
        hit = (median > 0) & (ratio > th.SPIKE_FACTOR)
    found = _per_series(rows[hit], "spike", ratio[hit], "max", th.SPIKE_FACTOR, lambda q, s, its, v: (
        f"{q}: {v:.0f}× the median of the previous {th.SPIKE_WINDOW} steps{_at(its)} (> {th.SPIKE_FACTOR:g}×)"))
    return found[FLAG_TABLE] if found is not None else empty_flags()


def diagnostics(frame: pd.DataFrame, bases: int | None = None) -> pd.DataFrame:
    """Per (run, rank, step, layer): mean `entropy` over ok iterations, `similarity` of μ at the last ok
    iteration, the number of bases K and `entropy_ratio` H / ln K.

    K is `bases`, else the `model.bases` column (load_runs), else inferred per run and layer as the lower bound
    max(2, ⌈exp(max H)⌉) with `bases_inferred` True (entropy ≤ ln K, so K is at least that).
    """
    rows = frame[matching(frame["quantity"], lambda q: q in ("entropy", "similarity"))
                 & (frame["status"] == "ok").to_numpy() & frame["iteration"].notna().to_numpy()]
    gid, first = group_ids(rows, STEP_KEY)
    out = rows.iloc[first][STEP_KEY].reset_index(drop=True)
    is_entropy = (rows["quantity"] == "entropy").to_numpy()
    value = rows["value"].to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["entropy"] = (np.bincount(gid, np.where(is_entropy, value, 0.0), len(first))
                          / np.bincount(gid, is_entropy, len(first)))
    sim = np.flatnonzero(~is_entropy)
    last = sim[np.lexsort((rows["iteration"].to_numpy(dtype=np.int64)[sim], gid[sim]))]
    similarity = np.full(len(first), np.nan)
    similarity[gid[last]] = value[last]  # sorted by iteration: the last ok iteration is written last
    out["similarity"] = similarity
    out["bases"], out["bases_inferred"] = _bases(out, rows, first, bases)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["entropy_ratio"] = out["entropy"] / np.log(out["bases"])
    return out


def _bases(out: pd.DataFrame, rows: pd.DataFrame, first: np.ndarray, bases: int | None):
    if bases is not None:
        return np.full(len(out), float(bases)), np.zeros(len(out), dtype=bool)
    if "model.bases" in rows.columns:
        return rows["model.bases"].to_numpy(dtype=np.float64)[first], np.zeros(len(out), dtype=bool)
    h_max = out.groupby(["run", "rank", "layer"], observed=True)["entropy"].transform("max").to_numpy()
    with np.errstate(invalid="ignore"):
        return np.maximum(2.0, np.ceil(np.exp(h_max) - 1e-6)), np.ones(len(out), dtype=bool)


def diagnostic_flags(diag: pd.DataFrame) -> list[pd.DataFrame]:
    """collapse and saturation per step from `diagnostics(...)`."""
    def k(r) -> str:
        return f"K ≥ {r.bases:.0f}, inferred" if r.bases_inferred else f"K = {r.bases:.0f}"

    ratio, sim = diag["entropy_ratio"], diag["similarity"]
    c = diag[((sim > th.COLLAPSE_SIMILARITY) & (ratio > th.COLLAPSE_ENTROPY)).to_numpy()]
    s = diag[(ratio < th.SATURATION_ENTROPY).to_numpy()]
    return [
        _table(c[STEP_KEY].assign(quantity="similarity"), "collapse", c["similarity"], th.COLLAPSE_SIMILARITY,
               [f"similarity {r.similarity:.2f} > {th.COLLAPSE_SIMILARITY:g} and entropy {r.entropy_ratio:.2f} ln K"
                f" > {th.COLLAPSE_ENTROPY:g} ln K ({k(r)}): all bases alike, attention uniform"
                for r in c.itertuples()]),
        _table(s[STEP_KEY].assign(quantity="entropy"), "saturation", s["entropy_ratio"], th.SATURATION_ENTROPY,
               [f"entropy {r.entropy:.3g} = {r.entropy_ratio:.3f} ln K < {th.SATURATION_ENTROPY:g} ln K ({k(r)}):"
                " attention nearly one-hot" for r in s.itertuples()]),
    ]


def empty_flags() -> pd.DataFrame:
    """A FLAG_TABLE with no rows."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in FLAG_TABLE})


def flags(frame: pd.DataFrame, bases: int | None = None) -> pd.DataFrame:
    """Every flag raised in a records frame: one row per (run, rank, step, layer, quantity, flag), FLAG_TABLE.
    Steps the GradScaler skipped raise none (`aggregate.trained_steps`)."""
    frame = trained_steps(frame)
    parts = [*status_flags(frame), *decay_flags(decay(frame)), spikes(frame),
             *diagnostic_flags(diagnostics(frame, bases))]
    parts = [p[FLAG_TABLE] for p in parts if p is not None and len(p)]
    if not parts:
        return empty_flags()
    out = pd.concat([p.astype({c: object for c in ("run", "layer", "quantity")}) for p in parts],
                    ignore_index=True)
    return out.sort_values(["run", "rank", "step", "layer", "flag"], kind="stable").reset_index(drop=True)
