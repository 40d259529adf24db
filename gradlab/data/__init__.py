"""Data: segmentation scenes made of real sprites (digits, IDX), VOC-format folders, joint transforms."""

from __future__ import annotations

from gradlab.data.build import DATA_SOURCES, NUM_CLASSES, build_dataset, splits_from_config
from gradlab.data.compose import SceneConfig
from gradlab.data.idx import read_idx, write_idx
from gradlab.data.scenes import SCENE_MEAN, SCENE_NUM_CLASSES, SCENE_STD, SceneDataset
from gradlab.data.sprites import SpriteSet, load_digits_sprites, load_idx_sprites, load_sprites
from gradlab.data.transforms import IGNORE_INDEX, EvalTransform, TrainTransform
from gradlab.data.voc import IMAGENET_MEAN, IMAGENET_STD, VOC_CLASSES, VOC_NUM_CLASSES, VOCSegmentation

__all__ = [
    "DATA_SOURCES",
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NUM_CLASSES",
    "SCENE_MEAN",
    "SCENE_NUM_CLASSES",
    "SCENE_STD",
    "VOC_CLASSES",
    "VOC_NUM_CLASSES",
    "EvalTransform",
    "SceneConfig",
    "SceneDataset",
    "SpriteSet",
    "TrainTransform",
    "VOCSegmentation",
    "build_dataset",
    "load_digits_sprites",
    "load_idx_sprites",
    "load_sprites",
    "read_idx",
    "splits_from_config",
    "write_idx",
]
