"""The state a model is attributed in: eval mode, and every unrolled iteration differentiable."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

from gradlab.attribution.errors import AttributionError
from gradlab.layers import UnrolledEM


@contextlib.contextmanager
def attribution_mode(model: nn.Module) -> Iterator[None]:
    """Within the block: `model.eval()` (fixed BN statistics, no dropout, bases μ^(0) left alone) and
    `grad_iterations = None` on every EM layer, restored afterwards, even after an error.

    `grad_iterations` (MATH.md §5) only decides where training gradients flow; the forward values are the same,
    so attributions describe the function the model computes whatever gradient mode it was trained with.
    """
    layers = [m for m in model.modules() if isinstance(m, UnrolledEM)]
    modes = {m: m.training for m in model.modules()}
    grad_iterations = [layer.grad_iterations for layer in layers]
    model.eval()
    for layer in layers:
        layer.grad_iterations = None
    try:
        yield
    finally:
        for layer, k in zip(layers, grad_iterations):
            layer.grad_iterations = k
        for module, training in modes.items():
            module.training = training


def em_layer(model: nn.Module) -> UnrolledEM:
    """The model's one EM / HEM layer (an error when it has none, or several)."""
    layers = [m for m in model.modules() if isinstance(m, UnrolledEM)]
    if not layers:
        raise AttributionError("the model has no EM / HEM layer (model.kind = none?): "
                               "it has no unrolled iterations to attribute")
    if len(layers) > 1:
        raise AttributionError(f"the model has {len(layers)} EM / HEM layers: pass layer=<the one to attribute>")
    return layers[0]
