"""The depth profile: how much attribution each unrolled iteration's state μ^(t) receives, as a tidy frame."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd
import torch
from torch import nn

from gradlab.attribution.errors import AttributionError
from gradlab.attribution.methods import LAYER_METHODS, attribute_iteration, check_methods
from gradlab.attribution.mode import attribution_mode, em_layer
from gradlab.attribution.score import SegmentationScore, region_scores
from gradlab.layers import EMLayer, UnrolledEM

COLUMNS = ["run", "kind", "image", "class", "iteration", "method", "value", "abs_value", "score"]


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
                rows += _rows(mu, method, cell.t, ids, classes, scores)
    frame = pd.DataFrame(rows, columns=COLUMNS[2:])
    frame.insert(0, "kind", layer_kind(layer))
    frame.insert(0, "run", run)
    return frame


def layer_kind(layer: UnrolledEM) -> str:
    """"em" for an `EMLayer`, "hem" for a highway layer (any other `UnrolledEM`)."""
    return "em" if isinstance(layer, EMLayer) else "hem"


def _rows(mu: torch.Tensor, method: str, t: int, ids: list[int], classes: torch.Tensor,
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
