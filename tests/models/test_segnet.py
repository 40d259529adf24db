"""The segmentation network: shapes, the three kinds, argument checks, and that it can learn."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradlab.errors import ConfigError
from gradlab.layers import EMLayer, EMSpec, HEMLayer
from gradlab.models import SegmentationNet, build_backbone, build_model, optimizer_param_groups


def spec(kind: str, **options) -> EMSpec | None:
    """The EM layer's spec of a model kind ("none": no layer, the baseline)."""
    return None if kind == "none" else EMSpec(kind, **options)


@pytest.mark.parametrize("kind", ["em", "hem", "none"])
@pytest.mark.parametrize("size", [(32, 32), (33, 47)])
def test_logits_have_input_size_for_every_kind(kind, size):
    torch.manual_seed(0)
    net = build_model(5, spec(kind, bases=4, iterations=2), channels=16)
    assert net(torch.randn(2, 3, *size)).shape == (2, 5, *size)


def test_kinds_build_em_hem_and_the_baseline():
    em, hem, none = (build_model(3, spec(k, bases=4, step_size=0.25), channels=16)
                      for k in ("em", "hem", "none"))
    assert type(em.em) is EMLayer and em.em.step_size == 1.0
    assert type(hem.em) is HEMLayer and hem.em.step_size == 0.25
    assert none.em is None and isinstance(none.head.ema, nn.Identity)


def test_build_model_passes_the_em_arguments_through():
    em = EMSpec("hem", bases=6, iterations=5, step_size=0.7, kernel="gaussian", temperature=2.0, normalize=False,
                grad_iterations=2)
    net = build_model(4, em, channels=24, output_stride=16)
    em = net.em
    assert (em.channels, em.num_bases, em.num_iterations, em.step_size) == (24, 6, 5, 0.7)
    assert (em.kernel, em.temperature, em.normalize, em.grad_iterations) == ("gaussian", 2.0, False, 2)
    assert net.backbone.output_stride == 16 and net.head.conv_in[0].out_channels == 24


@pytest.mark.parametrize(("value", "expected"), [("all", None), (None, None), (0, 0), (3, 3)])
def test_grad_iterations_all_means_every_iteration(value, expected):
    assert build_model(2, EMSpec("em", bases=2, grad_iterations=value), channels=8).em.grad_iterations == expected


def test_default_head_width_is_a_quarter_of_the_backbone():
    assert build_model(2, None).head.conv_in[0].out_channels == 64  # tiny: 256 / 4
    assert build_model(2, EMSpec("em", bases=4)).em.channels == 64


def test_head_channels_default_to_the_em_width():
    net = SegmentationNet(3, em=HEMLayer(32, bases=4))
    assert net.head.conv_in[0].out_channels == 32 and net.head.classifier.in_channels == 16


def test_em_channels_must_match_head_channels():
    with pytest.raises(ConfigError, match="em.channels=32 does not match head_channels=64"):
        SegmentationNet(3, head_channels=64, em=HEMLayer(32, bases=4))


@pytest.mark.parametrize(("call", "named"), [
    (lambda: build_model(3, EMSpec("gmm")), "kind='gmm'"),
    (lambda: build_model(3, EMSpec("em", grad_iterations="some")), "grad_iterations='some'"),
    (lambda: SegmentationNet(0), "num_classes=0"),
    (lambda: SegmentationNet(3, dropout=1.0), "dropout=1.0"),
    (lambda: SegmentationNet(3, head_channels=1), "head_channels=1"),
    (lambda: SegmentationNet(3, em=nn.Identity()), "em='Identity'"),
    (lambda: SegmentationNet(3, backbone=nn.ReLU()), "backbone='ReLU'"),
    (lambda: SegmentationNet(3, backbone=build_backbone("tiny"), pretrained="w.pt"), "pretrained='w.pt'"),
])
def test_bad_arguments_raise_config_error_naming_them(call, named):
    with pytest.raises(ConfigError, match=named):
        call()


def test_em_layer_errors_come_from_the_layer_as_value_errors():
    with pytest.raises(ValueError, match="step_size=2.5"):
        build_model(3, EMSpec("hem", step_size=2.5))


def test_pretrained_backbone_weights_reach_the_network(tmp_path):
    torch.manual_seed(3)
    source = build_backbone("tiny").eval()
    torch.save(source.state_dict(), tmp_path / "tiny.pt")
    net = build_model(3, EMSpec("hem", bases=4), pretrained=tmp_path / "tiny.pt").eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net.backbone(x), source(x))


def test_every_parameter_receives_gradient():
    torch.manual_seed(0)
    net = build_model(3, EMSpec("hem", bases=4, iterations=2), channels=16)
    net(torch.randn(2, 3, 32, 32)).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def _blocks_batch(num_classes: int, n: int = 4, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose colour encodes the class of 8×8 blocks, plus noise: a batch a small net can fit."""
    g = torch.Generator().manual_seed(0)
    coarse = torch.randint(0, num_classes, (n, size // 8, size // 8), generator=g)
    target = coarse.repeat_interleave(8, 1).repeat_interleave(8, 2)
    palette = torch.randn(num_classes, 3, generator=g)
    images = palette[target].permute(0, 3, 1, 2) + 0.3 * torch.randn(n, 3, size, size, generator=g)
    return images, target


@pytest.mark.parametrize("kind", ["em", "hem", "none"])
def test_tiny_net_overfits_one_batch(kind):
    torch.manual_seed(0)
    images, target = _blocks_batch(4)
    net = build_model(4, spec(kind, bases=8, iterations=3), channels=32, dropout=0.0)
    opt = torch.optim.SGD(optimizer_param_groups(net, lr=0.1, weight_decay=1e-4), momentum=0.9)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(net(images), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0], losses  # measured: about 0.1 × after 30 steps
