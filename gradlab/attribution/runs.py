"""A trained run, ready to attribute: its network (weights of checkpoints/last.pt) and validation images."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset

from gradlab.attribution.depth_profile import depth_profile
from gradlab.attribution.errors import AttributionError
from gradlab.attribution.regions import class_regions
from gradlab.train import RunDirectory, load_model
from gradlab.train.trainer import build_data


@dataclass
class RunModel:
    """A run's name, network (eval mode) and validation split."""

    name: str
    net: nn.Module
    val: Dataset

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device


@dataclass
class Batch:
    """Validation images with their ids, target classes and class regions (see `class_regions`)."""

    ids: list[int]
    images: torch.Tensor
    classes: torch.Tensor
    regions: torch.Tensor


def load_run(run_dir: str | Path, device: str | torch.device | None = None) -> RunModel:
    """The network of a run directory with the weights of its last checkpoint, on `device` (None: CUDA when
    available, else the CPU), and its validation split."""
    run = RunDirectory(run_dir)
    if not run.config_path.is_file():
        raise AttributionError(f"{run.path} is not a run directory (no config.toml): give a folder made by "
                               "gradlab train")
    config = run.config()
    if config.model.kind == "none":
        raise AttributionError(f"run {run.path} has no EM layer (model.kind = none): it has no unrolled "
                               "iterations to attribute")
    net, config = load_model(run.path, device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return RunModel(run.path.resolve().name, net, build_data(config)[1])


def first_images(val: Dataset, count: int, device: str | torch.device = "cpu") -> list[Batch]:
    """The first `count` validation images on `device`: one `Batch`, or one per image when their sizes differ
    (VOC)."""
    if not isinstance(count, int) or count < 1:
        raise AttributionError(f"images={count!r} is invalid: give a number of validation images >= 1")
    if count > len(val):
        raise AttributionError(f"images={count} but the validation split has {len(val)} images")
    pairs = [val[i] for i in range(count)]
    groups = [list(range(count))] if len({p[0].shape for p in pairs}) == 1 else [[i] for i in range(count)]
    ignore = getattr(val, "ignore_index", 255)
    batches = []
    for ids in groups:
        images, masks = (torch.stack([pairs[i][j] for i in ids]).to(device) for j in (0, 1))
        classes, regions = class_regions(masks, ignore_index=ignore)
        batches.append(Batch(ids, images, classes, regions))
    return batches


def profile_runs(run_dirs: Iterable[str | Path], *, images: int = 4, methods: str | Iterable[str] | None = None,
                 n_steps: int = 64) -> pd.DataFrame:
    """The depth profiles of several runs (e.g. EM and HEM) on their first `images` validation images."""
    frames = []
    for run_dir in run_dirs:
        run = load_run(run_dir)
        batches = first_images(run.val, images, run.device)
        frames.append(run_profile(run, batches, methods=methods, n_steps=n_steps))
    return sort_profile(pd.concat(frames, ignore_index=True))


def run_profile(run: RunModel, batches: list[Batch], *, methods: str | Iterable[str] | None = None,
                n_steps: int = 64) -> pd.DataFrame:
    """The depth profile of one run over its batches of images, rows in `sort_profile` order."""
    frames = [depth_profile(run.net, b.images, b.classes, b.regions, methods=methods, n_steps=n_steps,
                            run=run.name, image_ids=b.ids) for b in batches]
    return sort_profile(pd.concat(frames, ignore_index=True))


def sort_profile(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows by run and method (both in their first-seen order), image and iteration: the first rows of a
    table (all a report shows) are whole profiles."""
    keys = {c: frame[c].map({v: i for i, v in enumerate(dict.fromkeys(frame[c]))}) for c in ("run", "method")}
    order = frame.assign(_run=keys["run"], _method=keys["method"])
    order = order.sort_values(["_run", "_method", "image", "iteration"], kind="stable")
    return order.drop(columns=["_run", "_method"]).reset_index(drop=True)
