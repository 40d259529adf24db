"""The attribution methods by name: captum's layer methods for the depth profile, input methods for images.

Every layer method has one signature, `(score, cell, images, baselines, classes, regions, n_steps, batch)`,
and returns the attribution of μ^(t), the bases iteration t hands on (shape (B, K, C)).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from captum.attr import LayerConductance, LayerGradientXActivation, LayerIntegratedGradients
from torch import nn

from gradlab.attribution.errors import AttributionError

# Z^(t) of an iteration t < T feeds nothing downstream (only μ^(t) does): captum must accept its unused gradient.
GRAD_KWARGS = {"allow_unused": True, "materialize_grads": True}


def _integrated_gradients(score, cell, images, baselines, classes, regions, n_steps, batch):
    """∫ ∂S/∂μ^(t) dμ^(t) from μ^(t) of the baseline image to μ^(t) of the image, the rest of the net on the image."""
    return LayerIntegratedGradients(score, cell).attribute(
        images, baselines=baselines, target=classes, additional_forward_args=(regions,), n_steps=n_steps,
        internal_batch_size=batch, grad_kwargs=GRAD_KWARGS)


def _gradient_x_activation(score, cell, images, baselines, classes, regions, n_steps, batch):
    """μ^(t) ⊙ ∂S/∂μ^(t) at the image: the first-order share of μ^(t) (no path, no baseline)."""
    return LayerGradientXActivation(score, cell).attribute(
        images, target=classes, additional_forward_args=(regions,), grad_kwargs=GRAD_KWARGS)


def _conductance(score, cell, images, baselines, classes, regions, n_steps, batch):
    """∫ ∂S/∂μ^(t) · dμ^(t)/dα along the input path baseline → image: the part of S(x) − S(x') carried by μ^(t)."""
    return LayerConductance(score, cell).attribute(
        images, baselines=baselines, target=classes, additional_forward_args=(regions,), n_steps=n_steps,
        internal_batch_size=batch, grad_kwargs=GRAD_KWARGS)


LayerMethod = Callable[..., tuple[torch.Tensor, ...]]
LAYER_METHODS: dict[str, LayerMethod] = {
    "integrated-gradients": _integrated_gradients,
    "gradient-x-activation": _gradient_x_activation,
    "conductance": _conductance,
}
INPUT_METHODS = ("saliency", "integrated-gradients")
METHODS = tuple(dict.fromkeys([*LAYER_METHODS, *INPUT_METHODS]))


def check_methods(methods: str | Iterable[str] | None, valid: Iterable[str]) -> list[str]:
    """The requested method names (all `valid` ones for None), each checked against `valid`."""
    valid = list(valid)
    names = valid if methods is None else [methods] if isinstance(methods, str) else list(methods)
    unknown = [m for m in names if m not in valid]
    if unknown or not names:
        raise AttributionError(f"unknown attribution method(s) {unknown or names}: valid methods are "
                               f"{', '.join(valid)}")
    return list(dict.fromkeys(names))


def attribute_iteration(method: str, score: nn.Module, cell: nn.Module, images: torch.Tensor,
                        baselines: torch.Tensor, classes: torch.Tensor, regions: torch.Tensor, n_steps: int,
                        batch: int | None) -> torch.Tensor:
    """The attribution of μ^(t) (B, K, C) by one layer method; captum returns one per output of (μ^(t), Z^(t))."""
    mu, _z = LAYER_METHODS[method](score, cell, images, baselines, classes, regions, n_steps, batch)
    return mu.detach()
