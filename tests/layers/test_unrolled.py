"""UnrolledEM / EMLayer / HEMLayer against MATH.md §2–§5."""

from __future__ import annotations

import math

import pytest
import torch

from gradlab.layers import EMLayer, EMSpec, HEMLayer
from tests.layers.reference import reference_em

SETTINGS = [("dot", True), ("dot", False), ("gaussian", True), ("gaussian", False)]


def twin(layer_cls, src, **kw):
    """A layer of another class with the same starting bases as `src`."""
    other = layer_cls(src.channels, src.num_bases, src.num_iterations, **kw)
    other.load_state_dict(src.state_dict())
    return other.to(src.bases.dtype)


@pytest.mark.parametrize("kernel,normalize", SETTINGS)
def test_hem_step_size_one_equals_em(kernel, normalize):
    torch.manual_seed(0)
    em = EMLayer(8, 5, 4, kernel=kernel, normalize=normalize, temperature=2.0).eval()
    hem = twin(HEMLayer, em, step_size=1.0, kernel=kernel, normalize=normalize, temperature=2.0).eval()
    x = torch.randn(2, 8, 4, 3, requires_grad=True)
    w = torch.randn(2, 8, 4, 3)
    y_em, y_hem = em(x), hem(x)
    (g_em,) = torch.autograd.grad((y_em * w).sum(), x)
    (g_hem,) = torch.autograd.grad((y_hem * w).sum(), x)
    torch.testing.assert_close(y_hem, y_em, rtol=0, atol=1e-6)
    torch.testing.assert_close(g_hem, g_em, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kernel,normalize", SETTINGS)
@pytest.mark.parametrize("step_size", [0.3, 1.0, 1.5])
def test_layer_matches_reference_math(kernel, normalize, step_size):
    torch.manual_seed(1)
    layer = HEMLayer(6, 4, 5, step_size=step_size, kernel=kernel, normalize=normalize, temperature=0.7)
    layer = layer.double().eval()
    layer.tracing = True
    x = torch.randn(2, 6, 3, 5, dtype=torch.float64)
    y = layer(x)
    y_ref, mus, ll = reference_em(x, layer.bases, 5, step_size, kernel, 0.7, normalize)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-8)
    for t in range(6):
        torch.testing.assert_close(layer.trace.mu[t], torch.stack([m[t] for m in mus]), rtol=0, atol=1e-8)
    # ℓ: the gaussian reference keeps the −‖x‖²/(2τ) term that the layer drops from its E-step logits
    torch.testing.assert_close(torch.stack(layer.trace.loglik), ll, rtol=0, atol=1e-8)


@pytest.mark.parametrize("kernel", ["dot", "gaussian"])
def test_gradcheck_through_every_iteration(kernel):
    torch.manual_seed(2)
    layer = HEMLayer(4, 3, 3, step_size=0.5, kernel=kernel).double().eval()
    x = torch.randn(1, 4, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,), eps=1e-6, atol=1e-6)


def cell_inputs(layer):
    """Record the alias X^(t) each iteration module receives, through plain forward hooks."""
    seen = []
    handles = [cell.register_forward_hook(lambda m, args, out: seen.append(args[0])) for cell in layer.iterations]
    return seen, handles


@pytest.mark.parametrize("k", [0, 1, 2, 4])
def test_grad_iterations_limits_gradient_to_last_k_aliases(k):
    torch.manual_seed(3)
    layer = HEMLayer(5, 3, 4, grad_iterations=k).eval()
    seen, handles = cell_inputs(layer)
    x = torch.randn(2, 5, 3, 3, requires_grad=True)
    y = layer(x)
    for h in handles:
        h.remove()
    assert [a.requires_grad for a in seen] == [t > 4 - k for t in range(1, 5)]
    assert y.requires_grad == (k > 0)
    if k > 0:
        live = [a for a in seen if a.requires_grad]
        grads = torch.autograd.grad(y.square().sum(), live)
        assert all(g.abs().sum() > 0 for g in grads)


def test_alias_gradients_sum_to_input_gradient():
    torch.manual_seed(4)
    layer = HEMLayer(5, 4, 3, step_size=0.4, kernel="gaussian").eval()
    seen, handles = cell_inputs(layer)
    x = torch.randn(2, 5, 4, 3, requires_grad=True)
    loss = (layer(x) * torch.randn(2, 5, 4, 3)).sum()
    for h in handles:
        h.remove()
    grads = torch.autograd.grad(loss, [x, *seen])
    torch.testing.assert_close(sum(grads[1:]).view_as(x), grads[0], rtol=1e-5, atol=1e-7)


def test_no_gradient_iterations_leave_ema_input_conv_without_gradient():
    from gradlab.layers import EMAUnit

    unit = EMAUnit(EMLayer(6, 4, 3, grad_iterations=0))
    unit(torch.randn(2, 6, 4, 4)).sum().backward()
    assert unit.conv_in.weight.grad is None and unit.conv_in.bias.grad is None
    assert unit.conv_out.weight.grad is not None


def test_bases_maintenance_moves_in_train_mode_only():
    torch.manual_seed(5)
    layer = HEMLayer(6, 4, 2, momentum=0.9)
    layer.tracing = True
    before = layer.bases.clone()
    layer(torch.randn(3, 6, 4, 4))
    mean = layer.trace.mu[-1].mean(0)
    expected = 0.9 * before + 0.1 * mean / (mean.norm(dim=-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(layer.bases, expected)
    layer.eval()
    frozen = layer.bases.clone()
    layer(torch.randn(3, 6, 4, 4))
    assert torch.equal(layer.bases, frozen)


def test_starting_bases_are_normalised_and_share_a_name():
    em, hem = EMLayer(16, 8), HEMLayer(16, 8)
    assert "bases" in dict(em.named_buffers()) and "bases" in dict(hem.named_buffers())
    torch.testing.assert_close(em.bases.norm(dim=1), torch.ones(8), atol=1e-5, rtol=0)


@pytest.mark.parametrize("B,C,K,H,W", [(1, 1, 1, 1, 1), (1, 3, 7, 2, 9), (4, 16, 2, 5, 5), (2, 32, 64, 3, 4)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_and_dtypes(B, C, K, H, W, dtype):
    layer = HEMLayer(C, K, 3).to(dtype)
    x = torch.randn(B, C, H, W, dtype=dtype, requires_grad=True)
    y = layer(x)
    assert y.shape == x.shape and y.dtype == dtype
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_bfloat16_forward_runs():
    layer = HEMLayer(8, 4, 3).to(torch.bfloat16)
    y = layer(torch.randn(2, 8, 4, 4, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()


def test_layer_runs_in_float32_under_autocast():
    layer = HEMLayer(8, 4, 3)
    conv = torch.nn.Conv2d(8, 8, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = conv(torch.randn(2, 8, 4, 4))
        y = layer(h)
    assert h.dtype == torch.bfloat16 and y.dtype == torch.float32


def test_trace_holds_states_indexed_by_iteration():
    layer = HEMLayer(6, 4, 3)
    x = torch.randn(2, 6, 5, 7)
    layer(x)
    assert layer.trace is None  # tracing is off by default
    layer.tracing = True
    layer(x)
    tr = layer.trace
    assert len(tr.mu) == 4 and len(tr.z) == 4 and len(tr.loglik) == 4 and tr.z[0] is None
    assert tr.z[2].shape == (2, 4, 5, 7) and not tr.z[2].requires_grad
    torch.testing.assert_close(tr.z[3].sum(1), torch.ones(2, 5, 7))
    torch.testing.assert_close(tr.feature_norm, x.flatten(2).norm(dim=1).mean())


def test_iteration_modules_are_hookable_one_by_one():
    layer = HEMLayer(6, 4, 3)
    calls = []
    layer.iterations[1].register_forward_hook(lambda m, a, out: calls.append((m.t, out[0].shape, out[1].shape)))
    layer(torch.randn(2, 6, 3, 3))
    assert calls == [(2, (2, 4, 6), (2, 4, 9))]


def test_nan_input_propagates_and_leaves_bases_intact():
    layer = HEMLayer(4, 3, 2)
    before = layer.bases.clone()
    x = torch.randn(1, 4, 3, 3)
    x[0, 0, 1, 1] = math.nan
    y = layer(x)
    assert torch.isnan(y).any()
    assert torch.equal(layer.bases, before)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(channels=0), "channels"),
        (dict(bases=0), "bases"),
        (dict(iterations=0), "iterations"),
        (dict(step_size=0.0), "step_size"),
        (dict(step_size=2.0), "step_size"),
        (dict(temperature=0.0), "temperature"),
        (dict(kernel="cosine"), "kernel"),
        (dict(grad_iterations=-1), "grad_iterations"),
        (dict(grad_iterations=4), "grad_iterations"),
        (dict(momentum=1.5), "momentum"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    args = dict(channels=4, bases=3, iterations=3) | kwargs
    with pytest.raises(ValueError, match=rf"^{name}="):
        HEMLayer(**args)


def test_bad_input_shape_says_what_was_expected():
    layer = HEMLayer(4, 3, 2)
    with pytest.raises(ValueError, match="expected \\(B, C, H, W\\)"):
        layer(torch.randn(4, 3, 3))
    with pytest.raises(ValueError, match="channels=4"):
        layer(torch.randn(1, 5, 3, 3))


def test_em_layer_refuses_a_step_size_and_the_spec_builds_both():
    with pytest.raises(TypeError, match="HEMLayer"):
        EMLayer(4, 3, 2, step_size=0.5)
    assert type(EMSpec("em", bases=3, step_size=0.5).layer(4)) is EMLayer
    assert EMSpec("hem", bases=3, step_size=0.25).layer(4).step_size == 0.25
    with pytest.raises(ValueError, match="kind="):
        EMSpec("gmm").layer(4)


def test_the_spec_is_the_one_home_of_the_layer_defaults():
    spec, em, hem = EMSpec(), EMLayer(4), HEMLayer(4)
    for layer in (em, hem):
        assert (layer.num_bases, layer.num_iterations, layer.kernel, layer.temperature, layer.normalize,
                layer.momentum, layer.grad_iterations) == (spec.bases, spec.iterations, spec.kernel,
                                                           spec.temperature, spec.normalize, spec.momentum,
                                                           spec.grad_iterations)
    assert hem.step_size == spec.step_size and em.step_size == 1.0
    assert EMSpec(grad_iterations="all").grad_iterations is None
