"""Mixed precision and accumulation: `rec.step(grad_scale=...)` divides the scale of a real GradScaler out of the
norms the hooks saw (the same records as an unscaled run), a step the scaler skips for overflow is recorded as
such and not as non-finite training, and it all costs no extra host sync."""

from __future__ import annotations

import math

import pytest
import torch

import gradlab
import gradlab.instrument.recorder as recorder
from gradlab.analysis import regime
from gradlab.errors import ConfigError
from gradlab.records import AGREEMENT
from tests.instrument.conftest import make_net
from tests.integrations.conftest import em_batch, em_loss

SCALE = 2.0 ** 12


def records(scaler: torch.amp.GradScaler | None, steps: int = 2, accumulate: int = 1, tensor_scale: bool = False):
    """A short SGD run of the tiny EM net with `accumulate` backward passes per step, scaled by `scaler`."""
    net = make_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    with gradlab.watch(net, jacobian_every=0) as rec:
        for step in range(steps):
            opt.zero_grad()
            for micro in range(accumulate):
                loss = em_loss(net, em_batch(step * accumulate + micro)) / accumulate
                (scaler.scale(loss) if scaler is not None else loss).backward()
            if scaler is None:
                opt.step()
                rec.step(step)
                continue
            scaler.step(opt)  # unscales .grad first
            scale = scaler._scale if tensor_scale else scaler.get_scale()
            rec.step(step, grad_scale=scale)
            scaler.update()
    return rec


def comparable(frame):
    return frame[frame.quantity.str.startswith("grad/")].set_index(["step", "layer", "iteration", "quantity"])


@pytest.mark.parametrize("accumulate", [1, 2])
@pytest.mark.parametrize("tensor_scale", [False, True])
def test_a_scaled_backward_records_the_norms_of_the_unscaled_one(accumulate, tensor_scale):
    plain = comparable(records(None, accumulate=accumulate).frame())
    rec = records(torch.amp.GradScaler("cpu", init_scale=SCALE), accumulate=accumulate, tensor_scale=tensor_scale)
    scaled = comparable(rec.frame())
    assert scaled.index.equals(plain.index)
    assert scaled["value"].to_numpy() == pytest.approx(plain["value"].to_numpy(), rel=1e-5)
    assert set(plain.index.get_level_values("quantity")) >= {"grad/x", "grad/params", *AGREEMENT}
    frame = rec.frame()
    amp = frame[frame.quantity.str.startswith("amp/")].pivot_table(index="step", columns="quantity", values="value")
    assert amp["amp/scale"].tolist() == [SCALE, SCALE] and amp["amp/skipped"].tolist() == [0.0, 0.0]
    assert rec.nonfinite == 0


def test_an_overflow_step_is_recorded_as_skipped_not_as_nonfinite_training():
    net = make_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    scaler = torch.amp.GradScaler("cpu", init_scale=SCALE)
    before = [p.detach().clone() for p in net.parameters()]
    with gradlab.watch(net, jacobian_every=0) as rec:
        for step, blowup in enumerate([1e36, 1.0]):  # step 0's scaled gradients overflow float32
            opt.zero_grad()
            scaler.scale(em_loss(net, em_batch(step)) * blowup).backward()
            scaler.step(opt)
            if step == 0:
                assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))  # the scaler skipped it
            rec.step(step, grad_scale=scaler.get_scale())
            scaler.update()
    frame = rec.frame()
    skipped = frame[frame.quantity == "amp/skipped"].set_index("step")["value"]
    assert skipped.to_dict() == {0: 1.0, 1: 0.0}
    first = frame[(frame.step == 0) & frame.quantity.str.startswith("grad/")]
    assert (first.status == "nonfinite").any()  # the overflow is in the records, with its usual status
    assert rec.nonfinite == 0  # ... but it is not non-finite training: the scaler dropped that update
    later = frame[(frame.step == 1) & (frame.quantity == "grad/x")]
    assert (later.status == "ok").all()
    verdict = regime(frame, fraction=1.0).iloc[0]  # the analysis judges the step that trained
    assert verdict.skipped_steps == 1 and verdict.regime != "nonfinite" and verdict.steps == 1


def test_without_a_scaler_nonfinite_gradients_still_count():
    net = make_net()
    with gradlab.watch(net, jacobian_every=0) as rec:
        (em_loss(net, em_batch()) * math.inf).backward()
        rec.step(0)
    assert rec.nonfinite > 0
    assert not (rec.frame().quantity == "amp/skipped").any()


def test_grad_scale_adds_no_host_sync(monkeypatch):
    transfers = []
    original = recorder._to_host
    monkeypatch.setattr(recorder, "_to_host", lambda tensors: transfers.append(len(tensors)) or original(tensors))
    records(torch.amp.GradScaler("cpu", init_scale=SCALE), steps=2, tensor_scale=True)
    assert len(transfers) == 2  # one per recorded step, the tensor scale included


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, True, "2"])
def test_a_bad_grad_scale_is_refused(bad):
    net = make_net()
    with gradlab.watch(net) as rec, pytest.raises(ConfigError, match="grad_scale"):
        rec.step(0, grad_scale=bad)


def test_bf16_autocast_records_finite_norms_close_to_float32():
    def run(dtype):
        net = make_net()
        with gradlab.watch(net, jacobian_every=0) as rec:
            with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                loss = em_loss(net, em_batch())
            loss.backward()
            rec.step(0)
        return comparable(rec.frame())

    full, half = run(None), run(torch.bfloat16)
    grad_x = half.xs("grad/x", level="quantity")["value"]
    assert (half.xs("grad/x", level="quantity")["status"] == "ok").all()
    assert grad_x.to_numpy() == pytest.approx(full.xs("grad/x", level="quantity")["value"].to_numpy(), rel=0.1)
