"""Input attributions of a class region: which pixels of the image move S_{b,c} (Saliency, IntegratedGradients)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from captum.attr import IntegratedGradients, Saliency
from torch import nn

from gradlab.attribution.methods import INPUT_METHODS, check_methods
from gradlab.attribution.mode import attribution_mode
from gradlab.attribution.score import SegmentationScore


def integrated_gradients(model: nn.Module, images: torch.Tensor, classes: torch.Tensor, regions: torch.Tensor, *,
                         baselines: torch.Tensor | None = None, n_steps: int = 256,
                         internal_batch_size: int | None = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """IG of S_{b,c} w.r.t. the image (B, 3, H, W) and captum's convergence delta per image,
    Σ attributions − (S(x) − S(x')): completeness says it goes to 0 as n_steps grows (x' = baselines, zeros)."""
    baselines = torch.zeros_like(images) if baselines is None else baselines
    with attribution_mode(model):
        attributions, delta = IntegratedGradients(SegmentationScore(model)).attribute(
            images, baselines=baselines, target=classes, additional_forward_args=(regions,), n_steps=n_steps,
            internal_batch_size=internal_batch_size, return_convergence_delta=True)
    return attributions.detach(), delta.detach()


def saliency(model: nn.Module, images: torch.Tensor, classes: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """|∂S_{b,c}/∂x| per pixel and channel (B, 3, H, W)."""
    inputs = images.detach().clone().requires_grad_(True)  # captum warns when it has to switch this on itself
    with attribution_mode(model):
        grads = Saliency(SegmentationScore(model)).attribute(
            inputs, target=classes, additional_forward_args=(regions,), abs=True)
    return grads.detach()


def input_attributions(model: nn.Module, images: torch.Tensor, classes: torch.Tensor, regions: torch.Tensor, *,
                       methods: str | Iterable[str] | None = None, n_steps: int = 256,
                       baselines: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """{method name: attributions (B, 3, H, W)} for the names of `INPUT_METHODS` (None: all)."""
    maps = {}
    for method in check_methods(methods, INPUT_METHODS):
        if method == "saliency":
            maps[method] = saliency(model, images, classes, regions)
        else:
            maps[method] = integrated_gradients(model, images, classes, regions, baselines=baselines,
                                                n_steps=n_steps)[0]
    return maps
