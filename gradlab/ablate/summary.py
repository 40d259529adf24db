"""What an ablation found: per grid point (seeds pooled) the final val mIoU, the training loss at the end and the
decades of decay of grad/x and grad/mu (MATH.md §7) with Student-t CIs over seeds, the mechanism numbers (§9) and
the regime of each seed's run; as a table and a figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from gradlab.analysis import load_metrics, load_runs, regime
from gradlab.analysis.compare import contrast_runs, final_metric, late_gain, per_run, run_layers, window_metric
from gradlab.analysis.intervals import INTERVAL_LABEL, mean_interval
from gradlab.analysis.wording import signed
from gradlab.plots.common import HUE_FORMATS
from gradlab.report import tables as fmt

QUANTITIES = ("grad/x", "grad/mu")
#: mechanism numbers (MATH.md §9) averaged over a setting's runs: layer gain, turn of the full gradient away from
#: the one-step gradient (degrees), total parameter-gradient norm, the geometric mean of the iterations' Jacobian
#: norms σ_t, and for grad_mode implicit the share of steps whose adjoint solve diverged (gradlab.analysis.regime)
MECHANISM_SUMMARY = {"gain": "gain G", "turn": "turn °", "grad_params": "‖∂L/∂θ‖", "sigma": "σ_t",
                     "share_diverged": "adjoint diverged"}
#: the share of training over which `late_gain` measures how much val mIoU still rose at the end (under the poly
#: schedule, whose learning rate decays to 0, part of that rise is the annealing itself)
LATE_SHARE = 0.25
#: the per-run numbers pooled with an interval over seeds: final val mIoU, its rise over the last LATE_SHARE of
#: training, training loss (mean over the last `fraction` of steps) and the decades of decay of each quantity
INTERVAL_COLUMNS = ("miou", "miou_late_gain", "train_loss", *(f"{q} decades" for q in QUANTITIES))
#: the learning curve of a run per validation (`run_curves`): val mIoU and the training loss since the last one
CURVE_COLUMNS = ("miou", "train_loss")
#: the per-run numbers `contrast_markdown` differences between HEM and EM
CONTRASTED = ("grad/x decades", "miou", "train_loss")
#: the per-run columns of `run_table` (after run, layer, the grid keys and seed): what `pool` reads
RUN_COLUMNS = (*INTERVAL_COLUMNS, "regime", "similarity", "entropy_ratio", *MECHANISM_SUMMARY)
#: the per-run numbers `pool` averages without an interval: the regime's evidence
MEAN_COLUMNS = ("similarity", "entropy_ratio", *MECHANISM_SUMMARY)
#: the per-run columns that hold numbers (a run's regime is a name); NaN where a run has none
NUMBER_COLUMNS = tuple(c for c in RUN_COLUMNS if c != "regime")
#: per-run columns added after studies were banked: a runs.csv written before reads them as not recorded (NaN),
#: and the summary shows them only where some run has them
LATER_COLUMNS = ("miou_late_gain", "train_loss", "sigma", "share_diverged")


def summarize_ablation(run_dirs: Sequence[Path], by: Sequence[str], fraction: float = 0.1) -> pd.DataFrame:
    """One row per (`by` values, layer): `runs`, `miou` and, per quantity q, `q decades` with `_low` / `_high`
    (INTERVAL_METHOD), then `regimes` ("healthy 3/3"), `similarity` and `entropy_ratio`. Metrics
    over the last `fraction` of steps."""
    records, metrics = load_runs(run_dirs), load_metrics(run_dirs)
    return summary_table(records, metrics, by, fraction)


def summary_table(records: pd.DataFrame, metrics: pd.DataFrame, by: Sequence[str], fraction: float = 0.1):
    """`summarize_ablation` of loaded records and metrics: `pool` of their `run_table`."""
    return pool(run_table(records, metrics, by, fraction), by)


def pool(runs: pd.DataFrame, by: Sequence[str], level: float = 0.95) -> pd.DataFrame:
    """Per (`by` values, layer) from per-run rows (`run_table`, or a runs.csv): `runs`, the mean over runs of each
    of INTERVAL_COLUMNS with its INTERVAL_METHOD bounds (`_low`, `_high`), `regimes` ("healthy 2/3, collapse
    1/3", most common first) and the evidence (MEAN_COLUMNS) averaged over the runs. Each number comes from the
    runs that have it: `<column>_runs` counts them (fewer than `runs` where some runs did not record it)."""
    by = list(by)
    rows = []
    for key, g in runs.groupby([*by, "layer"], observed=True, sort=True, dropna=False):
        row = dict(zip([*by, "layer"], key)) | {"runs": len(g)}
        for column in INTERVAL_COLUMNS:
            row[column], row[f"{column}_low"], row[f"{column}_high"] = mean_interval(g[column], level)
        row["regimes"] = ", ".join(f"{name} {n}/{len(g)}" for name, n in g["regime"].value_counts().items())
        row |= {c: g[c].mean() for c in MEAN_COLUMNS}
        rows.append(row | {f"{c}_runs": int(g[c].notna().sum()) for c in NUMBER_COLUMNS})
    return pd.DataFrame(rows)


def run_table(records: pd.DataFrame, metrics: pd.DataFrame, by: Sequence[str], fraction: float = 0.1) -> pd.DataFrame:
    """One row per (run, layer): the numbers `summary_table` pools over seeds, per run: the `by` values and the
    seed, the final val mIoU and its rise over the last LATE_SHARE of training, the mean training loss and per
    quantity q the mean `q decades` over the last `fraction` of steps, and the run's regime with its evidence
    (similarity, entropy_ratio, MECHANISM_SUMMARY)."""
    by = list(by)
    keys = [k for k in (*by, "seed") if k in records.columns]
    table = run_layers(records, keys)
    for quantity in QUANTITIES:
        d = per_run(records, by=keys, quantity=quantity, fraction=fraction)[["run", "layer", *keys, "decades"]]
        d = d.astype({"run": object, "layer": object}).rename(columns={"decades": f"{quantity} decades"})
        table = table.merge(d, on=["run", "layer", *keys], how="left")
    table = table.merge(final_metric(metrics).reset_index().astype({"run": object}), on="run", how="left")
    loss = window_metric(metrics, "loss", fraction).rename("train_loss")
    for column in (late_gain(metrics, "miou", LATE_SHARE), loss):
        table = table.merge(column.reset_index().astype({"run": object}), on="run", how="left")
    verdicts = regime(records, fraction=fraction).astype({"run": object, "layer": object})
    evidence = ["regime", *MEAN_COLUMNS]
    table = table.merge(verdicts[["run", "layer", *evidence]], on=["run", "layer"], how="left")
    return table[["run", "layer", *keys, *RUN_COLUMNS]].sort_values(["run", "layer"], ignore_index=True)


def run_curves(metrics: pd.DataFrame) -> pd.DataFrame:
    """The learning curves of runs, small enough to bank (OUT/curves.csv): one row per (run, validation step)
    with CURVE_COLUMNS, `miou` and `train_loss`, the mean training loss over the steps since the run's previous
    validation (up to and including this one)."""
    val = metrics[(metrics["name"] == "miou").to_numpy()].sort_values(["run", "step"])
    loss = metrics[(metrics["name"] == "loss").to_numpy()]
    parts = []
    for run, v in val.groupby("run", observed=True, sort=True):
        steps, losses = v["step"].to_numpy(), loss[(loss["run"] == run).to_numpy()]
        since = np.searchsorted(steps, losses["step"].to_numpy(), side="left")  # the validation each step leads to
        means = losses.groupby(since)["value"].mean()
        parts.append(pd.DataFrame({"run": str(run), "step": steps, "miou": v["value"].to_numpy(dtype=np.float64),
                                   "train_loss": means.reindex(range(len(steps))).to_numpy(dtype=np.float64)}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["run", "step", *CURVE_COLUMNS])


def curve_panel_frame(curves: pd.DataFrame, runs: pd.DataFrame, keys: Sequence[str],
                      level: float = 0.95) -> pd.DataFrame:
    """The learning curves pooled over seeds in the long form of `gradlab.plots.ablation_panel` (x = step, the
    steps done at the validation): per setting of `keys` and validation, the mean of each of CURVE_COLUMNS over
    the runs with its INTERVAL_METHOD bounds."""
    keys = list(keys)
    settings = runs[["run", *keys]].drop_duplicates("run").astype({"run": str})
    joined = curves.astype({"run": str}).merge(settings, on="run", how="inner")
    rows = []
    for key, g in joined.groupby([*keys, "step"], observed=True, sort=True):
        label = setting_label(pd.Series(dict(zip([*keys, "step"], key))), keys)
        for metric in CURVE_COLUMNS:
            estimate, low, high = mean_interval(g[metric], level)
            rows.append({"metric": metric, "estimate": estimate, "ci_low": low, "ci_high": high,
                         "step": key[-1] + 1, "setting": label})  # steps done: 2000, not index 1999
    return pd.DataFrame(rows).dropna(subset=["estimate"])


def setting_label(row: pd.Series, keys: Sequence[str]) -> str:
    """"EM", "HEM η = 0.5", "HEM η = 0.5, τ = 0.1": the row's values of `keys` (EM's η is always 1: left out)."""
    parts = []
    for k in keys:
        if k == "model.step_size" and str(row.get("model.kind", "")).lower() == "em":
            continue
        parts.append(str(row[k]).upper() if k == "model.kind" else HUE_FORMATS.get(k, f"{k} = {{}}").format(row[k]))
    return " ".join(parts) if "model.kind" in keys else ", ".join(parts)


def panel_frame(table: pd.DataFrame, x: str, keys: Sequence[str]) -> pd.DataFrame:
    """The summary in the long form of `gradlab.plots.ablation_panel`: metric, estimate, CI, x, setting."""
    hue_keys = [k for k in keys if k != x]
    settings = table.apply(setting_label, axis=1, keys=hue_keys) if hue_keys else pd.Series("all", table.index)
    rows = []
    for metric, column in [("miou", "miou"), *((f"{q} decades", f"{q} decades") for q in QUANTITIES)]:
        rows.append(pd.DataFrame({"metric": metric, "estimate": table[column], "ci_low": table[f"{column}_low"],
                                  "ci_high": table[f"{column}_high"], x: table[x], "setting": settings}))
    return pd.concat(rows, ignore_index=True)


def contrast_markdown(runs: pd.DataFrame, by: Sequence[str]) -> str | None:
    """HEM − EM at each setting of the other grid keys, from per-run rows (`run_table`, or a runs.csv): the
    difference of the means over seeds of each of CONTRASTED (the LATER_COLUMNS among them where some run has
    them), each with Welch's 95% interval (analysis.compare.contrast_runs), as Markdown; "(3 + 2 runs)" beside a
    difference that fewer runs than the setting's recorded. None without both kinds."""
    if "model.kind" not in by or not {"em", "hem"} <= set(runs["model.kind"].astype(str)):
        return None
    shown = [c for c in CONTRASTED if c not in LATER_COLUMNS or runs[c].notna().any()]
    tables = {c: contrast_runs(runs, by, column=c) for c in shown}
    seeds = tables["miou"]
    if seeds.empty:
        return None
    keys = [c for c in seeds.columns[:seeds.columns.get_loc("layer")]]
    head = [*keys, "seeds EM + HEM", *(f"Δ {HEADINGS[c]} [Welch 95% CI]" for c in shown)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, r in seeds.iterrows():
        cells = [_value(r[k]) for k in keys] + [_seeds(r)]
        for c in shown:
            d = tables[c].loc[i]
            cell = _ci({"x": d["difference"], "x_low": d["ci_low"], "x_high": d["ci_high"]}, "x", _form(c, True))
            partial = _seeds(d) != _seeds(r) and d["runs em"] > 0 and d["runs hem"] > 0
            cells.append(f"{cell} ({_seeds(d)} runs)" if partial else cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def reference_markdown(table: pd.DataFrame, by: Sequence[str], reference: str, paired: bool = False) -> str:
    """`analysis.compare.reference_difference` as Markdown: per setting the runs behind it ("5 + 5": the
    setting's and the reference's; paired, the seed pairs), then per compared column the difference setting −
    `reference` (its name in the headings) with its interval, "(3 + 5 runs)" ("(2 runs)" paired) beside one
    that fewer runs recorded; columns no run has are left out."""
    columns = [c for c in HEADINGS if c in table.columns and np.isfinite(table[c]).any()]
    method = f"paired {INTERVAL_LABEL}" if paired else "Welch 95% CI"
    head = [*by, "seed pairs" if paired else f"runs + {reference}",
            *(f"Δ {HEADINGS[c]} vs {reference} [{method}]" for c in columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in table.iterrows():
        counts = [str(int(r[f"{c} runs"])) if paired else f"{int(r[f'{c} runs'])} + {int(r[f'{c} reference runs'])}"
                  for c in columns]
        cells = [_value(r[k]) for k in by] + [counts[0] if counts else fmt.MISSING]
        for c, n in zip(columns, counts):
            cell = _ci(r, c, _form(c, True))
            cells.append(cell if n == counts[0] else f"{cell} ({_runs(int(n)) if paired else f'{n} runs'})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


#: the headings of the summary's columns (INTERVAL_COLUMNS get "[Student-t 95% CI]" appended)
HEADINGS = {"miou": "val mIoU", "miou_late_gain": f"mIoU rise, last {LATE_SHARE:.0%}", "train_loss": "train loss",
            **{f"{q} decades": f"{q} decades" for q in QUANTITIES}, "similarity": "bases sim.",
            "entropy_ratio": "H / ln K", **MECHANISM_SUMMARY}


def to_markdown(table: pd.DataFrame, by: Sequence[str]) -> str:
    """The summary as a Markdown table: per grid point the mean over seeds with its [Student-t 95% CI], and
    "(3 runs)" beside a number that fewer than the setting's runs recorded. A column added after a study was
    banked (LATER_COLUMNS) is shown only where some run has it."""
    shown = [c for c in (*INTERVAL_COLUMNS, *MEAN_COLUMNS) if c not in LATER_COLUMNS or np.isfinite(table[c]).any()]
    head = [*by, "seeds", *(f"{HEADINGS[c]} [{INTERVAL_LABEL}]" if c in INTERVAL_COLUMNS else HEADINGS[c]
                            for c in shown), "regimes (runs)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in table.iterrows():
        cells = [_value(r[k]) for k in by] + [str(int(r["runs"]))]
        for c in shown:
            cell = _ci(r, c, _form(c)) if c in INTERVAL_COLUMNS else fmt.number(r[c])
            partial = 0 < r[f"{c}_runs"] < r["runs"]
            cells.append(f"{cell} ({_runs(r[f'{c}_runs'])})" if partial else cell)
        cells.append(str(r["regimes"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _ci(row: pd.Series, column: str, form) -> str:
    """"0.571 [0.552, 0.590]" (the estimate and its CI in the report's formats); the estimate alone without a CI."""
    est, low, high = row[column], row[f"{column}_low"], row[f"{column}_high"]
    if not np.isfinite(est):
        return fmt.MISSING
    bounds = fmt.interval(low, high, form)
    return form(est) if bounds == fmt.MISSING else f"{form(est)} {bounds}"


def _runs(n: float) -> str:
    """"1 run", "3 runs"."""
    return f"{int(n)} run{'' if n == 1 else 's'}"


def _seeds(row: pd.Series) -> str:
    """"5 + 4": the runs of EM and of HEM behind a contrast."""
    return f"{int(row['runs em'])} + {int(row['runs hem'])}"


def _form(column: str, difference: bool = False):
    """How a column's numbers are written: decades signed with two decimals, a difference of scores (and the late
    rise of mIoU) signed with three, any other number with three significant digits."""
    if column.endswith(" decades"):
        return fmt.decades
    return _difference if difference or column == "miou_late_gain" else fmt.number


def _difference(value: float) -> str:
    """A difference of scores with a sign and three decimals ("+0.004", never "-0.000")."""
    return fmt.MISSING if not np.isfinite(value) else signed(value, 3)


def _value(v) -> str:
    return f"{v:g}" if isinstance(v, float | np.floating) else str(v)
