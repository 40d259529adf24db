"""grad_mode="implicit": the implicit-function-theorem gradient at the fixed point equals the limit of
backpropagation through a long unroll, checked against torch.autograd.grad of that unroll."""

from __future__ import annotations

import pytest
import torch

from gradlab.errors import ConfigError
from gradlab.layers import EMLayer, EMSpec, HEMLayer
from gradlab.layers.implicit import solve_adjoint
from gradlab.layers.kernels import project

B, C, H, W, K, TAU, T = 2, 4, 5, 5, 2, 0.5, 200  # small C, K = 2, τ = 0.5: EM converges well within T


def make(kind: str, **kw):
    torch.manual_seed(1)  # the same starting bases for every mode
    layer = EMLayer(C, K, T, temperature=TAU, **kw) if kind == "em" else HEMLayer(C, K, T, 0.5, temperature=TAU, **kw)
    return layer.double().eval()


def inputs():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(B, C, H, W, generator=g, dtype=torch.float64)
    return x.requires_grad_(), torch.randn(B, C, H, W, generator=g, dtype=torch.float64)


def input_grad(layer, x, weight):
    return torch.autograd.grad((layer(x) * weight).sum(), x)[0]


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("kind", ["em", "hem"])
def test_implicit_gradient_equals_the_gradient_of_a_long_unroll(kind):
    x, weight = inputs()
    unrolled = make(kind)
    cell, mu = unrolled.iterations[0], unrolled.bases.expand(B, -1, -1)
    with torch.no_grad():  # the forward has converged: ‖F(μ^(T)) − μ^(T)‖ is round-off
        for _ in range(T):
            mu = cell(x.flatten(2), mu)[0]
        assert (cell(x.flatten(2), mu)[0] - mu).norm() / mu.norm() < 1e-10
    expected = input_grad(unrolled, x, weight)  # backpropagation through all T = 200 iterations
    # the default tolerance 1e-6; HEM's damped step contracts more slowly (J ≈ (1 − η) I + η J_EM): more steps
    implicit = make(kind, grad_mode="implicit", implicit_iterations=500)
    got = input_grad(implicit, x, weight)
    iterations, residual, diverged = implicit.last_adjoint
    assert residual < 1e-6 and 1 <= iterations < 500 and diverged == 0
    assert rel(got, expected) < 1e-4
    assert torch.equal(implicit(x), unrolled(x))  # the same forward, only the backward differs
    tight = make(kind, grad_mode="implicit", implicit_tolerance=1e-12, implicit_iterations=1000)
    assert rel(input_grad(tight, x, weight), expected) < 1e-6


def test_without_the_adjoint_it_is_the_gradient_through_the_last_two_iterations():
    """u = v after one step with J_μ = 0 is impossible to force, but two unrolled iterations give the exact
    gradient the implicit mode starts from: its difference to them is the adjoint's correction, not zero."""
    x, weight = inputs()
    two = input_grad(make("em", grad_iterations=2), x, weight)
    implicit = input_grad(make("em", grad_mode="implicit"), x, weight)
    full = input_grad(make("em"), x, weight)
    assert rel(implicit, full) < 1e-4 < rel(two, full)


def _adjoint_problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, C, 12, generator=g, dtype=torch.float64)
    cell = make("hem").iterations[0]
    mu = project(torch.randn(1, K, C, generator=g, dtype=torch.float64), True)
    for _ in range(T):
        mu = cell(x, mu)[0].detach()
    m = mu.clone().requires_grad_()
    return cell(x, m)[0], m, torch.randn(1, K, C, generator=g, dtype=torch.float64), lambda z: cell(x, z)[0]


def test_the_adjoint_stops_at_the_tolerance_or_at_the_iteration_limit():
    f, m, v, F = _adjoint_problem()
    u, done, residual, diverged = solve_adjoint(f, m, v, 10_000, 1e-8)
    assert residual < 1e-8 and done < 10_000 and not diverged
    _, done_before, residual_before, _ = solve_adjoint(f, m, v, done - 1, 1e-8)  # one step fewer: not yet there
    assert done_before == done - 1 and residual_before >= 1e-8
    _, done_capped, residual_capped, diverged_capped = solve_adjoint(f, m, v, 3, 1e-8)
    assert done_capped == 3 and residual_capped > 1e-8 and not diverged_capped  # capped, still contracting
    # u solves u = J_μᵀ u + v: against a dense solve with the full Jacobian (8 × 8 here)
    J = torch.autograd.functional.jacobian(F, m.detach()).reshape(m.numel(), m.numel())
    dense = torch.linalg.solve(torch.eye(m.numel(), dtype=J.dtype) - J.T, v.flatten())
    assert rel(u.flatten(), dense) < 1e-5
    tight = solve_adjoint(f, m, v, 10_000, 1e-13)[0]
    assert rel(tight.flatten(), dense) < 1e-10


def test_a_zero_gradient_stops_at_once_with_residual_zero():
    f, m, v, _ = _adjoint_problem()
    u, done, residual, diverged = solve_adjoint(f, m, torch.zeros_like(v), 50, 1e-6)
    assert done == 1 and residual == 0 and not u.any() and not diverged


def test_the_layer_reports_the_adjoint_of_its_last_backward_and_respects_the_cap():
    x, weight = inputs()
    layer = make("em", grad_mode="implicit", implicit_iterations=2, implicit_tolerance=1e-12)
    assert layer.last_adjoint is None
    input_grad(layer, x, weight)
    iterations, residual, diverged = layer.last_adjoint
    assert iterations.dtype == torch.float64 and iterations.item() == 2 and residual.item() > 1e-12
    assert diverged.dtype == torch.float64 and diverged.item() in (0.0, 1.0)


def test_no_graph_no_adjoint_and_the_bases_move_as_in_unrolled_mode():
    x, _ = inputs()
    implicit, unrolled = make("hem", grad_mode="implicit").train(), make("hem").train()
    implicit(x)
    unrolled(x)
    assert torch.equal(implicit.bases, unrolled.bases)
    with torch.no_grad():
        implicit(x)
    assert implicit.last_adjoint is None


def test_settings_are_checked_and_shown():
    spec = EMSpec("hem", bases=2, iterations=3, grad_mode="implicit", implicit_iterations=7, implicit_tolerance=1e-4)
    layer = spec.layer(4)
    assert (layer.grad_mode, layer.implicit_iterations, layer.implicit_tolerance) == ("implicit", 7, 1e-4)
    assert "grad_mode='implicit', implicit_iterations=7, implicit_tolerance=0.0001" in repr(layer)
    assert "grad_mode='unrolled'" in repr(EMLayer(4)) and "implicit_iterations" not in repr(EMLayer(4))
    for kw, name in [({"grad_mode": "phantom"}, "grad_mode"), ({"implicit_iterations": 0}, "implicit_iterations"),
                     ({"implicit_tolerance": 0.0}, "implicit_tolerance"),
                     ({"implicit_tolerance": 1.5}, "implicit_tolerance")]:
        with pytest.raises(ConfigError, match=name):
            HEMLayer(4, 2, 3, **kw)
    with pytest.raises(ValueError, match="grad_iterations=1 is invalid.*grad_mode='implicit'"):
        EMLayer(4, 2, 3, grad_mode="implicit", grad_iterations=1)
    with pytest.raises(ValueError, match="iterations=1 is invalid.*grad_mode='implicit'"):
        EMLayer(4, 2, 1, grad_mode="implicit")
    assert EMSpec(grad_mode="implicit", grad_iterations="all").layer(4).grad_iterations is None


@pytest.mark.parametrize("scale, diverged", [(0.5, False), (0.9, False), (1.5, True), (1.02, True)])
def test_a_solve_diverges_exactly_when_the_adjoint_iteration_does_not_contract(scale, diverged):
    """J_μ = scale · I: the series Σ_k scaleᵏ v converges for scale < 1 (to v / (1 − scale)) and not otherwise."""
    m = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    v = torch.randn(3, 5, dtype=torch.float64)
    solve = solve_adjoint(m * scale, m, v, 40, 1e-12)
    assert solve.diverged == diverged
    if diverged:
        assert solve.iterations == 40 and solve.u.norm() > v.norm()
    else:
        assert rel(solve.u, v / (1 - scale)) < 20 * scale ** solve.iterations


def test_where_the_adjoint_diverges_the_gradient_is_the_jacobian_free_one_and_it_is_reported():
    """Far from a fixed point (T = 2, K = 4 random bases) J_μ does not contract and the adjoint iteration grows
    without bound; the layer then returns the Jacobian-free gradient v (Fung et al.'s JFB): exactly the gradient
    through the last two iterations, finite, instead of a huge one."""
    def layer(**kw):
        torch.manual_seed(0)
        return EMLayer(8, 4, 2, temperature=0.5, **kw).double().eval()

    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 8, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 8, 5, 5, generator=g, dtype=torch.float64)
    implicit = layer(grad_mode="implicit")
    got = input_grad(implicit, x, weight)
    iterations, residual, diverged = implicit.last_adjoint
    assert diverged == 1 and iterations == 50 and residual > 0.1
    assert rel(got, input_grad(layer(grad_iterations=2), x, weight)) < 1e-12
