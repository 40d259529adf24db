"""The score, the class regions, the depth profile (checked against plain autograd and against swapping an
iteration's output), input attributions (completeness, Sundararajan et al. 2017), and hook hygiene (as captum
tests its own): after an attribution, and after an error raised inside the model half-way through one, no module
holds a hook and the model is back in its own mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients
from torch.nn.modules import module as torch_module

from gradlab.attribution import (
    COLUMNS,
    LAYER_METHODS,
    AttributionError,
    SegmentationScore,
    attribution_mode,
    class_regions,
    depth_profile,
    input_attributions,
    integrated_gradients,
)
from gradlab.attribution.core import region_scores
from gradlab.models import build_model
from tests.attribution.conftest import N_STEPS

# --- the score

def test_score_is_each_class_logits_summed_over_the_region(loaded, batch):
    net = loaded["hem"].net
    with torch.no_grad():
        logits = net(batch.images)
        score = SegmentationScore(net)(batch.images, batch.regions)
    for b in range(len(batch.images)):
        inside = batch.regions[b].bool()
        assert torch.allclose(score[b], logits[b][:, inside].sum(1), rtol=1e-5, atol=1e-4)


def test_a_region_of_the_wrong_size_is_an_error(loaded, batch):
    with pytest.raises(AttributionError, match="region has shape"):
        SegmentationScore(loaded["em"].net)(batch.images, batch.regions[:, :-1])


def test_captum_keeps_each_image_with_its_own_region_along_the_path(loaded, batch):
    """A batch attributed at once equals each image attributed alone: the expanded regions stay aligned."""
    net = loaded["em"].net
    ig = IntegratedGradients(SegmentationScore(net))
    with attribution_mode(net):
        together = ig.attribute(batch.images, target=batch.classes, additional_forward_args=(batch.regions,),
                                n_steps=8)
        alone = torch.cat([ig.attribute(batch.images[b:b + 1], target=batch.classes[b:b + 1],
                                        additional_forward_args=(batch.regions[b:b + 1],), n_steps=8)
                           for b in range(len(batch.images))])
    assert batch.classes[0] != batch.classes[1] or not torch.equal(batch.regions[0], batch.regions[1])
    assert torch.allclose(together, alone, atol=1e-5)


# --- class regions

def test_each_image_gets_its_largest_foreground_class_and_its_pixels():
    masks = torch.zeros(3, 4, 4, dtype=torch.int64)
    masks[0, :2] = 3
    masks[0, 3, :3] = 5
    masks[1, :, :] = 255  # ignored pixels never win
    masks[1, 0, 0] = 2
    classes, regions = class_regions(masks)  # image 2 is all background
    assert classes.tolist() == [3, 2, 0]
    assert regions.dtype == torch.float32 and regions.sum(dim=(1, 2)).tolist() == [8, 1, 16]
    assert torch.equal(regions[0].bool(), masks[0] == 3)


def test_a_class_absent_from_its_image_is_an_error():
    masks = torch.zeros(2, 4, 4, dtype=torch.int64)
    masks[1, 0] = 7
    with pytest.raises(AttributionError, match=r"image\(s\) \[0\] have no pixel of their class \[7\]"):
        class_regions(masks, [7, 7])


def test_one_class_per_image_is_required():
    with pytest.raises(AttributionError, match="2 classes for 3 masks"):
        class_regions(torch.zeros(3, 4, 4, dtype=torch.int64), [0, 0])


# --- the depth profile

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
        depth_profile(build_model(11, None), batch.images, batch.classes, batch.regions)


# --- input attributions

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


# --- hook hygiene

HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                "_global_backward_pre_hooks")


def hooks_left(model: torch.nn.Module) -> list[str]:
    left = [f"{name or 'model'}.{d}" for name, m in model.named_modules() for d in HOOK_DICTS if getattr(m, d)]
    return left + [g for g in GLOBAL_HOOKS if getattr(torch_module, g)]


def attribute(kind: str, method: str, net, batch):
    if kind == "layer":
        return depth_profile(net, batch.images, batch.classes, batch.regions, methods=method, n_steps=4)
    return input_attributions(net, batch.images, batch.classes, batch.regions, methods=method, n_steps=4)


ALL = [("layer", m) for m in LAYER_METHODS] + [("input", "saliency"), ("input", "integrated-gradients")]


@pytest.mark.parametrize("kind,method", ALL)
def test_no_hook_remains_after_an_attribution(loaded, batch, kind, method):
    net = loaded["hem"].net
    attribute(kind, method, net, batch)
    assert hooks_left(net) == []


class Boom(RuntimeError):
    pass


FAILURES = [(k, m, 1) for k, m in ALL] + [(k, m, 3) for k, m in ALL if m != "saliency"]  # saliency: 1 call


@pytest.mark.parametrize("kind,method,fail_at", FAILURES)
def test_no_hook_remains_after_an_error_inside_the_model(loaded, batch, monkeypatch, kind, method, fail_at):
    """The classifier (after the EM layer, so the iteration's hooks have run) raises on its fail_at-th call:
    the first forward, or one inside captum's gradient pass."""
    net = loaded["hem-one-step"].net
    net.train()  # attribution switches to eval mode: it must switch back after the error too
    classifier, calls = net.head.classifier, []
    forward = classifier.forward

    def failing(x):
        calls.append(1)
        if len(calls) == fail_at:
            raise Boom("inside the model")
        return forward(x)

    monkeypatch.setattr(classifier, "forward", failing)
    try:
        with pytest.raises(Boom):
            attribute(kind, method, net, batch)
        assert hooks_left(net) == []
        assert net.training and all(m.training for m in net.modules())
        assert net.em.grad_iterations == 1
    finally:
        net.eval()


def test_the_hook_check_sees_a_hook(loaded):
    """The check itself can fail."""
    net = loaded["em"].net
    handle = net.em.iterations[0].register_forward_hook(lambda *args: None)
    try:
        assert hooks_left(net) == ["head.ema.em.iterations.0._forward_hooks"]
    finally:
        handle.remove()
