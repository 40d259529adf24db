"""Diagnosis, not only numbers: the regime of each run's EM layers with the evidence (gradlab.analysis.regime),
and every flag raised, summarised per run, layer and quantity with a reason a reader can act on."""

from __future__ import annotations

import math

import pandas as pd

from gradlab.analysis import flags, regime
from gradlab.analysis import thresholds as th
from gradlab.analysis._codes import ranges
from gradlab.report import formatting as fmt
from gradlab.report.runs import RunInfo


def regime_legend() -> dict[str, str]:
    """What each regime means, for the report's legend, in the order gradlab.analysis.regime tests them; the
    thresholds are read when called, so a changed `gradlab.analysis.thresholds` value shows."""
    return {
        "nonfinite": "NaN/Inf gradient norms",
        "no_grad": "no iteration receives gradient (grad_iterations = 0)",
        "dead": "the gradient reaching the layer is exactly 0 at every iteration: nothing downstream passes any back",
        "collapse": f"all bases alike (similarity > {th.COLLAPSE_SIMILARITY:g}) and attention uniform (entropy > "
                    f"{th.COLLAPSE_ENTROPY:g} ln K): the gradient cancels in the softmax (not saturation)",
        "saturation": f"attention nearly one-hot (entropy < {th.SATURATION_ENTROPY:g} ln K): the softmax Jacobian "
                      "vanishes (HEMNet's premise)",
        "one_step": "only the last iteration carries gradient: nothing to decay",
        "exploding": f"the gradient grows toward the early iterations (R > {th.EXPLODING_RETENTION:g} or ρ > "
                     f"{th.EXPLODING_RHO:g}: instability)",
        "vanishing": f"more than {-math.log10(th.VANISHING_RETENTION):g} decades of decay, with neither collapse "
                     "nor saturation",
        "misdirected": "the earlier iterations add a large part that barely agrees with the last one's gradient: the "
                       f"full gradient turns ≥ {th.MISDIRECTED_TURN:g}° away from the one-step gradient (not small, "
                       "but pointing elsewhere)",
        "attenuated": f"the layer passes little of what it receives: gain G < {th.ATTENUATED_GAIN:g} or EM-branch "
                      f"share < {th.ATTENUATED_SHARE:g}, while the iterations' ratios look healthy",
        "healthy": "the gradient reaches every iteration",
    }


FLAG_ORDER = ("nonfinite", "exploding", "dead", "vanishing", "collapse", "saturation", "spike", "no_grad")
FLAG_COLUMNS = ["run", "layer", "quantity", "flag", "steps", "first_step", "last_step", "reason"]


def regimes(records: pd.DataFrame, runs: list[RunInfo], fraction: float = 0.1) -> pd.DataFrame:
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


def flag_summary(records: pd.DataFrame, configs: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, layer, quantity, flag): `steps` flagged, `first_step`, `last_step` and a `reason`.

    no_grad comes straight from the record statuses (which iterations, and why: `grad_iterations` or an unused
    state); the other flags carry the evidence of gradlab.analysis.flags at their latest flagged step."""
    parts = [_no_gradient(records, configs), _other_flags(flags(records))]
    table = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else None
    if table is None:
        return pd.DataFrame(columns=FLAG_COLUMNS)
    rank = table["flag"].map({f: i for i, f in enumerate(FLAG_ORDER)}).fillna(len(FLAG_ORDER))
    return table.assign(_rank=rank).sort_values(["run", "_rank", "layer", "quantity"], kind="stable")[FLAG_COLUMNS]


def _other_flags(raised: pd.DataFrame) -> pd.DataFrame:
    raised = raised[(raised["flag"] != "no_grad").to_numpy()]
    if raised.empty:
        return pd.DataFrame(columns=FLAG_COLUMNS)
    raised = raised.sort_values("step", kind="stable")
    table = raised.groupby(["run", "layer", "quantity", "flag"], sort=False).agg(
        steps=("step", "nunique"), first_step=("step", "min"), last_step=("step", "max"),
        evidence=("evidence", "last")).reset_index()
    table["reason"] = [_strip_quantity(e, q) for e, q in zip(table["evidence"], table["quantity"])]
    return table[FLAG_COLUMNS]


def _strip_quantity(evidence: str, quantity: str) -> str:
    prefix = f"{quantity}: "
    return f"latest: {evidence[len(prefix):] if evidence.startswith(prefix) else evidence}"


def _no_gradient(records: pd.DataFrame, configs: pd.DataFrame) -> pd.DataFrame:
    rows = records[records["status"].isin(th.NO_GRAD_STATUSES).to_numpy()]
    if rows.empty:
        return pd.DataFrame(columns=FLAG_COLUMNS)
    rows = rows.astype({c: object for c in ("run", "layer", "quantity", "status")})
    grad_iterations = dict(zip(configs["run"], configs.get("model.grad_iterations", pd.Series(dtype=object))))
    out = []
    for (run, layer, quantity), g in rows.groupby(["run", "layer", "quantity"], sort=False):
        its = ranges(g["iteration"].dropna().unique())
        out.append({"run": run, "layer": layer, "quantity": quantity, "flag": "no_grad",
                    "steps": g["step"].nunique(), "first_step": g["step"].min(), "last_step": g["step"].max(),
                    "reason": no_gradient_reason(its, set(g["status"]), grad_iterations.get(run))})
    return pd.DataFrame(out, columns=FLAG_COLUMNS)


def no_gradient_reason(its: str, statuses: set[str], grad_iterations: object) -> str:
    """e.g. "iterations 1–2 receive no gradient: run under no_grad (model.grad_iterations = 1: only the last
    iteration carries gradient)"."""
    subject = fmt.iterations(its) if its else "this quantity"
    verb = "receive" if its and fmt.iterations(its).startswith("iterations") else "receives"
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
