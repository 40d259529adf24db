"""The summary of a recorded step that `gradlab.watch(model, log=...)` hands a tracker: a few numbers per layer.

    gradlab/<layer>/<quantity>/decades   log10 R = log10(g_first / g_last) of a per-iteration gradient (MATH.md §7)
    gradlab/<layer>/<quantity>/rho       ρ, the per-iteration factor of that gradient
    gradlab/<layer>/<quantity>/t<k>      g_k itself, at iteration k (only with log_iterations=True)
    gradlab/<layer>/gain                 G = ‖∂L/∂X‖ / ‖∂L/∂X̃‖ of an EM layer (MATH.md §9)
    gradlab/<layer>/call_gain            a watched loop's per-call gain (geometric mean over its calls)
    gradlab/<layer>/regime               the layer's regime over the last REGIME_WINDOW recorded steps, as
                                         REGIME_CODES numbers it (at every REGIME_WINDOW-th recorded step)
    gradlab/amp/skipped                  1 on a step the GradScaler skips (recorded with rec.step(grad_scale=...))

<quantity> is each per-iteration `grad/*` norm the layer records (grad/x, grad/mu, grad/z of an EM layer; grad/in,
grad/out of a watched loop; a tap's own name). The analysis' own functions compute every number (decay's
series_metrics for decades and ρ, mechanism's gains, regime's rules over a window of steps), so a tracker's chart
and a report agree. During training (`StepLog`) the per-step numbers come from the step's rows directly, in well
under a millisecond; the regime, which judges a window (gradlab.analysis.regime, ~0.1 s a call on a CPU), once
per window. Values may be NaN (fewer than two ok iterations, no gradient) or ±inf (a dead gradient): the keys
stay the same from step to step, the regime's from window to window.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from gradlab.analysis.decay import decay, is_gradient_norm, iteration_gradients, series_metrics
from gradlab.analysis.mechanism import geometric_gain, step_mechanism
from gradlab.analysis.regime import REGIMES, regime
from gradlab.records import INPUT_GRADIENT, SKIPPED_STEP, STATUSES, RecordBuffer

PREFIX = "gradlab"
#: the regime code logged per layer: the index of each regime in gradlab.analysis.regime.REGIMES
REGIME_CODES = {name: code for code, name in enumerate(REGIMES)}
#: the per-step quantities a summary carries as they are (gradlab/<quantity>)
STEP_QUANTITIES = (SKIPPED_STEP,)
#: recorded steps per regime verdict: the regime is a majority over a window of steps (gradlab.analysis.regime)
REGIME_WINDOW = 50
#: the columns of `summary`
SUMMARY_COLUMNS = ["run", "rank", "step", "key", "value"]
_ITERATION = re.compile(rf"^{PREFIX}/(?P<layer>[^/]+)/(?P<quantity>.+)/t(?P<t>\d+)$")
_STEP = ["run", "rank", "step"]
_STATUS_CODES = {status: code for code, status in enumerate(STATUSES)}


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
    module docstring; the regime at the last step of each window of REGIME_WINDOW recorded steps, as `StepLog`
    logs it). `iterations` adds each per-iteration gradient norm as .../t<k>."""
    parts = [_decay_metrics(frame), _gain_metrics(frame), _regime_metrics(frame), _step_quantities(frame)]
    if iterations:
        parts.append(_iteration_values(frame))
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(SUMMARY_COLUMNS, [object, "int64", "int64",
                                                                                        object, "float64"])})
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["run", "rank", "step"], kind="stable").reset_index(drop=True)


def step_metrics(rows: Sequence[tuple], iterations: bool = False) -> dict[str, float]:
    """The per-step summary (all but the regime) of one recorded step's rows, the recorder's tuples (run, step,
    layer, iteration, quantity, value, status, rank), without pandas: what `StepLog` logs at every step."""
    metrics: dict[str, float] = {}
    series: dict[tuple[str, str], dict[int, tuple[float, int]]] = {}
    per_layer: dict[tuple[str, str], float] = {}
    for _, _, layer, t, quantity, value, status, _ in rows:
        if not layer:
            if quantity in STEP_QUANTITIES:
                metrics[metric_key("", None, quantity)] = float(value)
        elif t is None:
            if status == "ok":
                per_layer[(layer, quantity)] = value
        elif is_gradient_norm(quantity):
            series.setdefault((layer, quantity), {})[t] = (value, _STATUS_CODES[status])
            if iterations:
                metrics[metric_key(layer, quantity, f"t{t}")] = float(value)
    if series:
        names = list(series)
        width = max(max(s) for s in series.values()) + 1
        values, status = np.full((len(names), width), np.nan), np.full((len(names), width), -1, dtype=np.int8)
        for i, name in enumerate(names):
            for t, (value, code) in series[name].items():
                values[i, t], status[i, t] = value, code
        numbers = series_metrics(values, status)
        for i, (layer, quantity) in enumerate(names):
            for metric in ("decades", "rho"):
                metrics[metric_key(layer, quantity, metric)] = float(numbers[metric][i])
        for layer in {layer for layer, quantity in names if quantity == "grad/in"}:
            inputs, outputs = (values[names.index((layer, q))] if (layer, q) in series else np.full(width, np.nan)
                               for q in ("grad/in", "grad/out"))
            ok = [status[names.index((layer, q))] == 0 if (layer, q) in series else np.zeros(width, bool)
                  for q in ("grad/in", "grad/out")]
            both = ok[0] & ok[1]
            metrics[metric_key(layer, None, "call_gain")] = float(geometric_gain(inputs[both], outputs[both]))
    for layer in {layer for layer, _ in per_layer}:
        if (layer, "grad/x_total") in per_layer and (layer, "grad/out") in per_layer:
            with np.errstate(divide="ignore", invalid="ignore"):
                metrics[metric_key(layer, None, "gain")] = float(
                    np.float64(per_layer[(layer, "grad/x_total")]) / per_layer[(layer, "grad/out")])
    return metrics


class StepLog:
    """The recorder's hook for `watch(log=...)`: each recorded step's rows → `log(metrics, step)`, with the
    regime of the last REGIME_WINDOW recorded steps at every REGIME_WINDOW-th one."""

    def __init__(self, log: Callable[[dict[str, float], int], object], iterations: bool = False,
                 window: int = REGIME_WINDOW):
        self.log, self.iterations, self.window = log, iterations, window
        self._rows: list[tuple] = []  # the window's rows so far
        self._steps = 0

    def __call__(self, rows: Sequence[tuple], step: int) -> None:
        metrics = step_metrics(rows, self.iterations)
        self._rows.extend(rows)
        self._steps += 1
        if self._steps % self.window == 0:
            buffer = RecordBuffer()
            buffer.extend(self._rows)
            self._rows = []
            verdicts = regime(buffer.frame(), fraction=1.0)
            metrics |= {metric_key(str(r.layer), None, "regime"): float(REGIME_CODES[r.regime])
                        for r in verdicts.itertuples(index=False)}
        self.log(metrics, step)


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


def _gain_metrics(frame: pd.DataFrame) -> pd.DataFrame:
    """gain (an EM layer, where grad/x_total and grad/out are ok) and call_gain (a watched loop) per step."""
    m = step_mechanism(frame)
    loops = set(frame.loc[(frame["quantity"] == "grad/in").to_numpy(), "layer"].astype(str))
    layer = m["layer"].astype(str)
    parts = []
    for name, rows in (("gain", m[m["gain"].notna().to_numpy() & ~layer.isin(loops).to_numpy()]),
                       ("call_gain", m[layer.isin(loops).to_numpy()])):
        parts.append(_keys(rows, rows["layer"], [None] * len(rows), [name] * len(rows)).assign(
            value=rows[name].to_numpy(dtype=np.float64)))
    return pd.concat(parts, ignore_index=True)


def _regime_metrics(frame: pd.DataFrame) -> pd.DataFrame:
    """regime per layer at the last step of each window (`window_regimes`)."""
    r = window_regimes(frame)
    return _keys(r, r["layer"], [None] * len(r), ["regime"] * len(r)).assign(
        value=r["regime"].map(REGIME_CODES).to_numpy(dtype=np.float64))


def window_regimes(frame: pd.DataFrame, window: int = REGIME_WINDOW) -> pd.DataFrame:
    """Per (run, rank, layer) and complete window of `window` consecutive recorded steps: `regime` and `reason`
    of gradlab.analysis.regime over that window, at the window's last `step` (what `StepLog` logs). Each window
    is given to regime as a run of its own, so every verdict comes from the same rules as a report's."""
    columns = [*_STEP, "layer", "regime", "reason"]
    steps = frame[_STEP].drop_duplicates().astype({"run": object}).sort_values(_STEP)
    steps["window"] = steps.groupby(["run", "rank"]).cumcount() // window
    full = steps.groupby(["run", "rank", "window"])["step"].transform("size") == window
    steps = steps[full.to_numpy()].assign(end=lambda f: f.groupby(["run", "rank", "window"])["step"].transform("max"))
    rows = frame.astype({"run": object}).merge(steps, on=_STEP)
    if rows.empty or not rows["quantity"].isin(INPUT_GRADIENT).any():
        return pd.DataFrame(columns=columns)
    codes, uniques = pd.factorize(pd.MultiIndex.from_arrays([rows["run"], rows["end"]]))
    verdicts = regime(rows.drop(columns=["window", "end"]).assign(run=pd.Categorical(codes.astype(str))),
                      fraction=1.0)
    which = verdicts["run"].astype(int).to_numpy()
    return pd.DataFrame({"run": pd.Series([uniques[i][0] for i in which], dtype=object),
                         "rank": verdicts["rank"].to_numpy(dtype=np.int64),
                         "step": np.array([uniques[i][1] for i in which], dtype=np.int64),
                         "layer": verdicts["layer"].astype(str).to_numpy(),
                         "regime": verdicts["regime"].to_numpy(), "reason": verdicts["reason"].to_numpy()})


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
