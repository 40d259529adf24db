"""Comparisons of groups of runs (gradlab.analysis.compare): which config keys tell the runs apart, the table
of the report, and the `gradlab compare` command's table for the terminal."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import pandas as pd

from gradlab.analysis import compare, load_configs, load_metrics, load_runs
from gradlab.analysis.compare import METRICS
from gradlab.analysis.decay import iteration_gradients
from gradlab.analysis.load import run_dirs
from gradlab.errors import ConfigError, RecordsError
from gradlab.report import formatting as fmt

REPLICATE_KEYS = ("seed",)  # runs that differ only in these are replicates of one setting, not groups
DEFAULT_BY = ["model.kind"]


def config_keys(configs: pd.DataFrame) -> list[str]:
    """The dotted config keys of a load_configs frame (every column but run and run_dir)."""
    return [c for c in configs.columns if c not in ("run", "run_dir")]


def differing_keys(configs: pd.DataFrame) -> list[str]:
    """Config keys whose values are not the same in every run, in config order."""
    return [k for k in config_keys(configs) if configs[k].astype(str).nunique(dropna=False) > 1]


def comparison_keys(configs: pd.DataFrame) -> list[str]:
    """What to group runs by: the keys that differ (seeds are replicates, not groups), else model.kind."""
    keys = [k for k in differing_keys(configs) if k not in REPLICATE_KEYS]
    return keys or [k for k in DEFAULT_BY if k in configs.columns]


def hue_column(configs: pd.DataFrame) -> str:
    """The colour of each curve in the figures: the one key that tells the runs apart (EM vs HEM get their
    fixed colours), else the run."""
    keys = [k for k in differing_keys(configs) if k not in REPLICATE_KEYS]
    return keys[0] if len(keys) == 1 else "run"


def comparison_table(records: pd.DataFrame, metrics: pd.DataFrame, by: Sequence[str], quantity: str = "grad/x",
                     metric: str = "decades", fraction: float = 0.1) -> pd.DataFrame:
    """gradlab.analysis.compare over the runs' last `fraction` of steps, with each group's final mIoU;
    empty when no run recorded `quantity`."""
    rows = records[(records["quantity"] == quantity).to_numpy()]
    if iteration_gradients(rows).empty:
        return pd.DataFrame()
    return compare(records, by=list(by), quantity=quantity, metric=metric, fraction=fraction,
                   metrics=metrics if len(metrics) else None)


def compare_runs(paths: str | os.PathLike | Iterable[str | os.PathLike], by: Sequence[str] | None = None,
                 quantity: str = "grad/x", metric: str = "decades", fraction: float = 0.1) -> pd.DataFrame:
    """Load the runs and compare them by `by` (default: comparison_keys). Bad keys, quantities or metrics raise
    a GradlabError that lists the valid ones (the CLI prints it on one line)."""
    dirs = run_dirs(paths)
    configs = load_configs(dirs)
    by = list(by) if by else comparison_keys(configs)
    unknown = [k for k in by if k not in config_keys(configs)]
    if unknown:
        raise ConfigError(f"unknown --by key {', '.join(map(repr, unknown))}; valid keys: "
                          f"{', '.join(config_keys(configs))}")
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; valid metrics: {', '.join(METRICS)}")
    if not 0 < fraction <= 1:
        raise ConfigError(f"--fraction {fraction} is out of range: allowed (0, 1] (the last part of each run)")
    records = load_runs(dirs, config=by, missing="skip")
    available = sorted(map(str, iteration_gradients(records)["quantity"].unique()))
    if quantity not in available:
        raise RecordsError(f"no run recorded quantity {quantity!r}; recorded per-iteration gradients: "
                           f"{', '.join(available) or 'none'}")
    metrics = load_metrics(dirs, config=by, missing="skip")
    return comparison_table(records, metrics, by, quantity, metric, fraction)


def format_comparison(table: pd.DataFrame, fraction: float = 0.1) -> str:
    """A plain-text table of `compare` rows: the group, layer, runs, the metric with its 95% CI, final mIoU."""
    if table.empty:
        return "no runs to compare"
    by = list(table.columns[:table.columns.get_loc("layer")])
    metric, quantity = table["metric"].iloc[0], table["quantity"].iloc[0]
    value = fmt.decades if metric == "decades" else fmt.factor
    shown = pd.DataFrame({k: table[k].map(fmt.value) for k in by})
    shown["layer"] = table["layer"].astype(str)
    shown["runs"] = table["runs"]
    shown[metric] = table["estimate"].map(value)
    shown["95% CI"] = [fmt.interval(lo, hi, value) for lo, hi in zip(table["ci_low"], table["ci_high"])]
    if "miou" in table.columns:
        shown["val mIoU"] = table["miou"].map(fmt.score)
        shown["mIoU 95% CI"] = [fmt.interval(lo, hi, fmt.score)
                                for lo, hi in zip(table["miou_ci_low"], table["miou_ci_high"])]
    header = (f"{metric} of {quantity} over the last {fraction:.0%} of each run's recorded steps: mean over the "
              "runs of each group, 95% bootstrap CI over runs (n/a with one run)")
    return header + "\n\n" + shown.to_string(index=False)
