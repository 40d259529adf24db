from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

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


def _exact_norm(g: torch.Tensor) -> float:
    """‖g‖ from g's values as Python floats: scaled by the max-abs entry, squares summed with math.fsum."""
    values = g.double().flatten().tolist()
    top = max((abs(v) for v in values), default=0.0)
    return 0.0 if top == 0 else top * math.sqrt(math.fsum((v / top) ** 2 for v in values))


@settings(max_examples=200, deadline=None)
@given(dtype=st.sampled_from([torch.float32, torch.float64]), position=st.floats(0, 1),
       count=st.integers(1, 3000), spread=st.floats(0, 40), seed=st.integers(0, 2**16), strided=st.booleans())
def test_norms_hold_their_precision_at_every_scale(dtype, position, count, spread, seed, strided):
    """A family of gradients: every scale the dtype holds (float32 subnormals to ~1e38, float64 to 1e±300),
    entries spread over up to 40 decades, strided views. The norm equals an exact reference to 1e-12, is never an
    underflowed 0 or an overflowed Inf, and an exact 0 stays 0."""
    low, high = (-46, 38) if dtype == torch.float32 else (-324, 307)  # from below the smallest subnormal
    exponent = low + position * (high - low)
    gen = torch.Generator().manual_seed(seed)
    decades = torch.rand(count, generator=gen, dtype=torch.float64) * spread
    signs = torch.where(torch.rand(count, generator=gen) < 0.5, -1.0, 1.0).double()
    g = (signs * 10.0 ** (exponent - decades)).to(dtype)
    if strided:
        g = torch.stack([g, torch.full_like(g, math.nan)], 1)[:, 0]  # every other entry of a larger buffer
    truth, got = _exact_norm(g), l2_norm(g).item()
    assert got == pytest.approx(truth, rel=1e-12, abs=0.0)
