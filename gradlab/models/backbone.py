"""`build_backbone`: one entry point for the built-in ResNets and the optional torchvision ones."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from gradlab.errors import ConfigError
from gradlab.models.resnet import RESNET_SPECS, resnet
from gradlab.models.torchvision_backbone import PREFIX, TORCHVISION_RESNETS, torchvision_backbone
from gradlab.models.weights import load_local_weights

BACKBONES = (*RESNET_SPECS, *(PREFIX + a for a in TORCHVISION_RESNETS))


def build_backbone(
    name: str,
    output_stride: int = 8,
    pretrained: str | Path | None = None,
    *,
    deep_stem: bool = False,
    strict: bool = True,
) -> nn.Module:
    """A dilated backbone with attributes `out_channels` and `output_stride`: (B, 3, H, W) → (B, C, H/s, W/s).

    `name` is one of BACKBONES; `pretrained` is the path of a local state_dict file (see `load_local_weights`).
    """
    if not isinstance(name, str) or name not in BACKBONES:
        raise ConfigError(f"backbone={name!r} is unknown: backbone must be one of {', '.join(BACKBONES)}")
    if name.startswith(PREFIX):
        if deep_stem:
            raise ConfigError(f"deep_stem=True is not available for backbone={name!r}: torchvision has no deep stem")
        return torchvision_backbone(name, output_stride, pretrained, strict)
    model = resnet(name, output_stride, deep_stem)
    if pretrained is not None:
        load_local_weights(model, pretrained, strict)
    return model
