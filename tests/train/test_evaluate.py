from __future__ import annotations

import math

import pytest
import torch

from gradlab.train.evaluate import confusion_matrix, scores


def test_confusion_matrix_counts_and_ignores_255():
    target = torch.tensor([[0, 1, 1], [2, 255, 2]])
    pred = torch.tensor([[0, 1, 2], [2, 0, 1]])
    conf = confusion_matrix(pred, target, 3)
    assert conf.tolist() == [[1, 0, 0], [0, 1, 1], [0, 1, 1]]


def test_scores_miou_over_occurring_classes():
    conf = torch.tensor([[2, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]])
    s = scores(conf)
    assert s["iou/0"] == 1.0 and s["iou/1"] == pytest.approx(1 / 3) and math.isnan(s["iou/3"])
    assert s["miou"] == pytest.approx((1 + 1 / 3 + 1 / 3) / 3)
    assert s["pixel_acc"] == pytest.approx(4 / 6)


def _knockout_case(**overrides):
    """A small untrained EM/HEM network in eval mode with BN statistics of its own, and 3 batches of scenes."""
    from gradlab.models import model_from_config
    from tests.train.conftest import tiny_config

    torch.manual_seed(0)
    config = tiny_config(*(f"model.{k}={v}" for k, v in overrides.items()))
    net = model_from_config(config.model, 5)
    batches = [(torch.randn(4, 3, 32, 32), torch.randint(0, 5, (4, 32, 32))) for _ in range(3)]
    net.train()
    with torch.no_grad():
        for images, _ in batches:  # running statistics that are not the identity
            net(images)
    return net.eval(), batches


def test_the_em_branch_knockout_equals_the_unit_computed_by_hand_with_its_branch_mean():
    """Independently: the unit's inputs u caught on the way in, the branch BN(W_out relu(EM(W_in u))) averaged
    per channel by hand, and the unit replaced by relu(u + that mean); its mIoU is the knockout's."""
    from gradlab.train import em_branch_knockout, evaluate

    net, batches = _knockout_case()
    unit = net.head.ema
    result = em_branch_knockout(net, batches, 5, torch.device("cpu"))
    assert result["miou"] == evaluate(net, batches, 5, torch.device("cpu"))["miou"]
    inputs = []
    handle = unit.register_forward_pre_hook(lambda m, args: inputs.append(args[0]))
    with torch.no_grad():
        for images, _ in batches:
            net(images)
        handle.remove()
        branch = torch.cat([unit.norm(unit.conv_out(torch.relu(unit.em(unit.conv_in(u))))) for u in inputs])
    mean = branch.double().mean(dim=(0, 2, 3)).float().view(1, -1, 1, 1)
    unit.forward = lambda u: torch.relu(u + mean)
    by_hand = evaluate(net, batches, 5, torch.device("cpu"))["miou"]
    assert result["miou_em_ablated"] == pytest.approx(by_hand, abs=1e-12)
    assert result["miou_em_ablated"] != result["miou"]  # the branch did say something about each image


def test_a_branch_that_says_nothing_per_image_loses_nothing_when_knocked_out_and_a_baseline_has_no_branch():
    from gradlab.errors import GradlabError
    from gradlab.train import em_branch_knockout

    net, batches = _knockout_case(kind="em")
    torch.nn.init.zeros_(net.head.ema.conv_out.weight)  # the branch is BN of 0: one constant per channel
    result = em_branch_knockout(net, batches, 5, torch.device("cpu"))
    assert result["miou_em_ablated"] == pytest.approx(result["miou"], abs=1e-12)
    baseline, _ = _knockout_case(kind="none")
    with pytest.raises(GradlabError, match="no EMA unit"):
        em_branch_knockout(baseline, batches, 5, torch.device("cpu"))
