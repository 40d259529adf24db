from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradlab import taps as tap_module


class Refiner(nn.Module):
    """A plain-PyTorch loop (no gradlab inside): one Linear cell applied `calls` times."""

    def __init__(self, dim: int = 6, calls: int = 4):
        super().__init__()
        self.cell, self.calls = nn.Linear(dim, dim), calls

    def forward(self, x):
        h = x
        for _ in range(self.calls):
            h = torch.tanh(self.cell(h)) + x
        return h


def em_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, 6, 5, generator=g), torch.randint(0, 3, (2, 6, 5), generator=g)


def em_loss(net, batch):
    return F.cross_entropy(net(batch[0]), batch[1])


def assert_no_hooks(model: nn.Module) -> None:
    """No hook, tap sink or tracing flag outlives a Recorder (as tests/instrument/test_hook_hygiene.py checks)."""
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks and not module._backward_hooks
        assert getattr(module, "tracing", False) is False
    assert not tap_module._SINKS


@pytest.fixture
def batch():
    return em_batch()
