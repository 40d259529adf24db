"""ℓ^(0) ≤ ℓ^(1) ≤ … ≤ ℓ^(T) for the combinations MATH.md §3 guarantees (property test)."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradlab.layers import HEMLayer


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    shape=st.tuples(st.integers(1, 2), st.integers(2, 8), st.integers(1, 6), st.integers(1, 5), st.integers(1, 5)),
    iterations=st.integers(1, 6),
    step_size=st.sampled_from([0.25, 0.5, 1.0]),
    setting=st.sampled_from([("dot", True), ("gaussian", False)]),
    scale=st.floats(0.1, 5.0),
    temperature=st.floats(0.2, 3.0),
)
def test_objective_never_decreases(seed, shape, iterations, step_size, setting, scale, temperature):
    B, C, K, H, W = shape
    kernel, normalize = setting
    torch.manual_seed(seed)
    layer = HEMLayer(C, K, iterations, step_size=step_size, kernel=kernel, normalize=normalize,
                     temperature=temperature).double().eval()
    layer.tracing = True
    layer(torch.randn(B, C, H, W, dtype=torch.float64) * scale)
    ll = torch.stack(layer.trace.loglik)
    steps = ll[1:] - ll[:-1]
    assert (steps >= -1e-6 * (1 + ll[:-1].abs())).all(), ll.tolist()
