"""Forward diagnostics against direct computations (MATH.md §6)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import gradlab
from gradlab.instrument.diagnostics import entropy, shift, similarity
from tests.instrument.conftest import make_net


def test_identical_bases_have_similarity_one_and_uniform_attention_entropy_ln_k(batch):
    net = make_net(bases=5)
    with torch.no_grad():
        net.ema.em.bases.copy_(net.ema.em.bases[:1].expand(5, -1))  # collapsed: every basis alike
    with gradlab.watch(net) as rec:
        F.cross_entropy(net(batch[0]), batch[1]).backward()
        rec.step(0)
    frame = rec.frame().set_index(["quantity", "iteration"]).value
    assert frame[("similarity", 0)] == pytest.approx(1.0, abs=1e-6)
    assert frame[("entropy", 1)] == pytest.approx(math.log(5), abs=1e-6)  # float32 attention
    assert frame[("similarity", 4)] == pytest.approx(1.0, abs=1e-6)  # EM cannot separate identical bases


def test_diagnostics_match_direct_computation(batch):
    net = make_net(iterations=3)
    layer = net.ema.em
    layer.tracing = True  # the user's own tracing: the recorder leaves the trace in place
    with gradlab.watch(net) as rec:
        F.cross_entropy(net(batch[0]), batch[1]).backward()
        tr = layer.trace
        rec.step(0)
    frame = rec.frame()
    feature_norm = frame[frame.quantity == "feature_norm"].value.item()
    frame = frame.set_index(["quantity", "iteration"]).value
    z = tr.z[2].double()
    assert frame[("entropy", 2)] == pytest.approx((-(z * z.log()).sum(1)).mean().item(), rel=1e-6)  # float32 z log z
    d = (tr.mu[3] - tr.mu[2]).double()
    assert frame[("shift", 3)] == pytest.approx(d.norm().item() / 2, rel=1e-9)
    assert frame[("loglik", 1)] == pytest.approx(tr.loglik[1].item(), rel=1e-6)
    x = net.ema.conv_in(net.stem(batch[0])).detach().flatten(2)
    assert feature_norm == pytest.approx(x.norm(dim=1).mean().item(), rel=1e-6)


def test_similarity_of_orthogonal_bases_is_zero_and_shift_of_equal_states_is_zero():
    mu = torch.eye(4).expand(3, 4, 4)
    assert similarity(mu).item() == pytest.approx(0.0, abs=1e-12)
    assert shift(torch.stack([mu, mu])).tolist() == [0.0]
    one_hot = F.one_hot(torch.randint(0, 4, (2, 3, 3)), 4).permute(0, 3, 1, 2).float()
    assert entropy(one_hot).item() == 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_entropy_is_exact_where_attention_is_exactly_zero_or_subnormal(dtype):
    """z log z = 0 at z = 0 (no NaN from 0 · log 0), and entries below the smallest normal change nothing visible:
    the reference is torch.special.entr in float64."""
    g = torch.Generator().manual_seed(0)
    z = torch.softmax(torch.randn(3, 2, 6, 4, 4, generator=g, dtype=dtype) * 40, dim=-3)  # many exact zeros
    z[0, 0, :, 0, 0] = torch.tensor([1.0, 0, 0, 0, 0, 0], dtype=dtype)  # one-hot: entropy 0
    z[1, 0, :, 1, 1] = torch.tensor([1.0, torch.finfo(dtype).tiny / 4, 0, 0, 0, 0], dtype=dtype)  # a subnormal
    assert (z == 0).any()
    truth = torch.special.entr(z.double()).sum(-3).mean((-3, -2, -1))
    assert torch.isfinite(entropy(z)).all()
    assert entropy(z).tolist() == pytest.approx(truth.tolist(), rel=1e-6, abs=1e-12)
    assert entropy(z[:, :, :, :1, :1][:1, :1]).item() == 0.0
