"""Named parameter groups of a `SegmentationNet`: for per-group gradient norms and for SGD's parameter groups."""

from __future__ import annotations

from typing import Any

from torch import nn

from gradlab.errors import ConfigError
from gradlab.models.segnet import SegmentationNet
from gradlab.parallel import unwrap


def parameter_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """{"backbone", "em", "head"} → parameters; every parameter of the model is in exactly one group.

    "em" is the EMA unit (its 1×1 convolutions, BN and the EM layer); empty for the baseline without EM.
    "head" is the rest of the head: the two ConvBNReLU blocks and the classifier.
    """
    net = unwrap(model)
    if not isinstance(net, SegmentationNet):
        raise ConfigError(f"model={type(net).__name__} is invalid: parameter_groups needs a SegmentationNet")
    em_ids = {id(p) for p in net.head.ema.parameters()}
    return {
        "backbone": list(net.backbone.parameters()),
        "em": list(net.head.ema.parameters()),
        "head": [p for p in net.head.parameters() if id(p) not in em_ids],
    }


def optimizer_param_groups(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    *,
    head_lr_scale: float = 1.0,
    bias_lr_scale: float = 2.0,
) -> list[dict[str, Any]]:
    """SGD parameter groups as in EMANet's train.py, named "<group>/<weight|norm|bias>".

    Convolution weights: lr and weight decay. Norm weights (1-D, not biases): lr, no decay. Biases: lr ×
    `bias_lr_scale` (EMANet: 2), no decay. EMANet uses one lr for backbone and head (`head_lr_scale=1`); pass 10 for
    the DeepLab habit of a faster head over a pretrained backbone. "em" and "head" both count as head. Empty
    groups are left out. Each dict keeps its "name", so schedulers and logs can tell the groups apart.
    """
    groups, bias_ids = [], _bias_ids(model)
    for group, params in parameter_groups(model).items():
        scale = 1.0 if group == "backbone" else head_lr_scale
        by_role: dict[str, list[nn.Parameter]] = {"weight": [], "norm": [], "bias": []}
        for p in params:
            by_role[_role(p, bias_ids)].append(p)
        rates = {"weight": (scale, weight_decay), "norm": (scale, 0.0), "bias": (scale * bias_lr_scale, 0.0)}
        for role, ps in by_role.items():
            if ps:
                groups.append({"name": f"{group}/{role}", "params": ps, "lr": lr * rates[role][0],
                               "weight_decay": rates[role][1]})
    return groups


def _bias_ids(model: nn.Module) -> set[int]:
    return {id(p) for name, p in model.named_parameters() if name.rsplit(".", 1)[-1] == "bias"}


def _role(p: nn.Parameter, bias_ids: set[int]) -> str:
    if id(p) in bias_ids:
        return "bias"
    return "weight" if p.dim() > 1 else "norm"
