"""EMANet's segmentation head: 3×3 ConvBNReLU → EMA unit (or nothing) → 3×3 ConvBNReLU → dropout → 1×1 classifier."""

from __future__ import annotations

import torch
from torch import nn

from gradlab.layers import EMAUnit, UnrolledEM


class ConvBNReLU(nn.Sequential):
    """A bias-free k×k convolution, batch norm and ReLU, He-initialised (fan_out) as in EMANet."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        super().__init__(conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class EMAHead(nn.Module):
    """Backbone features (B, C_in, h, w) → class logits (B, num_classes, h, w) at the feature resolution.

    Widths follow EMANet (2048 → 512 → EMA(512) → 256): `channels` around the EMA unit, `channels // 2` after.
    With `em=None` the EMA unit is an identity: the baseline network of the same depth without attention.
    """

    def __init__(self, in_channels: int, channels: int, num_classes: int, em: UnrolledEM | None = None,
                 dropout: float = 0.1):
        super().__init__()
        self.conv_in = ConvBNReLU(in_channels, channels)
        self.ema: nn.Module = nn.Identity() if em is None else EMAUnit(em)
        self.conv_mid = ConvBNReLU(channels, channels // 2)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels // 2, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ema(self.conv_in(x))
        return self.classifier(self.dropout(self.conv_mid(x)))
