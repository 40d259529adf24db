"""Every table and number a report shows, computed from the frames of gradlab.analysis and formatted once for
the HTML, the Markdown and the terminal (`gradlab demo`, `gradlab compare`, the ablation summary).

Every measured number (scores, losses, ratios such as ρ and R, attribution values) goes through `number`: three
significant digits, trailing zeros kept, so that neighbours read alike ("0.592" beside "0.571", "0.500", "12.3").
Decades of decay (a signed log10 R) have their own form with two decimals; counts, steps and iterations are
integers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from gradlab.analysis import compare, final_metric, load_configs, load_metrics, load_runs, regime, summarize, window
from gradlab.analysis._codes import of_names, of_quantity, ranges
from gradlab.analysis.compare import METRICS
from gradlab.analysis.decay import iteration_gradients
from gradlab.analysis.intervals import INTERVAL_METHOD
from gradlab.analysis.load import run_dirs
from gradlab.analysis.regime import regimes_showing
from gradlab.analysis.wording import iterations, signed
from gradlab.errors import ConfigError, RecordsError
from gradlab.records import INPUT_GRADIENT, NO_GRAD_STATUSES

MISSING = "n/a"
#: a config key a run's config.toml lacks (written by another gradlab version, or edited): the run is kept
MISSING_KEY = "missing"
MISSING_KEY_NOTE = (f"{MISSING_KEY}: the run's config.toml lacks this key (written by another gradlab version, "
                    "or edited); such runs form a group of their own")


def _bad(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def number(value: float, digits: int = 3) -> str:
    """`digits` significant digits, trailing zeros kept: "0.571", "0.500", "12.3", "1234"; scientific notation
    outside [0.001, 10000): "1.20e-05"; "0" for zero, "inf"/"-inf" for infinities, n/a for missing and NaN."""
    try:
        value = float(value)
    except (TypeError, ValueError):  # None, pd.NA
        return MISSING
    if math.isnan(value):
        return MISSING
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    exponent = math.floor(math.log10(abs(float(f"{value:.{digits - 1}e}"))))  # after rounding: 9.996 -> 10.0
    if -3 <= exponent < 4:
        return f"{value:.{max(0, digits - 1 - exponent)}f}"
    return f"{value:.{digits - 1}e}"


#: ρ, R and other ratios; mIoU and pixel accuracy; losses: all the same formatter, so a table never mixes styles.
factor = score = loss = number


def decades(value: float) -> str:
    """log10 R with a sign and two decimals ("-0.62", "+0.00", never "-0.00"); −∞ is an exact zero at the first
    iteration."""
    if _bad(value):
        return MISSING
    if math.isinf(value):
        return "-inf (dead)" if value < 0 else "+inf (non-finite)"
    return signed(value, 2)


def half_depth(depth: float, reached: float) -> str:
    """D½ (median over the steps where the gradient halves) and how often it does."""
    if _bad(reached) or reached == 0:
        return "not reached"
    text = f"{depth:g}"
    return text if reached >= 1 else f"{text} ({reached:.0%} of steps)"


def interval(low: float, high: float, fmt=number) -> str:
    """A confidence interval "[low, high]"; n/a when it could not be computed (fewer than two runs)."""
    if _bad(low) or _bad(high):
        return MISSING
    return f"[{fmt(low)}, {fmt(high)}]"


def step_range(first: float, last: float) -> str:
    if _bad(first) or _bad(last):
        return MISSING
    return f"{first:.0f}" if first == last else f"{first:.0f}–{last:.0f}"


def step_window(first: float, last: float, steps: float) -> str:
    """A window of training: "360–399 (40 steps)", "5 (1 step)"."""
    if _bad(steps):
        return MISSING
    return f"{step_range(first, last)} ({steps:.0f} step{'' if steps == 1 else 's'})"


def value(v: object) -> str:
    """A config value as TOML would show it: strings bare, booleans lower case; MISSING_KEY where the run's
    config lacks the key (no config value is NaN: non-finite values are refused)."""
    if isinstance(v, bool):
        return str(v).lower()
    if _bad(v):
        return MISSING_KEY
    return str(v)


@dataclass(frozen=True)
class RunInfo:
    """One run as the report shows it: its name, folder, meta.json status and what it recorded."""

    name: str
    run_dir: Path
    status: str  # meta.json "status": complete, running (killed or still going), stopped, failed, unknown
    recorded_steps: int
    first_step: float
    last_step: float
    has_gradients: bool  # per-iteration grad/* records of an EM/HEM layer (or a tap)
    has_metrics: bool

    @property
    def partial(self) -> bool:
        return self.status != "complete"


DECAY_BY = ["run", "layer", "quantity"]
SCORES = ("miou", "pixel_acc", "loss")


def decay_summary(decay_frame: pd.DataFrame, *, fraction: float = 0.1) -> pd.DataFrame:
    """The headline numbers (MATH.md §7): one row per (run, layer, quantity) over each run's last `fraction` of
    recorded steps: `steps`, `from_step`, `to_step`, `decades` (mean), `rho`, `retention` (geometric means),
    `half_depth` (median where reached), `half_reached` and `no_grad_iterations` (at the window's last step)."""
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


def final_scores(metrics: pd.DataFrame, *, runs: list[str]) -> pd.DataFrame:
    """Per run: the last recorded value of each of SCORES (val mIoU, pixel accuracy, training loss) and the step
    of the last validation; NaN where a run has none."""
    table = pd.DataFrame(index=pd.Index(runs, name="run"))
    for name in SCORES:
        table[name] = final_metric(metrics, name).rename(index=str).reindex(table.index)
    val = metrics[(metrics["name"] == "miou").to_numpy()]
    table["val_step"] = val.groupby("run", observed=True)["step"].max().rename(index=str).reindex(table.index)
    return table.reset_index()


def regime_table(records: pd.DataFrame, *, runs: list[RunInfo], fraction: float = 0.1) -> pd.DataFrame:
    """One row per (run, rank, layer) with `regime` and `reason` (gradlab.analysis.regime over the last
    `fraction` of steps); a run without per-iteration gradients gets one row saying why (regime "none")."""
    table = regime(records, fraction=fraction).astype({"run": object, "layer": object})
    missing = [r for r in runs if r.name not in set(table["run"])]
    extra = pd.DataFrame({"run": [r.name for r in missing], "rank": 0, "layer": "", "regime": "none",
                          "reason": [_why_none(r) for r in missing]})
    order = {r.name: i for i, r in enumerate(runs)}
    table = pd.concat([table, extra], ignore_index=True) if len(extra) else table
    return table.sort_values(["run", "rank", "layer"], key=lambda c: c.map(order) if c.name == "run" else c,
                             kind="stable").reset_index(drop=True)


def _why_none(run: RunInfo) -> str:
    if not run.recorded_steps:
        return "no records: nothing to diagnose"
    return "no per-iteration gradients recorded (no EM/HEM layer, or the recorder was off): nothing to diagnose"


FLAG_ORDER = ("nonfinite", "exploding", "dead", "vanishing", "collapse", "saturation", "spike", "no_grad")
FLAG_SUMMARY_COLUMNS = ["run", "layer", "quantity", "flag", "steps", "first_step", "last_step", "reason",
                        "transient"]


def flag_summary(flag_frame: pd.DataFrame, *, records: pd.DataFrame, configs: pd.DataFrame,
                 regimes: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, layer, quantity, flag) of gradlab.analysis.flags: `steps` flagged, `first_step`,
    `last_step`, a `reason` and `transient` (the layer's regime over the window is not that flag's).

    The reason is the evidence at the latest flagged step; for no_grad, which iterations and why
    (`grad_iterations` or an unused state)."""
    raised = flag_frame.sort_values("step", kind="stable")
    if raised.empty:
        return pd.DataFrame(columns=FLAG_SUMMARY_COLUMNS)
    table = raised.groupby(["run", "layer", "quantity", "flag"], sort=False).agg(
        steps=("step", "nunique"), first_step=("step", "min"), last_step=("step", "max"),
        evidence=("evidence", "last")).reset_index()
    no_gradient = _no_gradient_reasons(records, configs) if (table["flag"] == "no_grad").any() else {}
    table["reason"] = [_reason(r, no_gradient) for r in table.itertuples(index=False)]
    shown = {key: set(g) for key, g in regimes.groupby(["run", "layer"])["regime"]}
    table["transient"] = [not shown.get((r.run, r.layer), set()) & regimes_showing(r.flag)
                          for r in table.itertuples(index=False)]
    rank = table["flag"].map({f: i for i, f in enumerate(FLAG_ORDER)}).fillna(len(FLAG_ORDER))
    return (table.assign(_rank=rank).sort_values(["run", "_rank", "layer", "quantity"], kind="stable")
            [FLAG_SUMMARY_COLUMNS].reset_index(drop=True))


def _reason(flag, no_gradient: dict[tuple, str]) -> str:
    """A no_grad flag's iterations and why, else the evidence at the latest flagged step."""
    key = (flag.run, flag.layer, flag.quantity)
    if flag.flag == "no_grad" and key in no_gradient:
        return no_gradient[key]
    prefix = f"{flag.quantity}: "
    return f"latest: {flag.evidence.removeprefix(prefix)}"


def _no_gradient_reasons(records: pd.DataFrame, configs: pd.DataFrame) -> dict[tuple, str]:
    """(run, layer, quantity) → no_gradient_reason over the iterations and statuses without gradient."""
    rows = records[records["status"].isin(NO_GRAD_STATUSES).to_numpy()]
    rows = rows.astype({c: object for c in ("run", "layer", "quantity", "status")})
    grad_iterations = dict(zip(configs["run"], configs.get("model.grad_iterations", pd.Series(dtype=object))))
    return {(run, layer, quantity): no_gradient_reason(ranges(g["iteration"].dropna().unique()), set(g["status"]),
                                                       grad_iterations.get(run))
            for (run, layer, quantity), g in rows.groupby(["run", "layer", "quantity"], sort=False)}


def no_gradient_reason(its: str, statuses: set[str], grad_iterations: object) -> str:
    """e.g. "iterations 1–2 receive no gradient: run under no_grad (model.grad_iterations = 1: only the last
    iteration carries gradient)"."""
    subject = iterations(its) if its else "this quantity"
    verb = "receive" if subject.startswith("iterations") else "receives"
    if "no_grad" in statuses:
        why = "run under no_grad"
        if grad_iterations not in (None, "all"):
            why += f" (model.grad_iterations = {grad_iterations}: {_carrying(str(grad_iterations))})"
    else:
        why = "the state requires grad but no gradient reached it (status unused: the loss does not use it)"
    return f"{subject} {verb} no gradient: {why}"


def _carrying(grad_iterations: str) -> str:
    if grad_iterations == "0":
        return "no iteration carries gradient"
    if grad_iterations == "1":
        return "only the last iteration carries gradient"
    return f"only the last {grad_iterations} iterations carry gradient"


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


def comparison_table(records: pd.DataFrame, *, metrics: pd.DataFrame, by: Sequence[str],
                     quantity: str | tuple[str, ...] = INPUT_GRADIENT,
                     metric: str = "decades", fraction: float = 0.1) -> pd.DataFrame:
    """gradlab.analysis.compare over the runs' last `fraction` of steps, with each group's final mIoU;
    empty when no run recorded `quantity`."""
    if iteration_gradients(records[of_quantity(records, quantity)]).empty:
        return pd.DataFrame()
    return compare(records, by=list(by), quantity=quantity, metric=metric, fraction=fraction,
                   metrics=metrics if len(metrics) else None)


def compare_runs(paths: str | os.PathLike | Iterable[str | os.PathLike], *, by: Sequence[str] | None = None,
                 quantity: str | tuple[str, ...] = INPUT_GRADIENT, metric: str = "decades",
                 fraction: float = 0.1) -> pd.DataFrame:
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
    if not set(of_names(quantity)) & set(available):
        raise RecordsError(f"no run recorded quantity {' or '.join(of_names(quantity))}; recorded per-iteration "
                           "gradients: "
                           f"{', '.join(available) or 'none'}")
    metrics = load_metrics(dirs, config=by, missing="skip")
    return comparison_table(records, metrics=metrics, by=by, quantity=quantity, metric=metric, fraction=fraction)


def comparison_rows(table: pd.DataFrame, *, label: str | None = None) -> pd.DataFrame:
    """The formatted cells of `compare` rows: the group keys, layer, runs ("5 (3 measured)" where only some runs
    have the metric), the metric (headed `label`, default its name) with its 95% CI, and the final mIoU with its
    CI when the table has one."""
    by = list(table.columns[:table.columns.get_loc("layer")])
    metric = table["metric"].iloc[0]
    form = decades if metric == "decades" else factor
    shown = pd.DataFrame({k: table[k].map(value) for k in by})
    shown["layer"] = table["layer"].astype(str)
    runs, measured = table["runs"], table["measured"]  # measured < runs: the estimate uses fewer runs
    shown["runs"] = [f"{n} ({m} measured)" if 0 < m < n else str(n) for n, m in zip(runs, measured)]
    shown[label or metric] = table["estimate"].map(form)
    shown["95% CI"] = [interval(lo, hi, form) for lo, hi in zip(table["ci_low"], table["ci_high"])]
    if "miou" in table.columns:
        shown["val mIoU"] = table["miou"].map(score)
        shown["mIoU 95% CI"] = [interval(lo, hi, score) for lo, hi in zip(table["miou_ci_low"], table["miou_ci_high"])]
    return shown


def format_comparison(table: pd.DataFrame, *, fraction: float = 0.1) -> str:
    """A plain-text table of `compare` rows: the group, layer, runs, the metric with its 95% CI, final mIoU."""
    if table.empty:
        return "no runs to compare"
    metric, quantity = table["metric"].iloc[0], table["quantity"].iloc[0]
    header = (f"{metric} of {quantity} over the last {fraction:.0%} of each run's recorded steps: mean over the "
              f"runs of each group, {INTERVAL_METHOD} (n/a with one run)")
    rows = comparison_rows(table)
    note = f"\n\n{MISSING_KEY_NOTE}" if lacks_keys(rows) else ""
    return header + "\n\n" + rows.to_string(index=False) + note


def lacks_keys(rows: pd.DataFrame) -> bool:
    """Whether a run's config lacked one of the group keys of these `comparison_rows`."""
    by = rows.columns[:rows.columns.get_loc("layer")]
    return bool((rows[by] == MISSING_KEY).any(axis=None))
