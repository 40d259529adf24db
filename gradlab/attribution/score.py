"""captum's segmentation pattern: turn per-pixel logits into one score per image and class by summing the
logits over a region, so captum's attribution classes (which want one output per target) accept the model."""

from __future__ import annotations

import torch
from torch import nn

from gradlab.attribution.errors import AttributionError


class SegmentationScore(nn.Module):
    """S_bc = Σ_{p ∈ region_b} logit_bc(p): images (B, 3, H, W), region (B, H, W) → (B, num_classes).

    Call captum with `target=classes` (one class per image) and `additional_forward_args=(region,)`: captum
    then attributes S_{b, c_b}, and repeats the region alongside the inputs it expands along integration paths.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
        logits = self.model(images)
        if region.shape != (logits.shape[0], *logits.shape[2:]):
            raise AttributionError(f"region has shape {tuple(region.shape)}: expected (B, H, W) = "
                                   f"{(logits.shape[0], *logits.shape[2:])}, one mask per image at the logits' size")
        return (logits * region.unsqueeze(1).to(logits.dtype)).sum(dim=(2, 3))


def region_scores(model: nn.Module, images: torch.Tensor, classes: torch.Tensor,
                  regions: torch.Tensor) -> torch.Tensor:
    """S_{b, c_b} for each image (B,), without gradient: the score every attribution of image b explains."""
    with torch.no_grad():
        scores = SegmentationScore(model)(images, regions)
    return scores.gather(1, classes.view(-1, 1)).squeeze(1)
