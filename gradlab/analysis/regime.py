"""Which regime each run's unrolled layers (EM layers, watched loops) are in over the last part of training, and
why, in one sentence.

The per-step evidence (decay of `grad/x`, collapse, saturation, statuses) is read over a window of the last
steps (collapse and saturation over the last of the steps that have diagnostics, record.diagnostics_every); a
regime holds when at least REGIME_MAJORITY of the window's steps show it. The first that holds wins:

  nonfinite → no_grad → dead → collapse → saturation → one_step → exploding → vanishing → misdirected → attenuated
  → healthy

Collapse comes before the decay regimes because it explains them: when all bases are alike and attention is
uniform, a gradient shared by all bases cancels in the softmax, which looks like extreme decay. `one_step` is a
layer whose gradient reaches only one iteration (grad_iterations = 1): there is no decay to measure.
`misdirected` and `attenuated` come from the mechanism quantities (MATH.md §9, gradlab.analysis.mechanism): the
earlier iterations add a large part that barely agrees with the last one's gradient, or the layer as a whole
passes little gradient while the ratios between its iterations look healthy. Every verdict carries the window's
mechanism numbers (layer gain, branch share, E-step gain, agreement, σ_t and predicted vs measured decay).

A layer in grad_mode "implicit" has no per-iteration gradients; after collapse and saturation it is judged by its
adjoint solve (records.ADJOINT) instead of one_step … healthy: `implicit_fallback` when the solve diverged at
REGIME_MAJORITY of the steps (there its gradient is the two-iteration JFB fallback), else `implicit`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from gradlab.analysis import thresholds as th
from gradlab.analysis._codes import of_quantity, ranges
from gradlab.analysis.aggregate import rows_with, skipped_steps, trained_steps, window
from gradlab.analysis.decay import decay, profile
from gradlab.analysis.flags import diagnostics
from gradlab.analysis.mechanism import mechanism
from gradlab.analysis.wording import iterations, signed
from gradlab.records import ADJOINT, INPUT_GRADIENT, LAYER_KEY, STEP_KEY

REGIMES = ("nonfinite", "no_grad", "dead", "collapse", "saturation", "one_step", "exploding", "vanishing",
           "misdirected", "attenuated", "healthy", "implicit_fallback", "implicit")
#: the per-step evidence that only diagnosed steps have (record.diagnostics_every)
DIAGNOSED = ("similarity", "entropy_ratio")
#: flags whose regime has another name or more than one (any other flag is the regime of its own name)
_REGIMES_OF_FLAG = {"no_grad": ("no_grad", "one_step")}


def regimes_showing(flag: str) -> set[str]:
    """The regimes that show `flag` over a window (no_grad is also one_step's cause); a flag that none of them
    shows was transient."""
    return set(_REGIMES_OF_FLAG.get(flag, (flag,)))


def step_evidence(frame: pd.DataFrame, quantity: str | tuple[str, ...] = INPUT_GRADIENT,
                  bases: int | None = None) -> pd.DataFrame:
    """Per (run, rank, step, layer): the decay of `quantity` (default each layer's input gradient: grad/x of an
    EM layer, grad/in of a watched loop), the diagnostics and the per-step regime booleans."""
    d = decay(frame[of_quantity(frame, quantity)])
    d = d[[*STEP_KEY, "T", "iterations", "last", "decades", "rho", "no_grad_iterations", "nonfinite"]]
    adjoint = adjoint_steps(frame)
    d = pd.concat([d.astype({c: object for c in ("run", "layer")}), adjoint], ignore_index=True) if len(adjoint) \
        else d.assign(**{c: np.nan for c in ADJOINT_COLUMNS})
    diag = diagnostics(frame, bases)[[*STEP_KEY, "similarity", "entropy_ratio"]]
    steps = d.astype({c: object for c in ("run", "layer")}).merge(
        diag.astype({c: object for c in ("run", "layer")}), on=STEP_KEY, how="left")
    steps["no_grad"] = steps["iterations"] == 0
    steps["dead"] = (steps["iterations"] > 0) & (steps["last"] <= th.DEAD_NORM)  # even the last iteration gets 0
    steps["collapse"] = (steps["similarity"] > th.COLLAPSE_SIMILARITY) & (steps["entropy_ratio"] > th.COLLAPSE_ENTROPY)
    steps["saturation"] = steps["entropy_ratio"] < th.SATURATION_ENTROPY  # both False on undiagnosed steps
    steps["one_step"] = steps["iterations"] == 1
    return steps


#: the per-step columns of `adjoint_steps` (NaN for a layer that is not in grad_mode "implicit")
ADJOINT_COLUMNS = ("adjoint_iterations", "adjoint_residual", "diverged")


def adjoint_steps(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (run, rank, step, layer) of a layer in grad_mode "implicit": its adjoint solve (`adjoint_iterations`,
    `adjoint_residual`, `diverged` as 0/1; records.ADJOINT), and `nonfinite`: ∂L/∂X (grad/x_total) not finite."""
    rows = frame[frame["quantity"].isin(ADJOINT).to_numpy()].astype({c: object for c in ("run", "layer", "quantity")})
    if rows.empty:
        return pd.DataFrame(columns=[*STEP_KEY, *ADJOINT_COLUMNS, "nonfinite"])
    wide = rows.pivot_table(index=STEP_KEY, columns="quantity", values="value", aggfunc="first")
    out = wide.rename(columns=dict(zip(ADJOINT, ADJOINT_COLUMNS))).reindex(columns=list(ADJOINT_COLUMNS))
    x_total = frame[(frame["quantity"] == "grad/x_total").to_numpy()].astype({c: object for c in ("run", "layer")})
    bad = x_total.set_index(STEP_KEY)["status"].eq("nonfinite")
    out["nonfinite"] = bad.reindex(out.index, fill_value=False).to_numpy(dtype=bool)
    return out.reset_index().assign(no_grad_iterations="")


def onset(steps: pd.DataFrame, flag: str) -> pd.Series:
    """Per (run, rank, layer): the first step of the last uninterrupted stretch of steps where `flag` holds."""
    s = steps.sort_values("step")
    last_off = s[~s[flag]].groupby(LAYER_KEY)["step"].max().rename("last_off")
    on = s[s[flag]].merge(last_off.reset_index(), on=LAYER_KEY, how="left")
    on = on[on["last_off"].isna() | (on["step"] > on["last_off"])]
    return on.groupby(LAYER_KEY)["step"].min().rename(f"{flag}_onset")


def regime(frame: pd.DataFrame, quantity: str | tuple[str, ...] = INPUT_GRADIENT, fraction: float = 0.1,
           bases: int | None = None) -> pd.DataFrame:
    """One row per (run, rank, layer): `regime` (one of REGIMES) and `reason` (a sentence for the report), with
    the window's numbers: `steps`, `from_step`, `to_step`, `decades` (mean), `rho` (geometric mean),
    `similarity`, `entropy_ratio` (H / ln K), the onsets of collapse and saturation, and the mechanism numbers
    of gradlab.analysis.mechanism (MECHANISM_COLUMNS: NaN where not recorded); for a layer in grad_mode
    "implicit", `share_diverged` and the medians `adjoint_iterations`, `adjoint_residual` of its adjoint solve
    (NaN for the others). Steps the GradScaler skipped are left out (`aggregate.trained_steps`);
    `skipped_steps` counts them per run and rank."""
    skipped = skipped_steps(frame).groupby(["run", "rank"], observed=True).size().rename("skipped_steps")
    frame = trained_steps(frame)
    steps = step_evidence(frame, quantity, bases)
    last = window(steps, "last", fraction)
    with np.errstate(divide="ignore"):
        last = last.assign(log_rho=np.log(last["rho"]))
    agg = last.groupby(LAYER_KEY).agg(
        steps=("step", "size"), from_step=("step", "min"), to_step=("step", "max"), T=("T", "max"),
        decades=("decades", "mean"), log_rho=("log_rho", "mean"), no_grad_iterations=("no_grad_iterations", "last"),
        **{f"share_{r}": (r, "mean") for r in ("nonfinite", "no_grad", "dead", "one_step", "diverged")},
        adjoint_iterations=("adjoint_iterations", "median"), adjoint_residual=("adjoint_residual", "median"))
    agg["rho"] = np.exp(agg.pop("log_rho"))
    diagnosed = rows_with(steps, DIAGNOSED)  # a layer without diagnosed steps gets NaN shares, not 0
    agg = agg.join(window(diagnosed, "last", fraction).groupby(LAYER_KEY).agg(
        similarity=("similarity", "mean"), entropy_ratio=("entropy_ratio", "mean"),
        share_collapse=("collapse", "mean"), share_saturation=("saturation", "mean")))
    agg = agg.join(onset(diagnosed, "collapse")).join(onset(diagnosed, "saturation")).reset_index()
    near_zero = _near_zero_iterations(frame, last, quantity)
    agg["near_zero_iterations"] = [near_zero.get(k, "") for k in agg[LAYER_KEY].itertuples(index=False, name=None)]
    agg = agg.merge(mechanism(frame, fraction).astype({"run": object, "layer": object}), on=LAYER_KEY, how="left")
    agg = agg.merge(skipped.reset_index().astype({"run": object}), on=["run", "rank"], how="left")
    agg["skipped_steps"] = agg["skipped_steps"].fillna(0).astype(int)
    verdicts = [_verdict(row) for row in agg.itertuples(index=False)]
    agg["regime"] = [v[0] for v in verdicts]
    agg["reason"] = [v[1] for v in verdicts]
    return agg


def _near_zero_iterations(frame: pd.DataFrame, last: pd.DataFrame, quantity) -> dict[tuple, str]:
    """Iterations whose geometric-mean g_t / g_last over the window is below VANISHING_RETENTION."""
    chosen = pd.MultiIndex.from_frame(last[["run", "step"]])
    rows = frame[pd.MultiIndex.from_frame(frame[["run", "step"]].astype({"run": object})).isin(chosen)]
    p = profile(rows, quantity)
    p = p[p["decades"] < np.log10(th.VANISHING_RETENTION)]
    return {k: ranges(g["iteration"]) for k, g in p.groupby(LAYER_KEY, observed=True)}


def _verdict(r) -> tuple[str, str]:
    majority = th.REGIME_MAJORITY
    numbers = _diagnostics_text(r)
    decay_text = f"{signed(r.decades)} decades from the first to the last iteration, ρ = {r.rho:.2g} per iteration"
    if r.share_nonfinite >= majority:
        return "nonfinite", f"non-finite gradient norms at {r.share_nonfinite:.0%} of steps {r.from_step}–{r.to_step}"
    if r.share_no_grad >= majority:
        return "no_grad", (f"no gradient reaches any iteration (status no_grad/unused at "
                           f"{iterations(r.no_grad_iterations)}): the layer's input gets none through the loop")
    if r.share_dead >= majority:
        return "dead", (f"the gradient reaching the layer is exactly 0 (or underflowed) at every iteration at "
                        f"{r.share_dead:.0%} of steps {r.from_step}–{r.to_step}: nothing downstream passes gradient "
                        f"back (the layer's output gets none), so there is no decay to read; {numbers}") + _note(r)
    if r.share_collapse >= majority:
        cause = (f"the near-zero gradient through {iterations(r.near_zero_iterations)} is a consequence of the "
                 "collapse, not of saturation" if r.near_zero_iterations else decay_text)
        return "collapse", (f"bases collapsed from step {r.collapse_onset:.0f}: similarity {r.similarity:.2f}, "
                            f"attention uniform (entropy {r.entropy_ratio:.2f} ln K); {cause}") + _note(r)
    if r.share_saturation >= majority:
        return "saturation", (f"attention saturated from step {r.saturation_onset:.0f}: entropy "
                              f"{r.entropy_ratio:.3f} ln K (nearly one-hot), similarity {r.similarity:.2f}; the "
                              f"softmax Jacobian vanishes: {decay_text}") + _note(r)
    if not _missing(r.share_diverged):  # a layer in grad_mode "implicit": no iterations to decay through
        return _adjoint_verdict(r, numbers)
    if r.share_one_step >= majority:
        why = (f"{iterations(r.no_grad_iterations)} run under no_grad" if r.no_grad_iterations else
               "the layer unrolls one iteration")
        return "one_step", f"only iteration {r.T} carries gradient ({why}): no decay to measure; {numbers}"
    if r.decades > np.log10(th.EXPLODING_RETENTION) or r.rho > th.EXPLODING_RHO:
        return "exploding", (f"the gradient grows toward the early iterations: {decay_text}; neither collapse "
                             f"nor saturation ({numbers})") + _note(r)
    if r.decades < np.log10(th.VANISHING_RETENTION):
        zero = f", near zero through {iterations(r.near_zero_iterations)}" if r.near_zero_iterations else ""
        return "vanishing", (f"the gradient vanishes through the iterations: {decay_text}{zero}; neither collapse "
                             f"nor saturation ({numbers})") + _note(r)
    if r.turn >= th.MISDIRECTED_TURN:
        return "misdirected", (f"the earlier iterations add a part {r.r_rest:.2g}× as large as the last one's "
                               f"gradient that barely agrees with it (c_rest = {signed(r.c_rest, 2)}): the gradient "
                               f"the backbone receives turns {r.turn:.0f}° away from the one-step gradient (≥ "
                               f"{th.MISDIRECTED_TURN:g}°): not small but misdirected; {decay_text}; {numbers}"
                               + _note(r))
    if r.gain < th.ATTENUATED_GAIN or r.branch_share < th.ATTENUATED_SHARE:
        return "attenuated", (f"the layer passes little of the gradient it receives (G = {r.gain:.2g}, threshold "
                              f"{th.ATTENUATED_GAIN:g}; EM-branch share {r.branch_share:.2f}, threshold "
                              f"{th.ATTENUATED_SHARE:g}) while the iterations' ratios look healthy: {decay_text}; "
                              f"{numbers}") + _note(r)
    return "healthy", f"healthy: {decay_text}; {numbers}" + _note(r)


def _adjoint_verdict(r, numbers: str) -> tuple[str, str]:
    solve = (f"median residual {r.adjoint_residual:.2g} after {r.adjoint_iterations:.0f} fixed-point steps of the "
             f"adjoint solve")
    if r.share_diverged >= th.REGIME_MAJORITY:
        return "implicit_fallback", (f"the adjoint solve diverged at {r.share_diverged:.0%} of steps {r.from_step}–"
                                     f"{r.to_step}: there the gradient is the two-iteration (JFB) fallback, not the "
                                     f"implicit one ({solve}); {numbers}") + _note(r)
    return "implicit", (f"the adjoint solve did not diverge at {1 - r.share_diverged:.0%} of steps {r.from_step}–"
                        f"{r.to_step} ({solve}): the gradient is the implicit one at the fixed point, up to that "
                        f"residual; {numbers}") + _note(r)


def _diagnostics_text(r) -> str:
    """The window's evidence that was recorded: forward diagnostics, then the mechanism numbers."""
    def two(v: float) -> str:
        return signed(v, 2)

    parts = [text.format(fmt(value) if fmt else value) for text, value, fmt in [
        ("similarity {:.2f}", r.similarity, None), ("entropy {:.2f} ln K", r.entropy_ratio, None),
        ("gain G {:.2g}", r.gain, None), ("per-call gain {:.2g} (geometric mean)", r.call_gain, None),
        ("EM-branch share {:.2f}", r.branch_share, None),
        ("e_gain {:.2g}", r.e_gain, None), ("c_rest {}", r.c_rest, two), ("r_rest {:.2g}", r.r_rest, None),
        ("turn {:.0f}°", r.turn, None), ("‖∂L/∂θ‖ {:.2g}", r.grad_params, None),
        ("σ_t {:.2g} (geometric mean)", r.sigma, None),
        ("decay of grad/mu predicted {} decades", r.predicted, two), ("measured {}", r.measured, two),
        ("alignment {:.2g}", r.alignment, None)] if not _missing(value)]
    return ", ".join(parts) or "no forward diagnostics recorded"


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _note(r) -> str:
    notes = []
    if r.no_grad_iterations:
        its = iterations(r.no_grad_iterations)
        notes.append(f"{its} {'carry' if its.startswith('iterations') else 'carries'} no gradient (no_grad)")
    if 0 < r.share_nonfinite:
        notes.append(f"non-finite norms at {r.share_nonfinite:.0%} of the window's steps")
    if r.skipped_steps:
        notes.append(f"{r.skipped_steps} step{'s' if r.skipped_steps > 1 else ''} that the GradScaler skipped "
                     "(overflow) left out")
    return "".join(f"; {n}" for n in notes)

