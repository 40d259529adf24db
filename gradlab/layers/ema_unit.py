"""EMANet's EMA unit: 1×1 conv → EM/HEM layer → ReLU → 1×1 conv (no bias) → BN → + input → ReLU."""

from __future__ import annotations

import math

import torch
from torch import nn

from gradlab.layers.unrolled import UnrolledEM
from gradlab.taps import diagnosing, tap


class EMAUnit(nn.Module):
    """The residual block that hosts an unrolled EM layer (`EMLayer` or `HEMLayer`).

    On a recorder's diagnosed steps (record.diagnostics_every), the unit's input u reaches the EM branch and the
    residual through two aliases, so the recorder measures ‖∂L/∂u|_EM‖ (`grad/unit_em`) and ‖∂L/∂u|_res‖
    (`grad/unit_res`) as the EM layer's own quantities: the branch share s_EM of MATH.md §9.
    """

    def __init__(self, em: UnrolledEM, norm_layer: type[nn.Module] = nn.BatchNorm2d):
        super().__init__()
        c = em.channels
        self.conv_in = nn.Conv2d(c, c, 1)
        self.em = em
        self.conv_out = nn.Conv2d(c, c, 1, bias=False)
        self.norm = norm_layer(c)
        for conv in (self.conv_in, self.conv_out):  # EMANet's init: N(0, 2/fan_out)
            nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / c))
        nn.init.zeros_(self.conv_in.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_em = x_res = x
        if diagnosing() and x.requires_grad:  # one alias of u per branch: ∂L/∂u split into EM and residual
            x_em = tap(x.view_as(x), "grad/unit_em", None, module=self.em)
            x_res = tap(x.view_as(x), "grad/unit_res", None, module=self.em)
        y = torch.relu(self.em(self.conv_in(x_em)))
        return torch.relu(x_res + self.norm(self.conv_out(y)))
