"""CUDA: the recorder matches autograd on the GPU and never syncs the host inside its hooks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import gradlab
from tests.instrument.conftest import make_net

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_no_host_sync_between_steps_and_exact_norms_on_cuda(batch):
    net = make_net(iterations=6).cuda()
    x, y = (t.cuda() for t in batch)
    with gradlab.watch(net) as rec:
        for step in range(3):
            torch.cuda.set_sync_debug_mode("error")  # any synchronising op inside forward/backward/hooks raises
            try:
                loss = F.cross_entropy(net(x), y)
                loss.backward()
            finally:
                torch.cuda.set_sync_debug_mode("default")
            rec.step(step, loss=loss)
    assert (rec.frame().query("quantity == 'grad/x'").status == "ok").all()
    layer_input = {}
    net.ema.em.register_forward_pre_hook(lambda m, a: layer_input.setdefault("x", a[0]))
    with gradlab.watch(net) as rec:
        loss = F.cross_entropy(net(x), y)
        loss.backward(retain_graph=True)
        rec.step(0)
    (g,) = torch.autograd.grad(loss, layer_input["x"])
    recorded = rec.frame().query("quantity == 'grad/x_total'").value.item()
    assert recorded == pytest.approx(g.double().norm().item(), rel=1e-5)


def test_layer_on_cuda_matches_cpu():
    from gradlab.layers import HEMLayer

    torch.manual_seed(0)
    layer = HEMLayer(16, 8, 5, step_size=0.5).double().eval()
    x = torch.randn(2, 16, 7, 9, dtype=torch.float64)
    expected = layer(x)
    torch.testing.assert_close(layer.cuda()(x.cuda()).cpu(), expected, rtol=1e-9, atol=1e-9)
