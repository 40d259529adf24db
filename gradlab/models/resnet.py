"""Dilated ResNet backbones (DeepLab / EMANet style), written here because torchvision cannot import on CPU.

Output stride 8 or 16 replaces the stride of the last stages by dilation, so the feature map stays large
while the receptive field keeps growing. Parameter names follow torchvision (`conv1`, `bn1`, `layer1.0.conv1`,
`layer1.0.downsample.0`, ...), so a torchvision ImageNet state_dict saved to disk loads into `resnet50`; the deep
stem follows the EMANet / PSPNet "deep base" naming (`conv1.0`, `conv1.1`, `conv1.3`, ..., `bn1`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gradlab.errors import ConfigError

# Which of (layer2, layer3, layer4) trade their stride 2 for dilation, by output stride.
DILATE_BY_OUTPUT_STRIDE = {8: (False, True, True), 16: (False, False, True), 32: (False, False, False)}


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, first_dilation: int | None = None):
        super().__init__()
        d0 = first_dilation or dilation  # the strided position keeps the previous stage's dilation
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, padding=d0, dilation=d0, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (strided / dilated) → 1×1 expand ×4, with a residual connection (ResNet-50/101)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, first_dilation: int | None = None):
        super().__init__()
        d0 = first_dilation or dilation  # the strided position keeps the previous stage's dilation
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=d0, dilation=d0, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


@dataclass(frozen=True)
class ResNetSpec:
    """A ResNet layout: block type, blocks per stage, stage widths (before expansion), stem width."""

    block: type[BasicBlock] | type[Bottleneck]
    layers: tuple[int, int, int, int]
    widths: tuple[int, int, int, int] = (64, 128, 256, 512)
    stem_width: int = 64


RESNET_SPECS: dict[str, ResNetSpec] = {
    "tiny": ResNetSpec(BasicBlock, (1, 1, 1, 1), (32, 64, 128, 256), stem_width=32),
    "resnet18": ResNetSpec(BasicBlock, (2, 2, 2, 2)),
    "resnet34": ResNetSpec(BasicBlock, (3, 4, 6, 3)),
    "resnet50": ResNetSpec(Bottleneck, (3, 4, 6, 3)),
    "resnet101": ResNetSpec(Bottleneck, (3, 4, 23, 3)),
}


def _deep_stem(width: int) -> nn.Sequential:
    """Three 3×3 convolutions (3 → w/2 → w/2 → w), the first with stride 2, as in EMANet / PSPNet."""
    half = width // 2
    return nn.Sequential(
        nn.Conv2d(3, half, 3, 2, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
        nn.Conv2d(half, half, 3, 1, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
        nn.Conv2d(half, width, 3, 1, 1, bias=False),
    )


class ResNet(nn.Module):
    """A ResNet without its classifier: image (B, 3, H, W) → features (B, out_channels, ⌈H/s⌉, ⌈W/s⌉).

    s is `output_stride` (8, 16 or 32). A dilated stage keeps its input resolution and doubles the dilation;
    the 3×3 convolution where the stride was keeps the previous dilation (torchvision's
    `replace_stride_with_dilation` for bottlenecks; the first 3×3 of a basic block, as in EMANet's code).
    """

    def __init__(self, spec: ResNetSpec, output_stride: int = 8, deep_stem: bool = False):
        super().__init__()
        if output_stride not in DILATE_BY_OUTPUT_STRIDE:
            raise ConfigError(f"output_stride={output_stride!r} is invalid: output_stride must be 8, 16 or 32")
        self.output_stride, self.deep_stem = output_stride, deep_stem
        self.inplanes, self.dilation = spec.stem_width, 1
        self.conv1 = _deep_stem(spec.stem_width) if deep_stem else nn.Conv2d(3, spec.stem_width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(spec.stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        dilate = (False, *DILATE_BY_OUTPUT_STRIDE[output_stride])
        stages = [self._make_stage(spec.block, w, n, 1 if i == 0 else 2, dilate[i])
                  for i, (w, n) in enumerate(zip(spec.widths, spec.layers))]
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.out_channels = spec.widths[-1] * spec.block.expansion
        _init_weights(self)

    def _make_stage(self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int,
                    stride: int, dilate: bool) -> nn.Sequential:
        previous_dilation = self.dilation
        if dilate:
            self.dilation, stride = self.dilation * stride, 1
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, self.dilation, downsample, first_dilation=previous_dilation)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, dilation=self.dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def _init_weights(model: nn.Module) -> None:
    """He initialisation (fan_out) for convolutions, BN γ = 1 and β = 0, as torchvision does."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def resnet(name: str, output_stride: int = 8, deep_stem: bool = False) -> ResNet:
    """Build the ResNet `name` (one of RESNET_SPECS) with randomly initialised weights."""
    if name not in RESNET_SPECS:
        raise ConfigError(f"backbone={name!r} is unknown: backbone must be one of {', '.join(RESNET_SPECS)}")
    return ResNet(RESNET_SPECS[name], output_stride, deep_stem)
