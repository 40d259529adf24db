"""``SceneDataset``: 11-class segmentation scenes composed lazily from real sprites (see ``compose.py``).

Scene ``i`` of a split is a pure function of ``(seed, split, i)``: its RNG is seeded from those three numbers,
so it is the same every time and in every DataLoader worker order. Train and val draw from disjoint sprite
pools (``split_sprite_indices``), so val scenes contain only digits the model never saw in training.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from gradlab.data.compose import Scene, SceneConfig, compose_scene
from gradlab.data.sprites import SPRITE_CLASSES, SPRITE_SPLITS, SpriteSet, split_sprite_indices
from gradlab.data.transforms import IGNORE_INDEX, EvalTransform, JointTransform, Pair
from gradlab.errors import DataError

SCENE_NUM_CLASSES = SPRITE_CLASSES + 1  # background + one class per sprite label
DEFAULT_LENGTHS = {"train": 2000, "val": 500}
# Per-channel statistics of raw scene images (2,000 digits train scenes at 64²: mean 0.296..0.301,
# std 0.158..0.159; the colours are symmetric across channels, so one rounded value serves all three).
SCENE_MEAN = (0.30, 0.30, 0.30)
SCENE_STD = (0.16, 0.16, 0.16)


class SceneDataset(Dataset):
    """Scenes of ``min_sprites..max_sprites`` tinted sprites on a ``size`` x ``size`` canvas.

    Items are ``(image, mask)``: image float32 (3, H, W) normalised with ``SCENE_MEAN`` / ``SCENE_STD``
    (or whatever ``transform`` does), mask int64 (H, W) with classes 0 (background) .. 10 (sprite label + 1).
    """

    num_classes = SCENE_NUM_CLASSES
    ignore_index = IGNORE_INDEX

    def __init__(
        self,
        sprites: SpriteSet,
        split: str = "train",
        *,
        size: int = 64,
        seed: int = 0,
        length: int | None = None,
        min_sprites: int = 2,
        max_sprites: int = 5,
        scale: tuple[float, float] = (0.35, 0.6),
        threshold: float = 0.25,
        noise: float = 0.04,
        val_fraction: float = 0.2,
        transform: JointTransform | None = None,
    ) -> None:
        self.sprites, self.split, self.seed = sprites, split, int(seed)
        self.pool = split_sprite_indices(len(sprites), split, val_fraction)
        self.length = DEFAULT_LENGTHS[split] if length is None else int(length)
        if self.length < 0:
            raise DataError(f"scene length={length} must be a non-negative number of scenes")
        self.config = SceneConfig(
            size=size,
            min_sprites=min_sprites,
            max_sprites=max_sprites,
            scale=tuple(scale),
            threshold=threshold,
            noise=noise,
        )
        self.transform = transform if transform is not None else EvalTransform(SCENE_MEAN, SCENE_STD)

    def __len__(self) -> int:
        return self.length

    def rng(self, index: int) -> np.random.Generator:
        """The RNG of scene ``index``, seeded from (seed, split, index) only."""
        return np.random.default_rng([self.seed, SPRITE_SPLITS.index(self.split), index])

    def scene(self, index: int) -> Scene:
        """Scene ``index`` as numpy arrays in [0, 1] plus the sprite placements (for inspection, tests)."""
        if not -self.length <= index < self.length:
            raise IndexError(f"scene index {index} out of range for {self.length} scenes")
        index %= self.length
        sprites = self.sprites
        return compose_scene(self.rng(index), sprites.images, sprites.labels, self.pool, self.config)

    def __getitem__(self, index: int) -> Pair:
        scene = self.scene(index)
        return self.transform(torch.from_numpy(scene.image), torch.from_numpy(scene.mask))
