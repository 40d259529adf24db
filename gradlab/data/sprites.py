"""Sprite sources: real small images with class labels 0..9, as float arrays in [0, 1].

``digits`` is scikit-learn's bundled ``load_digits()`` (1,797 handwritten 8x8 digits; works offline right
after ``pip install``). ``idx`` reads MNIST / Fashion-MNIST IDX files from a folder. The sprite pool is split
into disjoint train / val parts by a fixed seeded permutation, independent of any scene seed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gradlab.data.idx import read_idx
from gradlab.errors import DataError

SPRITE_SOURCES = ("digits", "idx")
SPRITE_CLASSES = 10
DEFAULT_IDX_ROOT = Path("/usr/share/datasets/fashion-mnist")
SPRITE_SPLIT_SEED = 20_240_601  # fixed: train and val sprites stay disjoint whatever the scene seed
SPRITE_SPLITS = ("train", "val")


@dataclass(frozen=True)
class SpriteSet:
    """Sprites ``images`` (N, h, w) float32 in [0, 1] and their ``labels`` (N,) int64 in 0..9."""

    images: np.ndarray
    labels: np.ndarray
    name: str

    def __post_init__(self) -> None:
        if self.images.ndim != 3 or self.labels.shape != (self.images.shape[0],):
            raise DataError(
                f"sprite set {self.name!r}: images {self.images.shape} and labels {self.labels.shape} "
                "must be (N, h, w) and (N,)"
            )
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= SPRITE_CLASSES):
            raise DataError(f"sprite set {self.name!r}: labels must lie in 0..{SPRITE_CLASSES - 1}")

    def __len__(self) -> int:
        return len(self.labels)


def load_digits_sprites() -> SpriteSet:
    """scikit-learn's 1,797 real 8x8 handwritten digits, rescaled from 0..16 to [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    return SpriteSet(images=images, labels=digits.target.astype(np.int64), name="digits")


def _idx_file(root: Path, stem: str) -> Path:
    """``root/stem`` or ``root/stem.gz``, whichever exists."""
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"IDX file {stem}(.gz) is missing from {root}; point root at an MNIST-style folder")


def load_idx_sprites(root: str | os.PathLike[str] | None = None, part: str = "train") -> SpriteSet:
    """MNIST / Fashion-MNIST sprites from ``{part}-images-idx3-ubyte`` and ``{part}-labels-idx1-ubyte``.

    ``part`` is the file prefix (``train`` or ``t10k``); ``root`` defaults to Debian's Fashion-MNIST folder.
    """
    if part not in ("train", "t10k"):
        raise DataError(f"IDX part {part!r} is unknown; use 'train' or 't10k'")
    if root is None:
        if not DEFAULT_IDX_ROOT.is_dir():
            raise DataError(
                f"no IDX root given and {DEFAULT_IDX_ROOT} does not exist; pass root=<folder> "
                "or run `apt-get install dataset-fashion-mnist`"
            )
        root = DEFAULT_IDX_ROOT
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"IDX root {root} is not a folder; pass the folder holding the *-ubyte files")
    images = read_idx(_idx_file(root, f"{part}-images-idx3-ubyte"))
    labels = read_idx(_idx_file(root, f"{part}-labels-idx1-ubyte"))
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{part} images in {root} must be uint8 (N, h, w), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(
            f"{part} labels in {root} have shape {labels.shape} but there are {len(images)} images; "
            "the files do not belong together"
        )
    return SpriteSet(images=images.astype(np.float32) / 255.0, labels=labels.astype(np.int64), name="idx")


def load_sprites(source: str, root: str | os.PathLike[str] | None = None) -> SpriteSet:
    """The sprite set of a named source: ``"digits"`` or ``"idx"``."""
    if source == "digits":
        return load_digits_sprites()
    if source == "idx":
        return load_idx_sprites(root)
    raise DataError(f"unknown sprite source {source!r}; valid sources: {', '.join(SPRITE_SOURCES)}")


def split_sprite_indices(count: int, split: str, val_fraction: float = 0.2) -> np.ndarray:
    """Sorted indices of the sprites in ``split`` of a pool of ``count``; train and val are disjoint."""
    if split not in SPRITE_SPLITS:
        raise DataError(f"scene split {split!r} is unknown; use one of {', '.join(SPRITE_SPLITS)}")
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction={val_fraction} must lie strictly between 0 and 1")
    order = np.random.default_rng(SPRITE_SPLIT_SEED).permutation(count)
    n_val = int(round(count * val_fraction))
    chosen = order[:n_val] if split == "val" else order[n_val:]
    if len(chosen) == 0:
        raise DataError(f"{count} sprites leave none for the {split} split; use more sprites")
    return np.sort(chosen)
