"""``build_dataset``: from a source name to a Dataset that has ``num_classes`` and ``ignore_index``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from torch.utils.data import Dataset

from gradlab.data.scenes import SCENE_NUM_CLASSES, SceneDataset
from gradlab.data.sprites import load_sprites
from gradlab.data.transforms import EvalTransform, JointTransform, TrainTransform
from gradlab.data.voc import IMAGENET_MEAN, IMAGENET_STD, VOC_NUM_CLASSES, VOCSegmentation
from gradlab.errors import DataError

if TYPE_CHECKING:
    from gradlab.train.config import DataConfig

NUM_CLASSES = {"digits": SCENE_NUM_CLASSES, "idx": SCENE_NUM_CLASSES, "voc": VOC_NUM_CLASSES}
DATA_SOURCES = tuple(NUM_CLASSES)
SCENE_OPTIONS = (
    "length", "min_sprites", "max_sprites", "scale", "threshold", "noise", "val_fraction", "transform",
)  # fmt: skip
VOC_OPTIONS = ("scale_range", "flip_prob", "generator", "transform")


def _check_options(source: str, options: dict[str, Any], valid: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(valid))
    if unknown:
        names, allowed = ", ".join(unknown), ", ".join(valid)
        raise DataError(f"unknown option(s) {names} for source {source!r}; valid options: {allowed}")


def _voc_transform(split: str, size: int, options: dict[str, Any]) -> JointTransform:
    """Training augmentation (scale, crop to ``size``, flip) for the train split, normalisation otherwise."""
    if "transform" in options:
        return options["transform"]
    if split != "train":
        return EvalTransform(IMAGENET_MEAN, IMAGENET_STD)
    return TrainTransform(size, IMAGENET_MEAN, IMAGENET_STD, **options)


def build_dataset(
    source: str,
    split: str,
    *,
    root: str | os.PathLike[str] | None = None,
    size: int = 64,
    seed: int = 0,
    **options: Any,
) -> Dataset:
    """The ``split`` of a data source: ``"digits"`` or ``"idx"`` scenes, or a ``"voc"`` folder.

    For scenes, ``size`` is the canvas side, ``seed`` fixes every scene, ``root`` is the IDX folder
    (unused by digits) and ``options`` go to :class:`SceneDataset`. For VOC, ``root`` is required, the
    train split is augmented and cropped to ``size`` (``options``: scale_range, flip_prob, generator, or
    a whole transform), other splits are only normalised and keep their image size; ``seed`` is unused
    (augmentation draws from ``generator`` or torch's global RNG, which DataLoader seeds per worker).
    """
    if source not in NUM_CLASSES:
        raise DataError(f"unknown data source {source!r}; valid sources: {', '.join(DATA_SOURCES)}")
    if source == "voc":
        _check_options(source, options, VOC_OPTIONS)
        if root is None:
            raise DataError("source 'voc' needs root=<folder of VOC2012> (the one holding JPEGImages/)")
        return VOCSegmentation(root, split, transform=_voc_transform(split, size, options))
    _check_options(source, options, SCENE_OPTIONS)
    return SceneDataset(load_sprites(source, root), split, size=size, seed=seed, **options)


def splits_from_config(data: DataConfig, seed: int) -> tuple[Dataset, Dataset]:
    """The (train, val) splits of a config's [data] table (scenes: each split's length and sprite options)."""
    opts = {"root": data.root or None, "size": data.size, "seed": seed}
    if data.source == "voc":
        return build_dataset("voc", "train", **opts), build_dataset("voc", "val", **opts)
    opts.update(min_sprites=data.min_sprites, max_sprites=data.max_sprites, scale=(data.scale_min, data.scale_max),
                threshold=data.threshold)
    return (build_dataset(data.source, "train", length=data.train_length, **opts),
            build_dataset(data.source, "val", length=data.val_length, **opts))
