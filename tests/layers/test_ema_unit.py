from __future__ import annotations

import torch

from gradlab.layers import EMAUnit, EMLayer, HEMLayer


def test_ema_unit_is_residual_and_keeps_shape():
    unit = EMAUnit(HEMLayer(8, 4, 3)).eval()
    x = torch.rand(2, 8, 5, 5)
    y = unit(x)
    assert y.shape == x.shape and (y >= 0).all()
    with torch.no_grad():
        unit.norm.weight.zero_()
        unit.norm.bias.zero_()
    torch.testing.assert_close(unit(x), torch.relu(x))  # with the branch silenced only the identity remains


def test_ema_unit_gradient_reaches_first_conv_through_the_loop():
    unit = EMAUnit(EMLayer(8, 4, 3))
    unit(torch.randn(2, 8, 4, 4)).square().sum().backward()
    assert unit.conv_in.weight.grad.abs().sum() > 0
