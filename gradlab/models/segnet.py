"""The segmentation network of EMANet / HEMNet: dilated backbone → EMA head → bilinear upsampling."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from gradlab.checks import is_int, require
from gradlab.errors import ConfigError
from gradlab.layers import LAYER_KINDS, EMSpec, UnrolledEM
from gradlab.models.backbone import build_backbone
from gradlab.models.head import EMAHead

if TYPE_CHECKING:
    from gradlab.train.config import ModelConfig

MODEL_KINDS = (*LAYER_KINDS, "none")


def default_head_channels(backbone_channels: int) -> int:
    """A quarter of the backbone width: 512 for ResNet-50/101 (EMANet's choice), 64 for `tiny`."""
    return max(2, backbone_channels // 4)


class SegmentationNet(nn.Module):
    """Image (B, 3, H, W) → class logits (B, num_classes, H, W) for any H, W.

    `backbone` is a name for `build_backbone` or a module with `out_channels`. `em` (an `EMLayer` or `HEMLayer`
    with `em.channels == head_channels`) goes into the head's EMA unit; None builds the baseline without it.
    `head_channels=None` takes `em.channels`, else `default_head_channels`. `pretrained` is a local state_dict
    file for a named backbone.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: str | nn.Module = "tiny",
        output_stride: int = 8,
        head_channels: int | None = None,
        em: UnrolledEM | None = None,
        dropout: float = 0.1,
        pretrained: str | Path | None = None,
        *,
        deep_stem: bool = False,
    ):
        super().__init__()
        require(is_int(num_classes, 1), "num_classes", num_classes, "an integer >= 1")
        require(isinstance(dropout, (int, float)) and 0 <= dropout < 1, "dropout", dropout, "in [0, 1)")
        require(em is None or isinstance(em, UnrolledEM), "em", type(em).__name__, "None or an EMLayer / HEMLayer")
        self.backbone = _resolve_backbone(backbone, output_stride, pretrained, deep_stem)
        channels = _resolve_head_channels(head_channels, em, self.backbone.out_channels)
        self.num_classes = num_classes
        self.head = EMAHead(self.backbone.out_channels, channels, num_classes, em, dropout)

    @property
    def em(self) -> UnrolledEM | None:
        """The unrolled EM / HEM layer of the head, or None for the baseline."""
        return getattr(self.head.ema, "em", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.backbone(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _resolve_backbone(backbone: str | nn.Module, output_stride: int, pretrained: str | Path | None,
                      deep_stem: bool) -> nn.Module:
    if isinstance(backbone, nn.Module):
        require(isinstance(getattr(backbone, "out_channels", None), int), "backbone", type(backbone).__name__,
               "a backbone name or a module with an integer attribute out_channels")
        require(pretrained is None, "pretrained", pretrained, "None when backbone is a module (load it yourself)")
        return backbone
    return build_backbone(backbone, output_stride, pretrained, deep_stem=deep_stem)


def _resolve_head_channels(head_channels: int | None, em: UnrolledEM | None, backbone_channels: int) -> int:
    if head_channels is None:
        return em.channels if em is not None else default_head_channels(backbone_channels)
    require(is_int(head_channels, 2), "head_channels", head_channels, "None or an integer >= 2")
    if em is not None and em.channels != head_channels:
        raise ConfigError(
            f"em.channels={em.channels} does not match head_channels={head_channels}: "
            "build the EM layer with channels=head_channels (or leave head_channels=None)"
        )
    return head_channels


def build_model(
    num_classes: int,
    em: EMSpec | None,
    *,
    channels: int | None = None,
    backbone: str = "tiny",
    output_stride: int = 8,
    pretrained: str | Path | None = None,
    dropout: float = 0.1,
    deep_stem: bool = False,
) -> SegmentationNet:
    """A `SegmentationNet` whose head holds the layer of `em` (an `EMSpec`), or the baseline for em=None.
    `channels` is the head width (None: `default_head_channels` of the backbone)."""
    require(em is None or isinstance(em, EMSpec), "em", type(em).__name__, "an EMSpec or None (the baseline)")
    net_backbone = build_backbone(backbone, output_stride, pretrained, deep_stem=deep_stem)
    if channels is None:
        channels = default_head_channels(net_backbone.out_channels)
    layer = em.layer(channels) if em is not None else None
    return SegmentationNet(num_classes, net_backbone, output_stride, channels, layer, dropout)


def model_from_config(model: ModelConfig, num_classes: int) -> SegmentationNet:
    """The network of a config's [model] table: its EM keys (those of `EMSpec`) make the layer's spec."""
    em = None
    if model.kind != "none":
        em = EMSpec(**{f.name: getattr(model, f.name) for f in fields(EMSpec) if hasattr(model, f.name)})
    return build_model(num_classes, em, channels=model.channels or None, backbone=model.backbone,
                       output_stride=model.output_stride, pretrained=model.pretrained or None, dropout=model.dropout)
