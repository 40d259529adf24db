from __future__ import annotations

import pytest
import torch
from torch import nn

from gradlab.layers import EMAUnit, EMSpec


class TinyNet(nn.Module):
    """stem → EMA unit (EM or HEM) → classifier: the smallest model shaped like the segmentation net."""

    def __init__(self, kind="hem", channels=8, bases=4, iterations=4, **layer_kw):
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.ema = EMAUnit(EMSpec(kind, bases, iterations, **layer_kw).layer(channels))
        self.classifier = nn.Conv2d(channels, 3, 1)

    def forward(self, x):
        return self.classifier(self.ema(self.stem(x)))


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, 6, 5, generator=g), torch.randint(0, 3, (2, 6, 5), generator=g)


def make_net(**kw) -> TinyNet:
    torch.manual_seed(0)
    return TinyNet(**kw)
