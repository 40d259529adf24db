"""Validation: confusion-matrix mIoU, per-class IoU and pixel accuracy (summed over DDP ranks)."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = 255):
    """conf[i, j] = pixels of true class i predicted as j; pixels labelled `ignore_index` are left out."""
    keep = target != ignore_index
    idx = target[keep] * num_classes + pred[keep]
    return torch.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def scores(conf: torch.Tensor) -> dict[str, float]:
    """mIoU over the classes that occur (in truth or prediction), pixel accuracy, and IoU per class."""
    conf = conf.double().cpu()
    tp = conf.diag()
    union = conf.sum(0) + conf.sum(1) - tp
    iou = tp / union  # NaN where a class neither occurs nor is predicted
    out = {"miou": float(iou.nanmean()), "pixel_acc": float(tp.sum() / conf.sum().clamp_min(1))}
    out.update({f"iou/{c}": float(v) for c, v in enumerate(iou)})
    return out


@torch.no_grad()
def evaluate(model: nn.Module, loader, num_classes: int, device: torch.device, ignore_index: int = 255):
    """Scores of `model` on `loader` (each rank its shard; the confusion matrices are summed)."""
    was_training = model.training
    model.eval()
    conf = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    for images, masks in loader:
        images, masks = images.to(device), masks.to(device)
        conf += confusion_matrix(model(images).argmax(1), masks, num_classes, ignore_index)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(conf)
    model.train(was_training)
    return scores(conf)
