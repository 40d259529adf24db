"""Validation: confusion-matrix mIoU, per-class IoU and pixel accuracy (summed over DDP ranks), and how much a
trained prediction rests on its EM units (`em_branch_knockout`)."""

from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist
from torch import nn

from gradlab.errors import GradlabError
from gradlab.layers import EMAUnit


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


@torch.no_grad()
def em_branch_knockout(model: nn.Module, loader, num_classes: int, device: torch.device,
                       ignore_index: int = 255) -> dict[str, float]:
    """How much `model`'s prediction rests on its EM units: val mIoU as trained ("miou") and with the EM branch
    BN(W_out y) of every EMA unit, whose output is relu(u + BN(W_out y)), replaced by its mean per channel over
    `loader` ("miou_em_ablated"; a mean ablation: the branch's average stays, what it says about each image and
    position goes). One process (no DDP). GradlabError for a model without an EMA unit (model.kind = none)."""
    units = [m for m in model.modules() if isinstance(m, EMAUnit)]
    if not units:
        raise GradlabError("the model has no EMA unit (model.kind = none): there is no EM branch to knock out")
    if dist.is_available() and dist.is_initialized():
        raise GradlabError("em_branch_knockout runs in one process: its branch means are not summed over ranks")
    sums = {u: torch.zeros(u.norm.num_features, dtype=torch.float64, device=device) for u in units}
    count = {u: 0 for u in units}

    def add(unit):  # the branch's sum per channel, while the trained network is scored
        def hook(module, args, out):
            sums[unit] += out.double().sum(dim=(0, 2, 3))
            count[unit] += out.shape[0] * out.shape[2] * out.shape[3]
        return hook

    with _hooks(units, add):
        full = evaluate(model, loader, num_classes, device, ignore_index)["miou"]
    means = {u: (sums[u] / count[u]).float().view(1, -1, 1, 1) for u in units}
    with _hooks(units, lambda unit: lambda module, args, out: means[unit].expand_as(out)):
        ablated = evaluate(model, loader, num_classes, device, ignore_index)["miou"]
    return {"miou": full, "miou_em_ablated": ablated}


@contextlib.contextmanager
def _hooks(units: list[EMAUnit], make):
    """A forward hook `make(unit)` on each unit's branch norm BN, removed on exit."""
    handles = [u.norm.register_forward_hook(make(u)) for u in units]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
