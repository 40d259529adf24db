"""The headline numbers (MATH.md §7): decay of each per-iteration gradient over the last part of training, per
run, layer and quantity; and each run's final validation scores from metrics.parquet."""

from __future__ import annotations

import pandas as pd

from gradlab.analysis import final_metric, summarize, window

DECAY_BY = ["run", "layer", "quantity"]
SCORES = ("miou", "pixel_acc", "loss")


def decay_summary(decay_frame: pd.DataFrame, fraction: float = 0.1) -> pd.DataFrame:
    """One row per (run, layer, quantity) over each run's last `fraction` of recorded steps: `steps`,
    `from_step`, `to_step`, `decades` (mean), `rho`, `retention` (geometric means), `half_depth` (median where
    reached), `half_reached` and `no_grad_iterations` (at the window's last step)."""
    last = window(decay_frame, "last", fraction)
    if last.empty:
        return pd.DataFrame(columns=[*DECAY_BY, "steps", "from_step", "to_step", "decades", "rho", "retention",
                                     "half_depth", "half_reached", "no_grad_iterations"])
    keys = last[DECAY_BY].astype(object)
    span = last.assign(**keys).groupby(DECAY_BY, sort=False).agg(
        from_step=("step", "min"), to_step=("step", "max"), no_grad_iterations=("no_grad_iterations", "last"))
    numbers = summarize(last, by=DECAY_BY)[[*DECAY_BY, "steps", "decades", "rho", "retention", "half_depth",
                                            "half_reached"]]
    numbers = numbers.astype({c: object for c in DECAY_BY})
    return numbers.merge(span.reset_index(), on=DECAY_BY, how="left")


def final_scores(metrics: pd.DataFrame, runs: list[str]) -> pd.DataFrame:
    """Per run: the last recorded value of each of SCORES (val mIoU, pixel accuracy, training loss) and the step
    of the last validation; NaN where a run has none."""
    table = pd.DataFrame(index=pd.Index(runs, name="run"))
    for name in SCORES:
        table[name] = final_metric(metrics, name).rename(index=str).reindex(table.index)
    val = metrics[(metrics["name"] == "miou").to_numpy()]
    table["val_step"] = val.groupby("run", observed=True)["step"].max().rename(index=str).reindex(table.index)
    return table.reset_index()
