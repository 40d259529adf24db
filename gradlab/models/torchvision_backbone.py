"""Optional torchvision ResNet backbones (`torchvision-resnet50`, ...), imported only when asked for.

torchvision is not a dependency: on the CPU machines of this project it installs but fails at import, so the
backbones of `gradlab.models.resnet` are the default. Weights come only from a local file, never a hub.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from gradlab.errors import ConfigError
from gradlab.models.resnet import DILATE_BY_OUTPUT_STRIDE
from gradlab.models.weights import load_local_weights

PREFIX = "torchvision-"
TORCHVISION_RESNETS = ("resnet50", "resnet101", "resnet152")  # torchvision's BasicBlock cannot dilate


def import_torchvision() -> ModuleType:
    """Import torchvision, or raise ConfigError saying how to get a working install."""
    try:
        import torchvision
    except Exception as e:  # a torch / torchvision mismatch raises RuntimeError, not ImportError
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(
            f"torchvision cannot be imported ({type(e).__name__}: {first_line}): install a matching torch / "
            f"torchvision pair (torch {torch.__version__}), or use a built-in backbone such as 'resnet50'"
        ) from e
    return torchvision


class TorchvisionResNet(nn.Module):
    """A torchvision ResNet without avgpool and fc; its parameter names are torchvision's (`conv1`, `layer1`)."""

    def __init__(self, net: nn.Module, output_stride: int):
        super().__init__()
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(net, name))
        self.output_stride = output_stride
        self.out_channels = net.fc.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def torchvision_backbone(
    name: str, output_stride: int = 8, pretrained: str | Path | None = None, strict: bool = True
) -> TorchvisionResNet:
    """Build `torchvision-resnet50|101|152` as a dilated backbone; `pretrained` is a local state_dict file."""
    arch = name.removeprefix(PREFIX)
    if not name.startswith(PREFIX) or arch not in TORCHVISION_RESNETS:
        allowed = ", ".join(PREFIX + a for a in TORCHVISION_RESNETS)
        raise ConfigError(f"backbone={name!r} is unknown: torchvision backbones are {allowed}")
    if output_stride not in DILATE_BY_OUTPUT_STRIDE:
        raise ConfigError(f"output_stride={output_stride!r} is invalid: output_stride must be 8, 16 or 32")
    models = import_torchvision().models
    net = getattr(models, arch)(weights=None, replace_stride_with_dilation=list(DILATE_BY_OUTPUT_STRIDE[output_stride]))
    backbone = TorchvisionResNet(net, output_stride)
    if pretrained is not None:
        load_local_weights(backbone, pretrained, strict)
    return backbone
