"""Named parameter groups and the SGD groups built from them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradlab.errors import ConfigError
from gradlab.layers import EMSpec
from gradlab.models import build_model, optimizer_param_groups, parameter_groups


@pytest.fixture(params=["em", "hem", "none"])
def net(request):
    em = None if request.param == "none" else EMSpec(request.param, bases=4)
    return build_model(3, em, channels=16)


def test_groups_partition_all_parameters_exactly_once(net):
    groups = parameter_groups(net)
    assert list(groups) == ["backbone", "em", "head"]
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in net.parameters()}


def test_em_group_is_the_ema_unit(net):
    em = parameter_groups(net)["em"]
    if net.em is None:
        assert em == []
    else:
        assert {id(p) for p in em} == {id(p) for p in net.head.ema.parameters()}
        assert len(em) == 5  # conv_in weight and bias, conv_out weight, BN weight and bias


def test_wrapped_model_gives_the_same_groups(net):
    wrapped = nn.DataParallel(net)  # on CPU a plain wrapper with `.module`, like DistributedDataParallel
    assert parameter_groups(wrapped) == parameter_groups(net)


def test_groups_need_a_segmentation_net():
    with pytest.raises(ConfigError, match="model=Linear"):
        parameter_groups(nn.Linear(2, 2))


def test_sgd_groups_cover_every_parameter_once_with_emanet_rates(net):
    groups = optimizer_param_groups(net, lr=0.1, weight_decay=1e-4, head_lr_scale=10.0)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in net.parameters()}
    for g in groups:
        part, role = g["name"].split("/")
        scale = (1.0 if part == "backbone" else 10.0) * (2.0 if role == "bias" else 1.0)
        assert g["lr"] == pytest.approx(0.1 * scale)
        assert g["weight_decay"] == (1e-4 if role == "weight" else 0.0)
        assert all((p.dim() > 1) == (role == "weight") for p in g["params"])


def test_sgd_groups_leave_out_empty_groups_and_drive_an_optimizer():
    net = build_model(3, None, channels=16)
    groups = optimizer_param_groups(net, lr=0.1, weight_decay=1e-4)
    assert not any(g["name"].startswith("em/") for g in groups)
    opt = torch.optim.SGD(groups, momentum=0.9)
    net(torch.randn(2, 3, 32, 32)).mean().backward()
    opt.step()
    assert [g["name"] for g in opt.param_groups] == [g["name"] for g in groups]
