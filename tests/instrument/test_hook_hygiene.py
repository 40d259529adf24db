"""No hook, sink or tracing flag outlives a Recorder (in the manner of captum's test_hook_removal)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import gradlab
from gradlab import taps as tap_module
from tests.instrument.conftest import make_net


def assert_clean(net):
    for module in net.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks and not module._backward_hooks
    assert not tap_module._SINKS
    assert net.ema.em.tracing is False


def test_no_hook_remains_after_normal_exit(batch):
    net = make_net()
    with gradlab.watch(net) as rec:
        F.cross_entropy(net(batch[0]), batch[1]).backward()
        rec.step(0)
    assert_clean(net)


class Boom(RuntimeError):
    pass


def test_no_hook_remains_after_an_error_inside_the_model(batch):
    net = make_net()

    def explode(module, args):
        raise Boom("inside the model")

    handle = net.ema.em.iterations[2].register_forward_pre_hook(explode)
    with pytest.raises(Boom):
        with gradlab.watch(net):
            net(batch[0])
    handle.remove()
    assert_clean(net)


def test_close_removes_hooks_and_is_idempotent(batch):
    net = make_net()
    rec = gradlab.watch(net)
    net(batch[0])
    rec.close()
    rec.close()
    assert_clean(net)
    with pytest.raises(RuntimeError, match="closed"):
        rec.step(1)


def test_user_tracing_flag_is_restored():
    net = make_net()
    net.ema.em.tracing = True
    with gradlab.watch(net, every=2) as rec:
        rec.step(0)
        assert net.ema.em.tracing is True  # unscheduled step: the user's own flag stays
    assert net.ema.em.tracing is True


def test_watching_a_watched_model_raises_then_works_after_close():
    net = make_net()
    with gradlab.watch(net):
        with pytest.raises(RuntimeError, match="already watched"):
            gradlab.watch(net)
        with pytest.raises(RuntimeError, match="already watched"):
            gradlab.watch(net.ema)  # a part of it, too
    gradlab.watch(net).close()


def test_tap_without_recorder_returns_the_same_tensor():
    t = torch.randn(3, requires_grad=True)
    assert gradlab.tap(t, "state", 1) is t
    assert t._backward_hooks is None or not t._backward_hooks
