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
