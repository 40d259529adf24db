"""`tap` alone instruments a user's own unrolled module: a slot-attention-like GRU refinement loop."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradlab


class SlotRefiner(nn.Module):
    """K slots attend over N inputs and are refined T times by a shared GRU cell (the docs' example)."""

    def __init__(self, dim: int = 8, slots: int = 3, iterations: int = 5):
        super().__init__()
        self.slots = nn.Parameter(torch.randn(slots, dim) * 0.5)
        self.gru = nn.GRUCell(dim, dim)
        self.iterations = iterations

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (B, N, D) → slots (B, K, D)
        B, K, D = x.shape[0], *self.slots.shape
        s = gradlab.tap(self.slots.expand(B, K, D), "grad/slots", 0, module=self)
        for t in range(1, self.iterations + 1):
            attn = torch.softmax(s @ x.transpose(1, 2), dim=1)  # over slots
            update = attn @ x / (attn.sum(-1, keepdim=True) + 1e-6)
            s = self.gru(update.reshape(-1, D), s.reshape(-1, D)).view(B, K, D)
            s = gradlab.tap(s, "grad/slots", t, module=self)
        return s


def test_tapped_user_module_records_gradient_per_iteration():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), SlotRefiner())
    states = []
    model[1].gru.register_forward_hook(lambda m, a, out: states.append(out))
    x = torch.randn(2, 6, 4)
    with gradlab.watch(model) as rec:
        loss = model(x).square().sum()
        loss.backward(retain_graph=True)
        rec.step(0)
    frame = rec.frame().query("quantity == 'grad/slots'").set_index("iteration")
    assert list(frame.index) == list(range(6)) and set(frame.layer) == {"1"}
    grads = torch.autograd.grad(loss, states)  # the GRU outputs are the states of iterations 1..T
    for t, g in enumerate(grads, start=1):
        assert frame.value[t] == pytest.approx(g.double().norm().item(), rel=1e-5)
    assert frame.status[0] == "ok"  # the expanded parameter requires grad itself
