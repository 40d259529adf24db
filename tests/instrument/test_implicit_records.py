"""Records of a layer in grad_mode="implicit": the adjoint solve per recorded step, no per-iteration gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import gradlab
from gradlab.errors import ConfigError
from tests.instrument.conftest import make_net
from tests.train.conftest import tiny_config


def run_steps(net, batch, steps=3, every=1):
    x, y = batch
    with gradlab.watch(net, every=every) as rec:
        for step in range(steps):
            net.zero_grad()
            F.cross_entropy(net(x), y).backward()
            rec.step(step)
    return rec.frame()


@pytest.mark.parametrize("kind", ["em", "hem"])
def test_implicit_layers_record_their_adjoint_and_no_per_iteration_gradients(kind, batch):
    net = make_net(kind=kind, grad_mode="implicit", implicit_iterations=30)
    frame = run_steps(net, batch, steps=4, every=2)  # steps 0 and 2 recorded
    em = frame[frame.layer == "ema.em"]
    adjoint = em[em.quantity.str.startswith("implicit/")]
    assert sorted(adjoint.step.unique()) == [0, 2]
    for step in (0, 2):
        rows = adjoint[adjoint.step == step].set_index("quantity")
        assert set(rows.index) == {"implicit/iterations", "implicit/residual", "implicit/diverged"}
        assert rows.iteration.isna().all() and (rows.status == "ok").all()
        iterations, residual = rows.value["implicit/iterations"], rows.value["implicit/residual"]
        assert iterations == int(iterations) and 1 <= iterations <= 30
        assert 0 <= residual and (residual < 1e-6 or iterations == 30)
    assert not em.quantity.isin(["grad/x", "grad/mu", "grad/z", "grad/x_cos", "grad/x_rest"]).any()
    assert {"grad/x_total", "grad/out", "grad/unit_em", "grad/unit_res"} <= set(em.quantity)
    assert (em[em.quantity.isin(["grad/x_total", "grad/out"])].status == "ok").all()


def test_recorded_adjoint_is_the_layers_own_and_grad_x_total_is_autograds(batch):
    net = make_net(kind="em", grad_mode="implicit", implicit_iterations=5, implicit_tolerance=1e-12)
    x, y = batch
    layer = net.ema.em
    seen = {}
    layer.register_forward_pre_hook(lambda m, args: seen.__setitem__("x", args[0]))
    with gradlab.watch(net) as rec:
        loss = F.cross_entropy(net(x), y)
        (g,) = torch.autograd.grad(loss, seen["x"])  # one backward: what the recorder measures
        diverged = layer.last_adjoint[2].item()  # the layer's own verdict on its solve (rec.step clears it)
        rec.step(0)
    frame = rec.frame()
    value = frame.set_index("quantity").value
    assert value["implicit/iterations"] == 5  # the cap, since 1e-12 is not reached in 5 steps
    assert value["implicit/residual"] > 1e-12
    assert value["implicit/diverged"] == diverged
    assert math.isclose(value["grad/x_total"], g.norm().item(), rel_tol=1e-5)


def test_unrolled_layers_have_no_implicit_rows(batch):
    frame = run_steps(make_net(kind="hem"), batch, steps=1)
    assert not frame.quantity.str.startswith("implicit/").any()
    assert (frame.quantity == "grad/x").any()


def test_a_tiny_training_run_in_implicit_mode_completes(tmp_path):
    from gradlab.train import train

    run = train(tiny_config("model.grad_mode=implicit", "model.implicit_iterations=20"), tmp_path / "run",
                progress=False)
    records = gradlab.load_records(run.path)
    adjoint = records[records.quantity == "implicit/iterations"]
    assert sorted(adjoint.step) == list(range(6)) and adjoint.value.between(1, 20).all()
    assert sorted(records[records.quantity == "implicit/residual"].step) == list(range(6))
    assert not records.quantity.isin(["grad/x", "grad/mu", "grad/z"]).any()
    from gradlab.analysis import regime
    from gradlab.report import build_report

    verdict = regime(records).set_index("layer").loc["head.ema.em"]
    assert verdict["regime"] in ("implicit", "implicit_fallback")
    html = build_report([run.path], tmp_path / "report").html.read_text()
    assert f'regime-{verdict["regime"]}">{verdict["regime"]}<' in html and "the adjoint solve" in html
    assert "has model.grad_mode = implicit: its layer has no per-iteration gradients" in html


def test_implicit_with_grad_iterations_is_refused_naming_both():
    """By the config before anything runs, and by the layer itself for code that builds one directly."""
    from gradlab.layers import EMSpec

    with pytest.raises(ConfigError, match="grad_mode='implicit' needs model.grad_iterations='all'"):
        tiny_config("model.grad_mode=implicit", "model.grad_iterations=1")
    with pytest.raises(ConfigError, match="grad_iterations=1.*grad_mode='implicit'"):
        EMSpec("hem", bases=2, grad_iterations=1, grad_mode="implicit").layer(4)


@pytest.mark.parametrize("solve, expected", [
    (dict(implicit_iterations=30), "implicit_fallback"),  # at init the tiny net's adjoint diverges (residual grows)
    (dict(implicit_iterations=2, implicit_tolerance=1e-12), "implicit"),  # capped before it can grow: not diverged
])
def test_the_regime_of_a_recorded_implicit_layer_is_its_recorded_adjoint_solve(solve, expected, batch):
    from gradlab.analysis import regime

    frame = run_steps(make_net(kind="em", grad_mode="implicit", **solve), batch, steps=6)
    adjoint = frame[frame.quantity.str.startswith("implicit/")].pivot(index="step", columns="quantity", values="value")
    row = regime(frame, fraction=1.0).set_index("layer").loc["ema.em"]
    assert row["share_diverged"] == pytest.approx(adjoint["implicit/diverged"].mean())
    assert row["adjoint_residual"] == pytest.approx(adjoint["implicit/residual"].median())
    assert row["adjoint_iterations"] == adjoint["implicit/iterations"].median()
    assert row["regime"] == expected
    assert (row["share_diverged"] >= 0.5) == (expected == "implicit_fallback")
