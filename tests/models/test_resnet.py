"""The dilated ResNet backbones: feature sizes per output stride, layouts, sizes, naming."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradlab.errors import ConfigError
from gradlab.models import RESNET_SPECS, build_backbone, resnet


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(("output_stride", "size", "expected"), [
    (8, (64, 64), (8, 8)), (16, (64, 64), (4, 4)), (32, (64, 64), (2, 2)),
    (8, (65, 50), (9, 7)), (16, (65, 50), (5, 4)),  # odd sizes round up, as strided convolutions do
])
def test_output_stride_sets_feature_size(output_stride, size, expected):
    net = build_backbone("tiny", output_stride)
    y = net(torch.randn(2, 3, *size))
    assert y.shape == (2, net.out_channels, *expected)
    assert net.output_stride == output_stride


@pytest.mark.parametrize(("output_stride", "expected"), [(8, 4), (16, 2)])
def test_resnet50_output_stride_and_width(output_stride, expected):
    net = build_backbone("resnet50", output_stride).eval()
    with torch.no_grad():
        y = net(torch.randn(1, 3, 32, 32))
    assert y.shape == (1, 2048, expected, expected)


def test_tiny_has_about_1_2_million_parameters():
    assert 1_100_000 <= n_params(resnet("tiny")) <= 1_350_000  # docs/models.md: 1.23M


@pytest.mark.parametrize(("name", "expected"), [
    ("resnet18", 11_176_512), ("resnet50", 23_508_032), ("resnet101", 42_500_160),
])
def test_standard_layouts_match_torchvision_parameter_counts(name, expected):
    assert n_params(resnet(name)) == expected  # torchvision's counts without the 1000-class fc


def test_standard_layouts_have_the_paper_block_counts():
    assert RESNET_SPECS["resnet50"].layers == (3, 4, 6, 3)
    assert RESNET_SPECS["resnet101"].layers == (3, 4, 23, 3)
    assert resnet("resnet50").out_channels == 2048


def _dilations(net: nn.Module, stage: str) -> list[tuple[int, int]]:
    return [(m.stride[0], m.dilation[0]) for n, m in net.named_modules()
            if n.startswith(stage) and isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]


def test_output_stride_8_dilates_the_last_two_stages():
    net = resnet("tiny", 8)
    assert _dilations(net, "layer3") == [(1, 1), (1, 2)]  # the old strided position keeps dilation 1
    assert _dilations(net, "layer4") == [(1, 2), (1, 4)]


def test_output_stride_16_dilates_only_the_last_stage():
    net = resnet("resnet50", 16)
    assert _dilations(net, "layer3")[0] == (2, 1)
    assert _dilations(net, "layer4") == [(1, 1), (1, 2), (1, 2)]


def test_parameter_names_follow_torchvision():
    keys = resnet("resnet50").state_dict().keys()
    for key in ("conv1.weight", "bn1.running_mean", "layer1.0.downsample.0.weight", "layer4.2.bn3.bias"):
        assert key in keys
    assert not any(k.startswith("fc.") for k in keys)


def test_deep_stem_is_three_convolutions_named_like_emanet():
    net = resnet("resnet50", deep_stem=True)
    convs = [n for n, m in net.named_modules() if n.startswith("conv1") and isinstance(m, nn.Conv2d)]
    assert convs == ["conv1.0", "conv1.3", "conv1.6"]
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 2048, 4, 4)


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"name": "resnet9000"}, "backbone='resnet9000'"),
    ({"name": "tiny", "output_stride": 4}, "output_stride=4"),
    ({"name": "torchvision-resnet50", "deep_stem": True}, "deep_stem=True"),
])
def test_bad_backbone_arguments_raise_config_error_naming_them(kwargs, named):
    with pytest.raises(ConfigError, match=named.replace("(", r"\(")):
        build_backbone(**kwargs)
