"""Compare groups of runs (EM vs HEM at each T_train and η): one number per run, a Student-t CI per group.

Each run is first reduced to one number: `metric` of `quantity`, aggregated over the steps of a window of
training (geometric for ratios, see `summarize`). Runs that share the `by` values (e.g. seeds of one setting)
are then aggregated with a Student-t CI of their mean (`intervals.t_interval`, INTERVAL_METHOD). Ratio metrics
(first, last, retention, rho) are averaged as logs and reported back on their own scale (a geometric mean).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from gradlab.analysis._codes import of_names, of_quantity
from gradlab.analysis.aggregate import LINEAR_METRICS, LOG_METRICS, summarize, trained_steps, window
from gradlab.analysis.decay import DECAY_FLAGS, decay
from gradlab.analysis.intervals import mean_interval, welch_difference
from gradlab.records import INPUT_GRADIENT

COMPARE_BY = ("model.kind", "model.iterations")
METRICS = (*LOG_METRICS, *LINEAR_METRICS, "half_depth", "half_reached", *DECAY_FLAGS)


def per_run(frame: pd.DataFrame, by: Sequence[str] = COMPARE_BY, quantity: str | tuple[str, ...] = INPUT_GRADIENT,
            window_name: str = "last", fraction: float = 0.1, how: str = "mean") -> pd.DataFrame:
    """One row per (run, layer): the decay metrics of `quantity` over the window, with the `by` columns.

    `frame` is records with config columns (`load_runs`) or an already computed `decay` frame. From records,
    every recorded layer of every run has its row (`run_layers`), with NaN metrics where it has no `quantity` to
    decay (an implicit-gradient layer, a run without an EM layer): no run is dropped from a comparison.
    """
    by = list(by)
    missing = [c for c in by if c not in frame.columns]
    if missing:
        raise KeyError(f"column(s) {', '.join(missing)} not in the frame: load the runs with "
                       "gradlab.analysis.load_runs (config columns are dotted keys such as model.kind)")
    if "decades" in frame.columns:
        return summarize(window(frame[of_quantity(frame, quantity)], window_name, fraction),
                         by=["run", "layer", *by], how=how)
    rows = trained_steps(frame)
    d = window(decay(rows[of_quantity(rows, quantity)]), window_name, fraction)
    measured = summarize(d, by=["run", "layer", *by], how=how).astype({"run": object, "layer": object})
    return run_layers(frame, by).merge(measured, on=["run", "layer", *by], how="left")


def run_layers(records: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """(run, layer, `keys`) of every recorded layer of every run, whatever it recorded (an implicit-gradient layer
    has no per-iteration norms, and no decay to read), and a row with layer "" for a run that recorded no layer:
    no run is left out of a summary for lack of a quantity."""
    layers = records[(records["layer"] != "").to_numpy() & (records["quantity"] != "grad/params").to_numpy()]
    table = layers[["run", "layer", *keys]].drop_duplicates().astype({"run": object, "layer": object})
    bare = records[~records["run"].isin(set(table["run"]))][["run", *keys]].drop_duplicates()
    return pd.concat([table, bare.astype({"run": object}).assign(layer="")], ignore_index=True)


def final_metric(metrics: pd.DataFrame, name: str = "miou") -> pd.Series:
    """Per run, the value of metric `name` at its last recorded step (e.g. the final validation mIoU)."""
    m = metrics[(metrics["name"] == name).to_numpy()].sort_values("step")
    return m.groupby("run", observed=True)["value"].last().rename(name)


def window_metric(metrics: pd.DataFrame, name: str = "loss", fraction: float = 0.1) -> pd.Series:
    """Per run, the mean of metric `name` over the last `fraction` of the steps it was logged at (e.g. the training
    loss at the end of training, where one step's loss is one batch's)."""
    m = metrics[(metrics["name"] == name).to_numpy()]
    return window(m, "last", fraction).groupby("run", observed=True)["value"].mean().rename(name)


def late_gain(metrics: pd.DataFrame, name: str = "miou", share: float = 0.25) -> pd.Series:
    """Per run, how much metric `name` rose over the last `share` of training: its last value minus its value at
    the last step at or before (1 − share) × its last step (NaN with nothing logged that early): what the final
    stretch of training added."""
    m = metrics[(metrics["name"] == name).to_numpy()].sort_values(["run", "step"])
    rows = {}
    for run, g in m.groupby("run", observed=True, sort=False):
        steps, values = g["step"].to_numpy(), g["value"].to_numpy(dtype=np.float64)
        early = np.flatnonzero(steps <= (1 - share) * steps[-1])
        rows[run] = values[-1] - values[early[-1]] if len(early) and early[-1] < len(steps) - 1 else np.nan
    return pd.Series(rows, name=f"{name}_late_gain", dtype=np.float64).rename_axis("run")


def _group_ci(values: pd.Series, log: bool, level: float) -> tuple[float, float, float]:
    """`mean_interval` of the values, or of their logs (then back on the values' scale: a geometric mean)."""
    v = values.to_numpy(dtype=np.float64)
    if not log:
        return mean_interval(v, level)
    with np.errstate(divide="ignore", invalid="ignore"):
        return tuple(float(np.exp(x)) for x in mean_interval(np.log(v), level))


def compare(frame: pd.DataFrame, by: Sequence[str] = COMPARE_BY, quantity: str | tuple[str, ...] = INPUT_GRADIENT,
            metric: str = "decades", window: str = "last", fraction: float = 0.1, how: str = "mean",
            metrics: pd.DataFrame | None = None, level: float = 0.95) -> pd.DataFrame:
    """One row per (`by` group, layer): `estimate` of `metric` (mean over runs), `ci_low`, `ci_high`, `runs` and
    `measured` (the runs with a value of `metric`, which the estimate and its interval use);
    with `metrics` (load_metrics), also the final mIoU per group: `miou`, `miou_ci_low`, `miou_ci_high`."""
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r} is not a decay metric: use one of {', '.join(METRICS)}")
    runs = per_run(frame, by, quantity, window, fraction, how)
    if metrics is not None:
        runs = runs.merge(final_metric(metrics).reset_index(), on="run", how="left")
    recorded = set(map(str, frame["quantity"].unique()))
    named = ", ".join(q for q in of_names(quantity) if q in recorded)  # e.g. grad/x, without the absent grad/in
    groups = [*by, "layer"]
    rows = []
    for key, g in runs.groupby(groups, observed=True, sort=True, dropna=False):  # a run lacking a key stays
        est, low, high = _group_ci(g[metric], metric in LOG_METRICS, level)
        row = dict(zip(groups, key)) | {"quantity": named, "metric": metric, "window": window,
                                         "estimate": est, "ci_low": low, "ci_high": high, "runs": len(g),
                                         "measured": int(g[metric].notna().sum())}
        if metrics is not None:
            row["miou"], row["miou_ci_low"], row["miou_ci_high"] = _group_ci(g["miou"], False, level)
        rows.append(row)
    return pd.DataFrame(rows)


def contrast(frame: pd.DataFrame, by: Sequence[str], *, key: str = "model.kind", levels: tuple = ("em", "hem"),
             quantity: str | tuple[str, ...] = INPUT_GRADIENT, metric: str = "decades", fraction: float = 0.1,
             metrics: pd.DataFrame | None = None, level: float = 0.95) -> pd.DataFrame:
    """The effect of `key` going from levels[0] to levels[1] (HEM vs EM) at each setting of the other `by` keys:
    per (setting, layer) the difference of the mean `metric` over runs, levels[1] − levels[0], with its Welch
    interval (`difference`, `ci_low`, `ci_high`, and per side the runs with a value), and with `metrics` the same
    for the final mIoU. A `model.step_size` axis pairs every HEM η with EM (whose η is always 1)."""
    if metric not in METRICS or metric in LOG_METRICS:
        raise ValueError(f"metric {metric!r}: a contrast is a difference of means of a linear metric "
                         f"({', '.join(LINEAR_METRICS)}, half_depth or a flag share)")
    runs = per_run(frame, [*(k for k in by if k != key), key], quantity, "last", fraction)
    if metrics is not None:
        runs = runs.merge(final_metric(metrics).reset_index(), on="run", how="left")
    return contrast_runs(runs, by, key=key, levels=levels, column=metric, level=level)


def contrast_runs(runs: pd.DataFrame, by: Sequence[str], *, key: str = "model.kind", levels: tuple = ("em", "hem"),
                  column: str = "decades", level: float = 0.95) -> pd.DataFrame:
    """`contrast` of per-run rows (one per run and layer, with the `by` keys, `column` and, where present,
    `miou`: `per_run`, or gradlab.ablate's run table): the difference of the means of `column`, and of `miou`."""
    others = [k for k in by if k not in (key, "model.step_size")]
    beside = [k for k in by if k == "model.step_size"]  # the HEM side's own settings
    base, other = runs[runs[key] == levels[0]], runs[runs[key] == levels[1]]
    rows = []
    for setting, b in other.groupby([*others, *beside, "layer"], observed=True, sort=True, dropna=False):
        keys = dict(zip([*others, *beside, "layer"], setting))
        a = base[np.logical_and.reduce([base[k].to_numpy() == keys[k] for k in [*others, "layer"]])] \
            if others else base[base["layer"].to_numpy() == keys["layer"]]
        if a.empty:
            continue
        diff, low, high = welch_difference(a[column], b[column], level)
        row = keys | {"metric": column, "difference": diff, "ci_low": low, "ci_high": high,
                      **{f"runs {lv}": int(side[column].notna().sum()) for lv, side in zip(levels, (a, b))}}
        if "miou" in runs.columns:
            row["miou difference"], row["miou_ci_low"], row["miou_ci_high"] = welch_difference(
                a["miou"], b["miou"], level)
        rows.append(row)
    return pd.DataFrame(rows)


def reference_difference(runs: pd.DataFrame, reference: pd.DataFrame, by: Sequence[str],
                         columns: Sequence[str] = ("miou",), paired: bool = False,
                         level: float = 0.95) -> pd.DataFrame:
    """Each setting of `by` among per-run rows `runs` against the runs of `reference` (another study's rows: the
    network without the EM unit, or the same setting at another budget), per column of `columns` the difference
    of means, setting − reference: Welch's interval, or with `paired` the Student-t interval of the per-seed
    differences over the seeds both sides have (the same initialisation on both). One row per setting, with
    `runs` and `reference runs` counted per column as f"{column} runs" / f"{column} reference runs"."""
    by = list(by)
    runs, reference = runs.drop_duplicates("run"), reference.drop_duplicates("run")  # run-level numbers
    rows = []
    for setting, g in runs.groupby(by, observed=True, sort=True, dropna=False) if by else [((), runs)]:
        row = dict(zip(by, setting if isinstance(setting, tuple) else (setting,)))
        a_seeds, b_seeds = reference.set_index("seed"), g.set_index("seed")
        if paired and not (a_seeds.index.is_unique and b_seeds.index.is_unique):
            raise ValueError(f"paired: {row or 'the runs'} and the reference must have one run per seed each")
        if paired and a_seeds.index.intersection(b_seeds.index).empty:
            raise ValueError(f"paired: {row or 'the runs'} and the reference have no seed in common")
        for column in columns:
            a, b = a_seeds[column].dropna(), b_seeds[column].dropna()
            if paired:  # the per-seed differences, over the seeds both sides have
                pairs = (b - a).dropna()  # none where the seeds that have the column differ: not recorded
                (diff, low, high), counts = mean_interval(pairs, level), (len(pairs), len(pairs))
            else:
                (diff, low, high), counts = welch_difference(a, b, level), (len(b), len(a))
            row |= {column: diff, f"{column}_low": low, f"{column}_high": high,
                    f"{column} runs": counts[0], f"{column} reference runs": counts[1]}
        rows.append(row)
    return pd.DataFrame(rows)
