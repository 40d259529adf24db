"""Hook hygiene (as captum tests its own): after an attribution, and after an error raised inside the model
half-way through one, no module holds a hook and the model is back in its own mode."""

from __future__ import annotations

import pytest
import torch
from torch.nn.modules import module as torch_module

from gradlab.attribution import LAYER_METHODS, depth_profile, input_attributions

HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                "_global_backward_pre_hooks")


def hooks_left(model: torch.nn.Module) -> list[str]:
    left = [f"{name or 'model'}.{d}" for name, m in model.named_modules() for d in HOOK_DICTS if getattr(m, d)]
    return left + [g for g in GLOBAL_HOOKS if getattr(torch_module, g)]


def attribute(kind: str, method: str, net, batch):
    if kind == "layer":
        return depth_profile(net, batch.images, batch.classes, batch.regions, methods=method, n_steps=4)
    return input_attributions(net, batch.images, batch.classes, batch.regions, methods=method, n_steps=4)


ALL = [("layer", m) for m in LAYER_METHODS] + [("input", "saliency"), ("input", "integrated-gradients")]


@pytest.mark.parametrize("kind,method", ALL)
def test_no_hook_remains_after_an_attribution(loaded, batch, kind, method):
    net = loaded["hem"].net
    attribute(kind, method, net, batch)
    assert hooks_left(net) == []


class Boom(RuntimeError):
    pass


FAILURES = [(k, m, 1) for k, m in ALL] + [(k, m, 3) for k, m in ALL if m != "saliency"]  # saliency: 1 call


@pytest.mark.parametrize("kind,method,fail_at", FAILURES)
def test_no_hook_remains_after_an_error_inside_the_model(loaded, batch, monkeypatch, kind, method, fail_at):
    """The classifier (after the EM layer, so the iteration's hooks have run) raises on its fail_at-th call:
    the first forward, or one inside captum's gradient pass."""
    net = loaded["hem-one-step"].net
    net.train()  # attribution switches to eval mode: it must switch back after the error too
    classifier, calls = net.head.classifier, []
    forward = classifier.forward

    def failing(x):
        calls.append(1)
        if len(calls) == fail_at:
            raise Boom("inside the model")
        return forward(x)

    monkeypatch.setattr(classifier, "forward", failing)
    try:
        with pytest.raises(Boom):
            attribute(kind, method, net, batch)
        assert hooks_left(net) == []
        assert net.training and all(m.training for m in net.modules())
        assert net.em.grad_iterations == 1
    finally:
        net.eval()


def test_the_hook_check_sees_a_hook(loaded):
    """The check itself can fail."""
    net = loaded["em"].net
    handle = net.em.iterations[0].register_forward_hook(lambda *args: None)
    try:
        assert hooks_left(net) == ["head.ema.em.iterations.0._forward_hooks"]
    finally:
        handle.remove()
