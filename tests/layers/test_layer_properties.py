"""Property tests of the layers' math on random shapes and settings (reliability issue #10, item 2).

Generalises tests/layers/test_unrolled.py (fixed shapes and seeds) to random B, C, H, W, K, T, step sizes
η in (0, 1], temperatures, kernels, normalisation and `grad_iterations`, in float64:

- the output has the input's shape and is finite, and so is the gradient;
- Z^(t) is a distribution over the K bases at every pixel (z >= 0, Σ_k z = 1);
- HEM with η = 1 is EMLayer exactly (same numbers, same gradients, same bases maintenance);
- the trace satisfies the HEM update μ^(t) = P((1 − η) μ^(t−1) + η P(m^(t))), m^(t) the responsibility-weighted
  mean of MATH.md §2 computed from the trace's own Z^(t) (without normalisation: the plain convex combination);
- the gradient w.r.t. the input equals `torch.autograd.grad` through the independent per-image reference of
  tests/layers/reference.py, with the first T − k iterations detached for grad_iterations = k.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradlab.layers import EMLayer, HEMLayer
from tests.layers.reference import EPS, P, reference_em

SETTINGS = settings(max_examples=50, deadline=None)


@st.composite
def cases(draw, max_side=4):
    """(layer kwargs, input shape, seed): small random shapes and settings."""
    B, C, H, W = draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, max_side)), \
        draw(st.integers(1, max_side))
    K, T = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    kw = dict(
        channels=C, bases=K, iterations=T,
        step_size=draw(st.sampled_from([1.0, 0.5]) | st.floats(0.01, 1.0)),
        kernel=draw(st.sampled_from(["dot", "gaussian"])),
        normalize=draw(st.booleans()),
        temperature=draw(st.floats(0.25, 4.0)),
        grad_iterations=draw(st.none() | st.integers(0, T)),
    )
    return kw, (B, C, H, W), draw(st.integers(0, 2**31 - 1)), draw(st.floats(0.2, 3.0))


def build(kw, shape, seed, scale, train=False):
    torch.manual_seed(seed)
    layer = HEMLayer(**kw).double()
    layer.train(train)
    x = (torch.randn(*shape, dtype=torch.float64) * scale).requires_grad_()
    return layer, x


@SETTINGS
@given(case=cases())
def test_output_shape_and_finiteness_and_responsibilities(case):
    kw, shape, seed, scale = case
    layer, x = build(kw, shape, seed, scale)
    layer.tracing = True
    y = layer(x)
    assert y.shape == x.shape and y.dtype == torch.float64 and torch.isfinite(y).all()
    tr = layer.trace
    assert tr.iterations == kw["iterations"] and tr.z[0] is None
    B, C, H, W = shape
    for t in range(1, kw["iterations"] + 1):
        z = tr.z[t]
        assert z.shape == (B, kw["bases"], H, W) and (z >= 0).all()
        torch.testing.assert_close(z.sum(1), torch.ones(B, H, W, dtype=torch.float64), rtol=0, atol=1e-12)
    for mu in tr.mu:
        assert mu.shape == (B, kw["bases"], C) and torch.isfinite(mu).all()
    if y.requires_grad:
        (g,) = torch.autograd.grad((y * torch.randn_like(y)).sum(), x)
        assert g.shape == x.shape and torch.isfinite(g).all()
    else:
        assert kw["grad_iterations"] == 0  # EMANet's code: nothing reaches the input


@SETTINGS
@given(case=cases(), train=st.booleans())
def test_hem_with_step_size_one_is_em_exactly(case, train):
    kw, shape, seed, scale = case
    kw = {**kw, "step_size": 1.0}
    hem, x = build(kw, shape, seed, scale, train)
    em = EMLayer(**{k: v for k, v in kw.items() if k != "step_size"}).double().train(train)
    em.load_state_dict(hem.state_dict())
    w = torch.randn(shape, dtype=torch.float64)
    y_hem, y_em = hem(x), em(x)
    assert torch.equal(y_hem, y_em)
    assert torch.equal(hem.bases, em.bases)  # the same bases maintenance in training mode
    if y_hem.requires_grad:
        (g_hem,) = torch.autograd.grad((y_hem * w).sum(), x)
        (g_em,) = torch.autograd.grad((y_em * w).sum(), x)
        assert torch.equal(g_hem, g_em)


@SETTINGS
@given(case=cases())
def test_the_trace_follows_the_highway_update(case):
    kw, shape, seed, scale = case
    layer, x = build(kw, shape, seed, scale)
    layer.tracing = True
    with torch.no_grad():
        layer(x)
    tr, eta, normalize = layer.trace, kw["step_size"], kw["normalize"]
    X = x.detach().flatten(2)  # (B, C, N)
    for t in range(1, kw["iterations"] + 1):
        z = tr.z[t].flatten(2)  # (B, K, N)
        m = torch.einsum("bkn,bcn->bkc", z, X) / (z.sum(-1, keepdim=True) + EPS)
        prev = tr.mu[t - 1]
        if eta == 1:  # EM, μ^(t) = P(m^(t)): MATH.md §2 (P(P(m)) would differ from P(m) by ε)
            expected = P(m, normalize)
        else:
            expected = P((1 - eta) * prev + eta * P(m, normalize), normalize)
        scale_t = 1 + expected.abs().max()
        torch.testing.assert_close(tr.mu[t], expected, rtol=0, atol=1e-9 * scale_t)
        if not normalize:  # the plain convex combination μ + η (m − μ)
            torch.testing.assert_close(tr.mu[t], prev + eta * (m - prev), rtol=0, atol=1e-9 * scale_t)


def reference_forward(x, mu0, kw):
    """The reference of MATH.md §2 with the first T − k iterations detached (§5), image by image."""
    T = kw["iterations"]
    k = T if kw["grad_iterations"] is None else kw["grad_iterations"]
    args = dict(step_size=kw["step_size"], kernel=kw["kernel"], tau=kw["temperature"], normalize=kw["normalize"])
    outs = []
    for b in range(x.shape[0]):
        xb, start = x[b : b + 1], mu0
        if k == 0:  # every iteration and the reconstruction are constants
            outs.append(reference_em(xb.detach(), mu0, T, **args)[0])
            continue
        if k < T:
            _, mus, _ = reference_em(xb.detach(), mu0, T - k, **args)
            start = mus[0][-1]
        outs.append(reference_em(xb, start, k, **args)[0])
    return torch.cat(outs)


@settings(max_examples=40, deadline=None)
@given(case=cases(max_side=3))
def test_input_gradient_matches_an_independent_reference(case):
    kw, shape, seed, scale = case
    layer, x = build(kw, shape, seed, scale)
    w = torch.randn(shape, dtype=torch.float64)
    y = layer(x)
    y_ref = reference_forward(x, layer.bases, kw)
    torch.testing.assert_close(y, y_ref, rtol=1e-7, atol=1e-9)
    if kw["grad_iterations"] == 0:
        assert not y.requires_grad and not y_ref.requires_grad
        return
    (g,) = torch.autograd.grad((y * w).sum(), x)
    (g_ref,) = torch.autograd.grad((y_ref * w).sum(), x)
    torch.testing.assert_close(g, g_ref, rtol=1e-6, atol=1e-9 * (1 + g_ref.abs().max().item()))


@pytest.mark.parametrize("kernel", ["dot", "gaussian"])
def test_reference_forward_detaches_exactly_the_first_iterations(kernel):
    """The test's own reference: with k = T it is the plain reference; with k < T, fewer paths carry gradient."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    mu0 = P(torch.randn(2, 3, dtype=torch.float64), True)
    kw = dict(iterations=3, step_size=0.5, kernel=kernel, temperature=1.0, normalize=True)
    full = reference_forward(x, mu0, {**kw, "grad_iterations": None})
    torch.testing.assert_close(full, reference_em(x, mu0, 3, 0.5, kernel, 1.0, True)[0])
    one = reference_forward(x, mu0, {**kw, "grad_iterations": 1})
    torch.testing.assert_close(one, full)  # same numbers
    (g_full,) = torch.autograd.grad(full.sum(), x)
    (g_one,) = torch.autograd.grad(one.sum(), x)
    assert not torch.allclose(g_full, g_one)  # different gradients
