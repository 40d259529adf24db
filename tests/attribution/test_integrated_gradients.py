"""Completeness (Sundararajan et al. 2017): Σ IG attributions = S(x) − S(x') as the path integral converges."""

from __future__ import annotations

import pytest
import torch

from gradlab.attribution import integrated_gradients
from gradlab.attribution.score import region_scores


@pytest.mark.parametrize("name", ["em", "hem"])
def test_attributions_sum_to_the_score_difference_on_a_trained_model(loaded, batch, name):
    net = loaded[name].net
    attributions, delta = integrated_gradients(net, batch.images, batch.classes, batch.regions, n_steps=512)
    difference = (region_scores(net, batch.images, batch.classes, batch.regions)
                  - region_scores(net, torch.zeros_like(batch.images), batch.classes, batch.regions))
    total = attributions.sum(dim=(1, 2, 3))
    assert torch.allclose(total - difference, delta, atol=1e-3)  # captum's delta measures what it says
    assert (delta.abs() <= 0.05 * difference.abs() + 0.02).all(), (total, difference, delta)


def test_the_convergence_delta_shrinks_with_more_steps(loaded, batch):
    net = loaded["em"].net
    coarse = integrated_gradients(net, batch.images, batch.classes, batch.regions, n_steps=16)[1]
    fine = integrated_gradients(net, batch.images, batch.classes, batch.regions, n_steps=512)[1]
    assert fine.abs().mean() < 0.2 * coarse.abs().mean()
