"""Which class, and which pixels, an attribution explains: per image a target class and its region."""

from __future__ import annotations

import torch

from gradlab.attribution.errors import AttributionError


def class_regions(masks: torch.Tensor, classes: torch.Tensor | list[int] | None = None, *,
                  ignore_index: int = 255, background: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(classes (B,) int64, regions (B, H, W) float) from label masks (B, H, W).

    Without `classes`, each image's class is the foreground class with the most pixels (the background when
    the image has none); its region is the pixels of that class. A class given for an image that has no pixel
    of it is an error (its score would be 0 and every attribution trivially 0).
    """
    if masks.dim() != 3:
        raise AttributionError(f"masks have shape {tuple(masks.shape)}: expected (B, H, W) label masks")
    if classes is None:
        classes = torch.stack([_largest_class(mask, ignore_index, background) for mask in masks])
    classes = torch.as_tensor(classes, dtype=torch.int64, device=masks.device).view(-1)
    if len(classes) != len(masks):
        raise AttributionError(f"got {len(classes)} classes for {len(masks)} masks: give one class per image")
    regions = (masks == classes.view(-1, 1, 1)).float()
    empty = [i for i, n in enumerate(regions.sum(dim=(1, 2)).tolist()) if n == 0]
    if empty:
        raise AttributionError(f"image(s) {empty} have no pixel of their class {classes[empty].tolist()}: "
                               "choose classes present in the masks (or leave classes=None)")
    return classes, regions


def _largest_class(mask: torch.Tensor, ignore_index: int, background: int) -> torch.Tensor:
    labels = mask[(mask != ignore_index) & (mask != background)]
    if labels.numel() == 0:
        return torch.tensor(background, device=mask.device)
    return torch.bincount(labels.flatten()).argmax()
