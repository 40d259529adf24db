"""The summary of a recorded step that `gradlab.watch(model, log=...)` hands a tracker: a few numbers per layer.

    gradlab/<layer>/<quantity>/decades   log10 R = log10(g_first / g_last) of a per-iteration gradient (MATH.md §7)
    gradlab/<layer>/<quantity>/rho       ρ, the per-iteration factor of that gradient
    gradlab/<layer>/<quantity>/t<k>      g_k itself, at iteration k (only with log_iterations=True)
    gradlab/<layer>/gain                 G = ‖∂L/∂X‖ / ‖∂L/∂X̃‖ of an EM layer (MATH.md §9)
    gradlab/<layer>/call_gain            a watched loop's per-call gain (geometric mean over its calls)
    gradlab/<layer>/regime               the layer's regime at this step alone, as REGIME_CODES numbers it
    gradlab/amp/skipped                  1 on a step the GradScaler skips (recorded with rec.step(grad_scale=...))

<quantity> is each per-iteration `grad/*` norm the layer records (grad/x, grad/mu, grad/z of an EM layer; grad/in,
grad/out of a watched loop; a tap's own name). The same frame functions as the analysis compute every number
(decay for decades and ρ, regime for the regime and the gains), so a tracker's chart and a report agree.
Values may be NaN (fewer than two ok iterations, no gradient) or ±inf (a dead gradient): the keys stay the same
from step to step.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from gradlab.analysis.decay import decay, iteration_gradients
from gradlab.analysis.regime import REGIMES, regime
from gradlab.records import INPUT_GRADIENT, RecordBuffer

PREFIX = "gradlab"
#: the regime code logged per layer: the index of each regime in gradlab.analysis.regime.REGIMES
REGIME_CODES = {name: code for code, name in enumerate(REGIMES)}
#: the gain logged per layer, by the layer's input gradient: an EM layer's G, a watched loop's per-call gain
GAINS = dict(zip(INPUT_GRADIENT, ("gain", "call_gain")))
#: the per-step quantities a summary carries as they are (gradlab/<quantity>)
STEP_QUANTITIES = ("amp/skipped",)
#: the columns of `summary`
SUMMARY_COLUMNS = ["run", "rank", "step", "key", "value"]
_ITERATION = re.compile(rf"^{PREFIX}/(?P<layer>[^/]+)/(?P<quantity>.+)/t(?P<t>\d+)$")
_STEP = ["run", "rank", "step"]


def metric_key(layer: str, quantity: str | None, name: str) -> str:
    """gradlab/<layer>/<quantity>/<name>, or gradlab/<layer>/<name> for a per-layer number."""
    return "/".join(part for part in (PREFIX, layer, quantity, name) if part)


def iteration_key(key: str) -> tuple[str, str, int] | None:
    """(layer, quantity, k) of a per-iteration key gradlab/<layer>/<quantity>/t<k> (metric_key's inverse for
    these keys; a layer is a module path, without '/'), else None."""
    match = _ITERATION.match(key)
    return (match["layer"], match["quantity"], int(match["t"])) if match else None


def summary(frame: pd.DataFrame, iterations: bool = False) -> pd.DataFrame:
    """The summary of every (run, rank, step) of a records frame, long: SUMMARY_COLUMNS, one row per key (the
    module docstring). `iterations` adds each per-iteration gradient norm as .../t<k>."""
    parts = [_decay_metrics(frame), _regime_metrics(frame), _step_quantities(frame)]
    if iterations:
        parts.append(_iteration_values(frame))
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(SUMMARY_COLUMNS, [object, "int64", "int64",
                                                                                        object, "float64"])})
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["run", "rank", "step"], kind="stable").reset_index(drop=True)


def step_metrics(frame: pd.DataFrame, iterations: bool = False) -> dict[str, float]:
    """The summary of a frame that holds one recorded step (a recorder's step rows) as {key: value}."""
    s = summary(frame, iterations)
    return dict(zip(s["key"], s["value"].astype(float)))


class StepLog:
    """The recorder's hook for `watch(log=...)`: each recorded step's rows → `log(metrics, step)`."""

    def __init__(self, log: Callable[[dict[str, float], int], object], iterations: bool = False):
        self.log, self.iterations = log, iterations

    def __call__(self, rows: Sequence[tuple], step: int) -> None:
        buffer = RecordBuffer()
        buffer.extend(list(rows))
        self.log(step_metrics(buffer.frame(), self.iterations), step)


def _keys(rows: pd.DataFrame, layer, quantity, name) -> pd.DataFrame:
    """SUMMARY_COLUMNS from the step columns of `rows`, with keys metric_key(layer, quantity, name) per row."""
    keys = [metric_key(str(l), None if q is None else str(q), str(n)) for l, q, n in zip(layer, quantity, name)]
    out = pd.DataFrame({c: rows[c].to_numpy() for c in _STEP})
    out["run"] = out["run"].astype(object)
    out["key"] = pd.Series(keys, dtype=object)
    return out


def _decay_metrics(frame: pd.DataFrame) -> pd.DataFrame:
    d = decay(frame)
    if d.empty:
        return d.iloc[:0]
    parts = []
    for name in ("decades", "rho"):
        part = _keys(d, d["layer"], d["quantity"], [name] * len(d))
        part["value"] = d[name].to_numpy(dtype=np.float64)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _regime_metrics(frame: pd.DataFrame) -> pd.DataFrame:
    """regime, and gain (an EM layer) or call_gain (a watched loop), per step and layer, from `step_regimes`."""
    r = step_regimes(frame)
    if r.empty:
        return r.iloc[:0]
    parts = [_keys(r, r["layer"], [None] * len(r), ["regime"] * len(r)).assign(
        value=r["regime"].map(REGIME_CODES).to_numpy(dtype=np.float64))]
    for quantity, gain in GAINS.items():
        rows = r[(r["input_gradient"] == quantity).to_numpy()]
        parts.append(_keys(rows, rows["layer"], [None] * len(rows), [gain] * len(rows)).assign(
            value=rows[gain].to_numpy(dtype=np.float64)))
    return pd.concat(parts, ignore_index=True)


def step_regimes(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (run, rank, step, layer): `regime`, `reason`, `gain`, `call_gain` of that step alone, and the layer's
    `input_gradient` (grad/x of an EM layer, grad/in of a watched loop).

    gradlab.analysis.regime judges a window of a run's steps; here every (run, step) is given to it as a run of
    its own, so that its window is that one step and every verdict comes from the same rules as a report's."""
    columns = [*_STEP, "layer", "input_gradient", "regime", "reason", "gain", "call_gain"]
    inputs = frame[frame["quantity"].isin(INPUT_GRADIENT).to_numpy()]
    if inputs.empty:
        return pd.DataFrame(columns=columns)
    pairs = pd.MultiIndex.from_arrays([frame["run"].astype(str), frame["step"].to_numpy()])
    codes, uniques = pd.factorize(pairs)
    verdicts = regime(frame.assign(run=pd.Categorical(codes.astype(str))), fraction=1.0)
    which = verdicts["run"].astype(int).to_numpy()
    out = pd.DataFrame({"run": pd.Series([uniques[i][0] for i in which], dtype=object),
                        "rank": verdicts["rank"].to_numpy(dtype=np.int64),
                        "step": np.array([uniques[i][1] for i in which], dtype=np.int64),
                        "layer": verdicts["layer"].astype(str).to_numpy()})
    kind = dict(zip(zip(inputs["run"].astype(str), inputs["layer"].astype(str)), inputs["quantity"].astype(str)))
    out["input_gradient"] = [kind.get(key) for key in zip(out["run"], out["layer"])]
    for column in ("regime", "reason", "gain", "call_gain"):
        out[column] = verdicts[column].to_numpy()
    return out[columns]


def _step_quantities(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame[(frame["layer"] == "").to_numpy() & frame["quantity"].isin(STEP_QUANTITIES).to_numpy()]
    part = _keys(rows, [""] * len(rows), [None] * len(rows), rows["quantity"])
    part["value"] = rows["value"].to_numpy(dtype=np.float64)
    return part


def _iteration_values(frame: pd.DataFrame) -> pd.DataFrame:
    rows = iteration_gradients(frame)
    part = _keys(rows, rows["layer"], rows["quantity"], [f"t{int(t)}" for t in rows["iteration"]])
    part["value"] = rows["value"].to_numpy(dtype=np.float64)
    return part
