from __future__ import annotations

import math

import pytest
import torch

from gradlab.instrument.norms import l2_norm


@pytest.mark.parametrize("dtype,scale", [(torch.float32, 1e-25), (torch.float32, 1e-40), (torch.float64, 1e-300),
                                         (torch.bfloat16, 1e-30), (torch.float32, 1e30)])
def test_norm_keeps_tiny_and_huge_gradients(dtype, scale):
    g = torch.full((1000,), scale, dtype=dtype)
    expected = g[0].double().item() * math.sqrt(1000)
    assert l2_norm(g).item() == pytest.approx(expected, rel=1e-6)
    assert l2_norm(g).dtype == torch.float64


def test_exact_zero_stays_zero_and_nonfinite_stays_nonfinite():
    for dtype in (torch.float32, torch.float64):
        assert l2_norm(torch.zeros(5, dtype=dtype)).item() == 0.0
        assert not math.isfinite(l2_norm(torch.tensor([1.0, math.inf], dtype=dtype)).item())
        assert math.isnan(l2_norm(torch.tensor([1.0, math.nan], dtype=dtype)).item())
