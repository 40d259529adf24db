"""captum attributions of one class region's score: to the state μ^(t) of each unrolled iteration (the depth
profile), and to the image's pixels (input attributions).

captum's segmentation pattern turns per-pixel logits into one score per image and class, S_bc = Σ over the
region of logit_bc, so that its attribution classes (which want one output per target) accept the model. The
model is attributed in eval mode with every unrolled iteration differentiable (`attribution_mode`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence

import pandas as pd
import torch
from captum.attr import (
    IntegratedGradients,
    LayerConductance,
    LayerGradientXActivation,
    LayerIntegratedGradients,
    Saliency,
)
from torch import nn

from gradlab.errors import GradlabError
from gradlab.layers import EMLayer, UnrolledEM

COLUMNS = ["run", "kind", "image", "class", "iteration", "method", "value", "abs_value", "score"]


class AttributionError(GradlabError, ValueError):
    """A run, model, method name, class or region that attribution cannot work with (a user can fix it)."""


# --- the score: a class's logits summed over its region --------------------------------------------------------

class SegmentationScore(nn.Module):
    """S_bc = Σ_{p ∈ region_b} logit_bc(p): images (B, 3, H, W), region (B, H, W) → (B, num_classes).

    Call captum with `target=classes` (one class per image) and `additional_forward_args=(region,)`: captum
    then attributes S_{b, c_b}, and repeats the region alongside the inputs it expands along integration paths.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
        logits = self.model(images)
        if region.shape != (logits.shape[0], *logits.shape[2:]):
            raise AttributionError(f"region has shape {tuple(region.shape)}: expected (B, H, W) = "
                                   f"{(logits.shape[0], *logits.shape[2:])}, one mask per image at the logits' size")
        return (logits * region.unsqueeze(1).to(logits.dtype)).sum(dim=(2, 3))


def region_scores(model: nn.Module, images: torch.Tensor, classes: torch.Tensor,
                  regions: torch.Tensor) -> torch.Tensor:
    """S_{b, c_b} for each image (B,), without gradient: the score every attribution of image b explains."""
    with torch.no_grad():
        scores = SegmentationScore(model)(images, regions)
    return scores.gather(1, classes.view(-1, 1)).squeeze(1)


def class_regions(masks: torch.Tensor, classes: torch.Tensor | list[int] | None = None, *,
                  ignore_index: int = 255, background: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(classes (B,) int64, regions (B, H, W) float) from label masks (B, H, W).

    Without `classes`, each image's class is the foreground class with the most pixels (the background when
    the image has none); its region is the pixels of that class. A class given for an image that has no pixel
    of it is an error (its score would be 0 and every attribution trivially 0).
    """
    if masks.dim() != 3:
        raise AttributionError(f"masks have shape {tuple(masks.shape)}: expected (B, H, W) label masks")
    if classes is None:
        classes = torch.stack([_largest_class(mask, ignore_index, background) for mask in masks])
    classes = torch.as_tensor(classes, dtype=torch.int64, device=masks.device).view(-1)
    if len(classes) != len(masks):
        raise AttributionError(f"got {len(classes)} classes for {len(masks)} masks: give one class per image")
    regions = (masks == classes.view(-1, 1, 1)).float()
    empty = [i for i, n in enumerate(regions.sum(dim=(1, 2)).tolist()) if n == 0]
    if empty:
        raise AttributionError(f"image(s) {empty} have no pixel of their class {classes[empty].tolist()}: "
                               "choose classes present in the masks (or leave classes=None)")
    return classes, regions


def _largest_class(mask: torch.Tensor, ignore_index: int, background: int) -> torch.Tensor:
    labels = mask[(mask != ignore_index) & (mask != background)]
    if labels.numel() == 0:
        return torch.tensor(background, device=mask.device)
    return torch.bincount(labels.flatten()).argmax()


# --- the state a model is attributed in ------------------------------------------------------------------------

@contextlib.contextmanager
def attribution_mode(model: nn.Module) -> Iterator[None]:
    """Within the block: `model.eval()` (fixed BN statistics, no dropout, bases μ^(0) left alone) and
    `grad_iterations = None` on every EM layer, restored afterwards, even after an error.

    `grad_iterations` (MATH.md §5) only decides where training gradients flow; the forward values are the same,
    so attributions describe the function the model computes whatever gradient mode it was trained with.
    """
    layers = [m for m in model.modules() if isinstance(m, UnrolledEM)]
    modes = {m: m.training for m in model.modules()}
    grad_iterations = [layer.grad_iterations for layer in layers]
    model.eval()
    for layer in layers:
        layer.grad_iterations = None
    try:
        yield
    finally:
        for layer, k in zip(layers, grad_iterations):
            layer.grad_iterations = k
        for module, training in modes.items():
            module.training = training


def em_layer(model: nn.Module) -> UnrolledEM:
    """The model's one EM / HEM layer (an error when it has none, or several)."""
    layers = [m for m in model.modules() if isinstance(m, UnrolledEM)]
    if not layers:
        raise AttributionError("the model has no EM / HEM layer (model.kind = none?): "
                               "it has no unrolled iterations to attribute")
    if len(layers) > 1:
        raise AttributionError(f"the model has {len(layers)} EM / HEM layers: pass layer=<the one to attribute>")
    return layers[0]


def layer_kind(layer: UnrolledEM) -> str:
    """"em" for an `EMLayer`, "hem" for a highway layer (any other `UnrolledEM`)."""
    return "em" if isinstance(layer, EMLayer) else "hem"


# --- the methods by name ---------------------------------------------------------------------------------------
# Every layer method has one signature, `(score, cell, images, baselines, classes, regions, n_steps, batch)`, and
# returns the attribution of μ^(t), the bases iteration t hands on (shape (B, K, C)), and of Z^(t).

# Z^(t) of an iteration t < T feeds nothing downstream (only μ^(t) does): captum must accept its unused gradient.
GRAD_KWARGS = {"allow_unused": True, "materialize_grads": True}


def _integrated_gradients(score, cell, images, baselines, classes, regions, n_steps, batch):
    """∫ ∂S/∂μ^(t) dμ^(t) from μ^(t) of the baseline image to μ^(t) of the image, the rest of the net on the image."""
    return LayerIntegratedGradients(score, cell).attribute(
        images, baselines=baselines, target=classes, additional_forward_args=(regions,), n_steps=n_steps,
        internal_batch_size=batch, grad_kwargs=GRAD_KWARGS)


def _gradient_x_activation(score, cell, images, baselines, classes, regions, n_steps, batch):
    """μ^(t) ⊙ ∂S/∂μ^(t) at the image: the first-order share of μ^(t) (no path, no baseline)."""
    return LayerGradientXActivation(score, cell).attribute(
        images, target=classes, additional_forward_args=(regions,), grad_kwargs=GRAD_KWARGS)


def _conductance(score, cell, images, baselines, classes, regions, n_steps, batch):
    """∫ ∂S/∂μ^(t) · dμ^(t)/dα along the input path baseline → image: the part of S(x) − S(x') carried by μ^(t)."""
    return LayerConductance(score, cell).attribute(
        images, baselines=baselines, target=classes, additional_forward_args=(regions,), n_steps=n_steps,
        internal_batch_size=batch, grad_kwargs=GRAD_KWARGS)


LayerMethod = Callable[..., tuple[torch.Tensor, ...]]
LAYER_METHODS: dict[str, LayerMethod] = {
    "integrated-gradients": _integrated_gradients,
    "gradient-x-activation": _gradient_x_activation,
    "conductance": _conductance,
}
INPUT_METHODS = ("saliency", "integrated-gradients")
METHODS = tuple(dict.fromkeys([*LAYER_METHODS, *INPUT_METHODS]))


def check_methods(methods: str | Iterable[str] | None, valid: Iterable[str]) -> list[str]:
    """The requested method names (all `valid` ones for None), each checked against `valid`."""
    valid = list(valid)
    names = valid if methods is None else [methods] if isinstance(methods, str) else list(methods)
    unknown = [m for m in names if m not in valid]
    if unknown or not names:
        raise AttributionError(f"unknown attribution method(s) {unknown or names}: valid methods are "
                               f"{', '.join(valid)}")
    return list(dict.fromkeys(names))


def attribute_iteration(method: str, score: nn.Module, cell: nn.Module, images: torch.Tensor,
                        baselines: torch.Tensor, classes: torch.Tensor, regions: torch.Tensor, n_steps: int,
                        batch: int | None) -> torch.Tensor:
    """The attribution of μ^(t) (B, K, C) by one layer method; captum returns one per output of (μ^(t), Z^(t))."""
    mu, _z = LAYER_METHODS[method](score, cell, images, baselines, classes, regions, n_steps, batch)
    return mu.detach()


# --- the depth profile: attribution per unrolled iteration -----------------------------------------------------

def depth_profile(model: nn.Module, images: torch.Tensor, classes: torch.Tensor, regions: torch.Tensor, *,
                  methods: str | Iterable[str] | None = None, baselines: torch.Tensor | None = None,
                  n_steps: int = 64, run: str = "", image_ids: Sequence[int] | None = None,
                  layer: UnrolledEM | None = None, internal_batch_size: int | None = 64) -> pd.DataFrame:
    """One row per (image, method, iteration t): the attribution of S_{b,c} (the class's logits summed over
    its region, `SegmentationScore`) to the bases μ^(t) that iteration t outputs.

    value = Σ over μ^(t) of the attribution (signed), abs_value = Σ |attribution| (the mass), score = S_{b,c}.
    methods: names of `LAYER_METHODS` (None: all); baselines: the reference images of the path methods (None:
    zeros, the mean colour after normalisation). Runs under `attribution_mode` (eval, all iterations
    differentiable); images are (B, 3, H, W), classes (B,), regions (B, H, W), see `class_regions`.
    The path methods evaluate at most `internal_batch_size` interpolated images at once (memory, not results).
    """
    names = check_methods(methods, LAYER_METHODS)
    layer = em_layer(model) if layer is None else layer
    baselines = torch.zeros_like(images) if baselines is None else baselines
    ids = list(range(len(images))) if image_ids is None else list(image_ids)
    _check_batch(images, classes, regions, baselines, ids)
    score = SegmentationScore(model)
    rows = []
    with attribution_mode(model):
        scores = region_scores(model, images, classes, regions)
        for method in names:
            for cell in layer.iterations:
                mu = attribute_iteration(method, score, cell, images, baselines, classes, regions, n_steps,
                                         internal_batch_size)
                rows += _profile_rows(mu, method, cell.t, ids, classes, scores)
    frame = pd.DataFrame(rows, columns=COLUMNS[2:])
    frame.insert(0, "kind", layer_kind(layer))
    frame.insert(0, "run", run)
    return frame


def _profile_rows(mu: torch.Tensor, method: str, t: int, ids: list[int], classes: torch.Tensor,
                  scores: torch.Tensor) -> list[dict]:
    value = mu.flatten(1).sum(1).tolist()
    mass = mu.flatten(1).abs().sum(1).tolist()
    return [{"image": i, "class": int(c), "iteration": t, "method": method, "value": v, "abs_value": m,
             "score": float(s)} for i, c, v, m, s in zip(ids, classes.tolist(), value, mass, scores.tolist())]


def _check_batch(images: torch.Tensor, classes: torch.Tensor, regions: torch.Tensor, baselines: torch.Tensor,
                 ids: list[int]) -> None:
    if images.dim() != 4:
        raise AttributionError(f"images have shape {tuple(images.shape)}: expected (B, 3, H, W)")
    if baselines.shape != images.shape:
        raise AttributionError(f"baselines have shape {tuple(baselines.shape)}: expected the images' "
                               f"{tuple(images.shape)}")
    counts = {"classes": len(classes), "regions": len(regions), "image_ids": len(ids)}
    wrong = {k: n for k, n in counts.items() if n != len(images)}
    if wrong:
        raise AttributionError(f"{len(images)} images but {wrong}: give one of each per image")


# --- input attributions: which pixels move S_{b,c} -------------------------------------------------------------

def integrated_gradients(model: nn.Module, images: torch.Tensor, classes: torch.Tensor, regions: torch.Tensor, *,
                         baselines: torch.Tensor | None = None, n_steps: int = 256,
                         internal_batch_size: int | None = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """IG of S_{b,c} w.r.t. the image (B, 3, H, W) and captum's convergence delta per image,
    Σ attributions − (S(x) − S(x')): completeness says it goes to 0 as n_steps grows (x' = baselines, zeros)."""
    baselines = torch.zeros_like(images) if baselines is None else baselines
    with attribution_mode(model):
        attributions, delta = IntegratedGradients(SegmentationScore(model)).attribute(
            images, baselines=baselines, target=classes, additional_forward_args=(regions,), n_steps=n_steps,
            internal_batch_size=internal_batch_size, return_convergence_delta=True)
    return attributions.detach(), delta.detach()


def saliency(model: nn.Module, images: torch.Tensor, classes: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """|∂S_{b,c}/∂x| per pixel and channel (B, 3, H, W)."""
    inputs = images.detach().clone().requires_grad_(True)  # captum warns when it has to switch this on itself
    with attribution_mode(model):
        grads = Saliency(SegmentationScore(model)).attribute(
            inputs, target=classes, additional_forward_args=(regions,), abs=True)
    return grads.detach()


def input_attributions(model: nn.Module, images: torch.Tensor, classes: torch.Tensor, regions: torch.Tensor, *,
                       methods: str | Iterable[str] | None = None, n_steps: int = 256,
                       baselines: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """{method name: attributions (B, 3, H, W)} for the names of `INPUT_METHODS` (None: all)."""
    maps = {}
    for method in check_methods(methods, INPUT_METHODS):
        if method == "saliency":
            maps[method] = saliency(model, images, classes, regions)
        else:
            maps[method] = integrated_gradients(model, images, classes, regions, baselines=baselines,
                                                n_steps=n_steps)[0]
    return maps
