"""`gradlab.watch(model, log=...)`: the summary of each recorded step reaches a `(metrics, step)` callable after the
step's one host sync, on the recording rank only, with the numbers the analysis gives for the same rows."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import gradlab
from gradlab.analysis import decay, regime
from gradlab.analysis.mechanism import call_gain
from gradlab.errors import ConfigError
from gradlab.integrations.metrics import REGIME_CODES, REGIME_WINDOW, iteration_key, metric_key, step_metrics, summary
from gradlab.records import INPUT_GRADIENT
from tests.instrument.conftest import make_net
from tests.integrations.conftest import Refiner, em_loss


class Collect:
    """A tracker: every call kept as (step, metrics)."""

    def __init__(self):
        self.calls: list[tuple[int, dict[str, float]]] = []

    def __call__(self, metrics: dict[str, float], step: int) -> None:
        self.calls.append((step, dict(metrics)))


def train(net, log, steps=5, every=1, batch=None, **options):
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with gradlab.watch(net, every=every, log=log, jacobian_every=0, **options) as rec:
        for step in range(steps):
            opt.zero_grad()
            em_loss(net, batch).backward()
            opt.step()
            rec.step(step)
    return rec


def close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12, abs=0)


def test_log_is_called_once_per_recorded_step_with_stable_keys(batch):
    log = Collect()
    train(make_net(), log, steps=6, every=2, batch=batch)
    assert [step for step, _ in log.calls] == [0, 2, 4]
    keys = [sorted(m) for _, m in log.calls]
    assert keys[0] == keys[1] == keys[2]
    layer = "ema.em"
    expected = {metric_key(layer, q, name) for q in ("grad/x", "grad/mu", "grad/z") for name in ("decades", "rho")}
    assert set(keys[0]) == expected | {metric_key(layer, None, "gain")}
    assert all(isinstance(v, float) for _, m in log.calls for v in m.values())


def test_the_regime_of_each_window_of_recorded_steps_comes_at_its_last_step(batch):
    log = Collect()
    rec = train(make_net(), log, steps=2 * REGIME_WINDOW + 3, batch=batch)
    key = metric_key("ema.em", None, "regime")
    assert [step for step, m in log.calls if key in m] == [REGIME_WINDOW - 1, 2 * REGIME_WINDOW - 1]
    frame = rec.frame()
    for step, metrics in [(s, m) for s, m in log.calls if key in m]:
        window = frame[(frame.step > step - REGIME_WINDOW) & (frame.step <= step)]
        assert metrics[key] == REGIME_CODES[regime(window, fraction=1.0).iloc[0].regime]
    whole = summary(frame)  # the export's regime rows: the same windows
    assert whole[whole.key == key].step.tolist() == [REGIME_WINDOW - 1, 2 * REGIME_WINDOW - 1]


def test_the_numbers_are_the_analysis_numbers_of_the_steps_rows(batch):
    log = Collect()
    rec = train(make_net(), log, steps=3, batch=batch, log_iterations=True)
    frame = rec.frame()
    for step, metrics in log.calls:
        rows = frame[frame.step == step]
        d = decay(rows).set_index("quantity")
        for q in ("grad/x", "grad/mu", "grad/z"):
            assert close(metrics[metric_key("ema.em", q, "decades")], d.loc[q, "decades"])
            assert close(metrics[metric_key("ema.em", q, "rho")], d.loc[q, "rho"])
        value = rows.set_index(["quantity", "iteration"])["value"]
        gain = value[("grad/x_total", pd.NA)] / value[("grad/out", pd.NA)]
        assert metrics[metric_key("ema.em", None, "gain")] == pytest.approx(gain, rel=1e-12)
        per_iteration = {k: v for k, v in metrics.items() if iteration_key(k)}
        assert len(per_iteration) == 4 + 5 + 4  # grad/x 1..4, grad/mu 0..4, grad/z 1..4 (T = 4)
        for key, v in per_iteration.items():
            _, q, t = iteration_key(key)
            assert v == value[(q, t)]


def test_a_watched_loop_logs_its_input_gradient_and_per_call_gain():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), Refiner())
    log = Collect()
    with gradlab.watch(model, loops=["1.cell"], log=log, log_iterations=True) as rec:
        for step in range(2):
            model(torch.randn(3, 6)).square().sum().backward()
            rec.step(step)
    step, metrics = log.calls[-1]
    loop = "1.cell"
    for q in ("grad/in", "grad/out"):
        assert math.isfinite(metrics[metric_key(loop, q, "decades")])
        assert [metrics[metric_key(loop, q, f"t{c}")] for c in range(1, 5)] == list(
            rec.frame().query(f"step == {step} and quantity == '{q}'").sort_values("iteration").value)
    gain = call_gain(rec.frame().query(f"step == {step}")).iloc[0]
    assert metrics[metric_key(loop, None, "call_gain")] == pytest.approx(gain, rel=1e-12) and gain > 0
    assert metric_key(loop, None, "gain") not in metrics


def test_regime_codes_number_every_regime_of_the_analysis():
    from gradlab.analysis.regime import REGIMES

    assert sorted(REGIME_CODES.values()) == list(range(len(REGIMES)))
    assert [name for name, _ in sorted(REGIME_CODES.items(), key=lambda kv: kv[1])] == list(REGIMES)


def test_a_summary_of_many_steps_is_the_summary_of_each_step(batch):
    rec = train(make_net(), None, steps=3, batch=batch)
    frame = rec.frame()
    whole = summary(frame, iterations=True)  # the export's pandas path
    for step in range(3):
        rows = frame[frame.step == step]
        tuples = [(r.run, r.step, r.layer, None if pd.isna(r.iteration) else int(r.iteration), r.quantity, r.value,
                   r.status, r.rank) for r in rows.itertuples(index=False)]
        alone = step_metrics(tuples, iterations=True)  # the live path: the step's rows as the recorder holds them
        part = whole[whole.step == step]
        assert dict(zip(part.key, part.value)) == pytest.approx(alone, nan_ok=True, rel=1e-12)


def test_unscheduled_steps_and_other_ranks_log_nothing(batch, monkeypatch):
    import gradlab.instrument.recorder as recorder

    log = Collect()
    train(make_net(), log, steps=4, every=gradlab.every(10), batch=batch)
    assert [s for s, _ in log.calls] == [0]
    monkeypatch.setattr(recorder, "current_rank", lambda: 1)
    log = Collect()
    rec = train(make_net(), log, steps=2, batch=batch, all_ranks=True)
    assert log.calls == [] and set(rec.frame()["rank"]) == {1}  # rank 1 records with all_ranks, logs nothing


def test_a_failing_logger_leaves_the_recorder_consistent(batch):
    calls = []

    def flaky(metrics, step):
        calls.append(step)
        if step == 1:
            raise ConnectionError("tracker down")

    net = make_net()
    rec = gradlab.watch(net, log=flaky, jacobian_every=0)
    for step in range(3):
        em_loss(net, batch).backward()
        if step == 1:
            with pytest.raises(ConnectionError):
                rec.step(step)
        else:
            rec.step(step)
    rec.close()
    assert calls == [0, 1, 2] and sorted(rec.frame().step.unique()) == [0, 1, 2]


def test_log_must_be_callable():
    with pytest.raises(ConfigError, match="log=.*callable"):
        gradlab.watch(make_net(), log={"not": "callable"})


def test_a_model_without_unrolled_layers_logs_an_empty_summary():
    model = nn.Linear(3, 1)
    log = Collect()
    with gradlab.watch(model, log=log) as rec:
        model(torch.randn(2, 3)).sum().backward()
        rec.step(0)
    assert log.calls == [(0, {})]


class Tapped(nn.Module):
    """A module with its own taps (gradlab.tap): a quantity of its own name, no input gradient."""

    def __init__(self):
        super().__init__()
        self.w = nn.Linear(4, 4)

    def forward(self, x):
        for t in range(1, 4):
            x = gradlab.tap(torch.tanh(self.w(x)), "grad/state", t, module=self)
        return x


def test_a_custom_tap_gets_decades_and_iterations_but_no_regime():
    model = nn.Sequential(Tapped())
    log = Collect()
    with gradlab.watch(model, log=log, log_iterations=True) as rec:
        model(torch.randn(2, 4)).sum().backward()
        rec.step(0)
    metrics = log.calls[0][1]
    assert {iteration_key(k) for k in metrics if iteration_key(k)} == {("0", "grad/state", t) for t in (1, 2, 3)}
    assert metric_key("0", "grad/state", "decades") in metrics
    assert not [k for k in metrics if k.endswith("/regime")]  # a regime needs an input gradient
    assert "grad/state" not in INPUT_GRADIENT


def test_values_may_be_nan_but_keys_stay(batch):
    """An EM layer with one differentiable iteration: decades and ρ need two, so they are NaN, not missing."""
    log = Collect()
    train(make_net(grad_iterations=1), log, steps=REGIME_WINDOW, batch=batch)
    for _, metrics in log.calls:
        assert np.isnan(metrics[metric_key("ema.em", "grad/x", "decades")])
    assert log.calls[-1][1][metric_key("ema.em", None, "regime")] == REGIME_CODES["one_step"]


def _modules_after(statement: str) -> list[str]:
    code = f"import sys; {statement}; print(sorted(m for m in sys.modules if m.startswith('gradlab.integrations')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return eval(out)


def test_the_recorder_does_not_import_the_integrations():
    assert _modules_after("import gradlab.instrument") == []
    assert "gradlab.integrations.metrics" in _modules_after("import gradlab.integrations.metrics")
