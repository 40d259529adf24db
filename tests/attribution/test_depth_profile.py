from __future__ import annotations

import numpy as np
import pytest
import torch

from gradlab.attribution import COLUMNS, LAYER_METHODS, AttributionError, SegmentationScore, depth_profile
from gradlab.attribution.score import region_scores
from gradlab.models import build_model
from tests.attribution.conftest import N_STEPS

T = 3


@pytest.mark.parametrize("name", ["em", "hem"])
def test_profile_is_finite_and_differs_across_iterations(profiles, batch, name):
    frame = profiles[name]
    assert list(frame.columns) == COLUMNS
    assert set(frame["kind"]) == {name} and set(frame["method"]) == set(LAYER_METHODS)
    assert len(frame) == len(batch.images) * len(LAYER_METHODS) * T
    assert np.isfinite(frame[["value", "abs_value", "score"]].to_numpy()).all()
    for (_, _), rows in frame.groupby(["image", "method"]):
        assert sorted(rows["iteration"]) == [1, 2, 3]
        assert rows["abs_value"].gt(0).all()
        assert rows["value"].max() - rows["value"].min() > 1e-6 * rows["value"].abs().max()
        assert rows["abs_value"].nunique() == T


def cell_output(net, cell, images, batch):
    """(region scores, the output (μ^(t), Z^(t)) of iteration `cell`) of one forward with gradient."""
    kept = []
    handle = cell.register_forward_hook(lambda module, inputs, output: kept.append(output))
    try:
        scores = SegmentationScore(net)(images, batch.regions).gather(1, batch.classes[:, None]).squeeze(1)
    finally:
        handle.remove()
    return scores, kept[0]


def scores_with_output(net, cell, output, batch):
    """The region scores of the images when iteration `cell` returns `output` instead of its own."""
    handle = cell.register_forward_hook(lambda module, inputs, own: output)
    try:
        return region_scores(net, batch.images, batch.classes, batch.regions)
    finally:
        handle.remove()


def test_gradient_x_activation_equals_a_plain_autograd_computation(loaded, batch, profiles):
    net = loaded["hem"].net
    frame = profiles["hem"].query("method == 'gradient-x-activation'")
    for cell in net.em.iterations:
        scores, (mu, _z) = cell_output(net, cell, batch.images, batch)
        (grad,) = torch.autograd.grad(scores.sum(), mu)
        expected = (mu * grad).flatten(1).sum(1).detach().numpy()
        assert np.allclose(frame[frame["iteration"] == cell.t]["value"], expected, rtol=1e-4, atol=1e-6)


def test_integrated_gradients_mass_is_the_score_lost_when_an_iteration_output_is_swapped(loaded, batch, profiles):
    """For t < T: Σ LIG(μ^(t)) ≈ S(x) − S(x with iteration t's output taken from the baseline image)."""
    net = loaded["hem"].net
    frame = profiles["hem"].query("method == 'integrated-gradients'")
    full = region_scores(net, batch.images, batch.classes, batch.regions)
    for cell in list(net.em.iterations)[:-1]:
        with torch.no_grad():
            _, baseline_output = cell_output(net, cell, torch.zeros_like(batch.images), batch)
        swapped = scores_with_output(net, cell, baseline_output, batch)
        mass = torch.tensor(frame[frame["iteration"] == cell.t]["value"].to_numpy(), dtype=full.dtype)
        assert torch.allclose(mass, full - swapped, rtol=0.03, atol=1e-3), (cell.t, mass, full - swapped)


def test_a_one_step_run_gets_a_full_profile_and_keeps_its_gradient_mode(loaded, batch, profiles):
    """Attribution describes the forward function: iterations trained under no_grad still get mass."""
    frame = profiles["hem-one-step"]
    assert frame["abs_value"].gt(0).all()
    assert loaded["hem-one-step"].net.em.grad_iterations == 1 and not loaded["hem-one-step"].net.training


def test_methods_can_be_chosen_and_unknown_ones_are_an_error(loaded, batch):
    net = loaded["em"].net
    frame = depth_profile(net, batch.images, batch.classes, batch.regions, methods="gradient-x-activation")
    assert set(frame["method"]) == {"gradient-x-activation"} and len(frame) == len(batch.images) * T
    with pytest.raises(AttributionError, match="unknown attribution method.*valid methods are integrated-grad"):
        depth_profile(net, batch.images, batch.classes, batch.regions, methods=["saliency"], n_steps=N_STEPS)


def test_a_model_without_em_layer_is_an_error(batch):
    with pytest.raises(AttributionError, match="no EM / HEM layer"):
        depth_profile(build_model("none", 11), batch.images, batch.classes, batch.regions)
