"""The mechanism quantities of MATH.md §9 against independent computations: grad/out, the EMA unit's branch
norms, e_gain, the agreement (grad/x_cos, grad/x_rest) and σ_t of the state Jacobians (dense Jacobians)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import gradlab
from gradlab.instrument.jacobian import spectral_norm
from gradlab.layers.iteration import EMIteration
from tests.instrument.conftest import make_net
from tests.instrument.test_recorder import capture_states, recorded
from tests.layers.reference import EPS, P, logits


def record_one_step(net, batch, **watch_options):
    x, y = batch
    layer = net.ema.em
    states, handles = capture_states(layer)
    outputs = {}
    handles.append(layer.register_forward_hook(lambda m, a, out: outputs.__setitem__("out", out)))
    rec = gradlab.watch(net, **watch_options)
    loss = F.cross_entropy(net(x), y)
    loss.backward(retain_graph=True)
    rec.step(0, loss=loss)
    rec.close()
    for h in handles:
        h.remove()
    return rec.frame(), loss, states, outputs["out"]


@pytest.mark.parametrize("kind", ["em", "hem"])
def test_output_gradient_and_gain_inputs_equal_autograd(kind, batch):
    frame, loss, states, out = record_one_step(make_net(kind=kind), batch)
    g_out, g_in = torch.autograd.grad(loss, [out, states[("grad/x_total", None)]])
    assert recorded(frame, "grad/out", None) == (pytest.approx(g_out.double().norm().item(), rel=1e-5), "ok")
    assert recorded(frame, "grad/x_total", None)[0] == pytest.approx(g_in.double().norm().item(), rel=1e-5)


def test_output_gradient_is_no_grad_when_no_iteration_carries_gradient(batch):
    frame, *_ = record_one_step(make_net(kind="em", grad_iterations=0), batch)
    value, status = recorded(frame, "grad/out", None)
    assert status == "no_grad" and value != value


@pytest.mark.parametrize("kind", ["em", "hem"])
def test_branch_norms_split_the_unit_input_gradient(kind, batch):
    """‖∂L/∂u|_EM‖ and ‖∂L/∂u|_res‖ against a functional re-run of the unit with u detached on one branch."""
    x, y = batch
    net = make_net(kind=kind)
    twin = copy.deepcopy(net)  # the same weights and bases before the recorded forward moves them
    frame, *_ = record_one_step(net, batch)
    unit = twin.ema
    u = twin.stem(x)
    u_em, u_res = u.detach().requires_grad_(), u.detach().requires_grad_()
    logits_ = twin.classifier(torch.relu(u_res + unit.norm(unit.conv_out(torch.relu(unit.em(unit.conv_in(u_em)))))))
    g_em, g_res = torch.autograd.grad(F.cross_entropy(logits_, y), [u_em, u_res])
    assert recorded(frame, "grad/unit_em", None)[0] == pytest.approx(g_em.double().norm().item(), rel=1e-5)
    assert recorded(frame, "grad/unit_res", None)[0] == pytest.approx(g_res.double().norm().item(), rel=1e-5)


def test_branch_aliases_only_while_recording(batch):
    x, _ = batch
    net = make_net()
    seen = []
    net.ema.conv_in.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    u = net.stem(x)
    net.ema(u)
    assert seen[-1] is u  # no alias, no extra autograd node, when nothing records


@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_e_gain_equals_its_definition(temperature, batch):
    frame, _, states, _ = record_one_step(make_net(kind="hem", temperature=temperature), batch)
    for t in range(1, 5):
        z = states[("grad/z", t)].detach().double()  # (B, K, N)
        truth = ((1 - z.square().sum(1)).mean() / temperature).item()
        assert recorded(frame, "e_gain", t)[0] == pytest.approx(truth, rel=1e-6)


def test_e_gain_bounds_one_hot_and_uniform():
    from gradlab.instrument.diagnostics import e_gain

    k, tau = 5, 0.5
    uniform = torch.full((1, 2, k, 3, 3), 1 / k)
    one_hot = torch.zeros(1, 2, k, 3, 3)
    one_hot[:, :, 0] = 1
    assert e_gain(uniform, tau).item() == pytest.approx((1 - 1 / k) / tau)
    assert e_gain(one_hot, tau).item() == 0


def _cos(a, b):
    a, b = a.double().flatten(), b.double().flatten()
    return (a @ b / (a.norm() * b.norm())).item()


@pytest.mark.parametrize("kind", ["em", "hem"])
@pytest.mark.parametrize("grad_iterations", [None, 3])
def test_agreement_between_iterations_equals_autograd(kind, grad_iterations, batch):
    frame, loss, states, _ = record_one_step(make_net(kind=kind, grad_iterations=grad_iterations), batch)
    T, first = 4, 1 if grad_iterations is None else 4 - grad_iterations + 1
    live = [t for t in range(first, T + 1)]
    grads = dict(zip(live, torch.autograd.grad(loss, [states[("grad/x", t)] for t in live])))
    rest = sum(grads[t] for t in live if t < T)
    assert recorded(frame, "grad/x_cos", None)[0] == pytest.approx(_cos(rest, grads[T]), abs=1e-6)
    assert recorded(frame, "grad/x_rest", None)[0] == pytest.approx(rest.double().norm().item(), rel=1e-5)
    for t in live[:-1]:
        assert recorded(frame, "grad/x_cos", t)[0] == pytest.approx(_cos(grads[t], grads[T]), abs=1e-6)
    assert sorted(frame[(frame.quantity == "grad/x_cos") & frame.iteration.notna()].iteration) == live[:-1]


def test_no_agreement_rows_with_one_differentiable_iteration(batch):
    frame, *_ = record_one_step(make_net(kind="em", grad_iterations=1), batch)
    assert not frame.quantity.isin(["grad/x_cos", "grad/x_rest"]).any()


def _reference_step(X, mu, step_size, tau=1.0):
    """One iteration μ^(t-1) → μ^(t) of MATH.md §2 for one image, X (N, C), μ (K, C) (tests/layers/reference)."""
    Z = torch.softmax(logits(X, mu, "dot", tau), dim=1)
    m = P((Z.T @ X) / (Z.sum(0)[:, None] + EPS), True)
    return m if step_size == 1 else P((1 - step_size) * mu + step_size * m, True)


def _dense_sigma(X, mu, step_size, tau=1.0):
    J = torch.autograd.functional.jacobian(lambda v: _reference_step(X, v.view_as(mu), step_size, tau).flatten(),
                                           mu.flatten())
    return torch.linalg.matrix_norm(J, ord=2).item()


@pytest.mark.parametrize("kind,step_size", [("em", 1.0), ("hem", 0.5), ("hem", 1.5)])
def test_recorded_sigma_equals_dense_jacobian(kind, step_size, batch):
    kw = {} if kind == "em" else {"step_size": step_size}
    net = make_net(kind=kind, **kw).double()
    x, y = batch
    layer = net.ema.em
    states, handles = capture_states(layer)
    with gradlab.watch(net, jacobian_every=1, jacobian_images=2) as rec:
        F.cross_entropy(net(x.double()), y).backward()
        rec.step(0)
    for h in handles:
        h.remove()
    frame = rec.frame()
    xf = states[("grad/x", 1)].detach()  # (B, C, N)
    for t in range(1, 5):
        mu = states[("grad/mu", t - 1)].detach()
        for name, eta in [("jac/sigma", step_size), *([("jac/sigma_em", 1.0)] if kind == "hem" else [])]:
            dense = [_dense_sigma(xf[b].T, mu[b], eta) for b in range(2)]
            assert recorded(frame, name, t)[0] == pytest.approx(sum(dense) / 2, rel=1e-4), (name, t)
            assert recorded(frame, f"{name}_max", t)[0] == pytest.approx(max(dense), rel=1e-4), (name, t)
    if kind == "em":
        assert not frame.quantity.str.startswith("jac/sigma_em").any()


def test_power_iteration_lower_bound_tightens_to_the_spectral_norm():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 6, 12, generator=g, dtype=torch.float64)
    mu = P(torch.randn(1, 3, 6, generator=g, dtype=torch.float64), True)
    cell = EMIteration(1, 0.5, "dot", 0.5, True)
    dense = _dense_sigma(x[0].T, mu[0], 0.5, 0.5)
    rough = spectral_norm(cell, x, mu, steps=1, generator=torch.Generator().manual_seed(0)).item()
    fine = spectral_norm(cell, x, mu, steps=200, generator=torch.Generator().manual_seed(0)).item()
    assert rough <= dense * (1 + 1e-9) and fine == pytest.approx(dense, rel=1e-6)


def test_jacobian_schedule_and_training_untouched(batch):
    """σ_t only on multiples of jacobian_every; estimating it changes neither the loss nor the gradients."""
    x, y = batch
    runs = {}
    for every in (0, 2):
        net = make_net(kind="hem")
        torch.manual_seed(5)
        with gradlab.watch(net, jacobian_every=every) as rec:
            for step in range(4):
                net.zero_grad()
                F.cross_entropy(net(x), y).backward()
                rec.step(step)
        runs[every] = (rec.frame(), [p.grad.clone() for p in net.parameters()])
    frame = runs[2][0]
    assert sorted(frame[frame.quantity == "jac/sigma"].step.unique()) == [0, 2]
    assert not runs[0][0].quantity.str.startswith("jac/").any()
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[2][1]))


@pytest.mark.parametrize("options", [{"jacobian_every": -1}, {"jacobian_every": 2.5}, {"jacobian_every": True},
                                     {"jacobian_images": 0}, {"jacobian_images": "2"}])
def test_bad_jacobian_options_are_refused_before_anything_is_attached(options):
    from gradlab.errors import ConfigError

    net = make_net()
    with pytest.raises(ConfigError, match=next(iter(options))):
        gradlab.watch(net, **options)
    gradlab.watch(net).close()  # nothing was left attached: the model can be watched again
