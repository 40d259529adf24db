"""Compose one segmentation scene from sprites: a noisy gradient background, then tinted sprites on top.

Each sprite is resized (bilinear) to a random side ``scale * size``; its intensity divided by its maximum is
an opacity alpha in [0, 1] with which a random bright colour is blended in at a random position. The mask
takes class ``label + 1`` where ``alpha > threshold`` (default 0.25 of the sprite's maximum); later sprites
overwrite earlier ones in both image and mask. Class 0 is background.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from gradlab.errors import DataError


@dataclass(frozen=True)
class SceneConfig:
    """How scenes look: canvas side, sprites per scene, sprite side as a fraction of it, mask threshold."""

    size: int = 64
    min_sprites: int = 2
    max_sprites: int = 5
    scale: tuple[float, float] = (0.35, 0.6)
    threshold: float = 0.25
    noise: float = 0.04

    def __post_init__(self) -> None:
        if self.size < 8:
            raise DataError(f"scene size={self.size} is too small; use at least 8 (64 and 128 are usual)")
        if not 1 <= self.min_sprites <= self.max_sprites:
            raise DataError(f"sprites per scene ({self.min_sprites}, {self.max_sprites}) must satisfy 1 <= min <= max")
        low, high = self.scale
        if not 0.0 < low <= high <= 1.0:
            raise DataError(f"scale={self.scale} must be fractions of the canvas with 0 < low <= high <= 1")
        if not 0.0 <= self.threshold < 1.0:
            raise DataError(f"threshold={self.threshold} must lie in [0, 1)")
        if self.noise < 0.0:
            raise DataError(f"noise={self.noise} must be non-negative")


@dataclass(frozen=True)
class Placement:
    """Where one sprite went: index into the sprite set, its class label 0..9, box (top, left, side)."""

    sprite: int
    label: int
    top: int
    left: int
    side: int


@dataclass(frozen=True)
class Scene:
    """A composed scene: ``image`` (3, H, W) float32 in [0, 1], ``mask`` (H, W) int64, and how it was made."""

    image: np.ndarray
    mask: np.ndarray
    background: np.ndarray
    placements: tuple[Placement, ...]


@lru_cache(maxsize=512)
def _resize_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) bilinear interpolation weights (half-pixel centres, edge clamped)."""
    centres = np.clip((np.arange(dst) + 0.5) * src / dst - 0.5, 0.0, src - 1)
    lower = np.floor(centres).astype(np.int64)
    upper = np.minimum(lower + 1, src - 1)
    frac = (centres - lower).astype(np.float32)
    weights = np.zeros((dst, src), dtype=np.float32)
    np.add.at(weights, (np.arange(dst), lower), 1.0 - frac)
    np.add.at(weights, (np.arange(dst), upper), frac)
    weights.flags.writeable = False
    return weights


def resize_sprite(sprite: np.ndarray, side: int) -> np.ndarray:
    """Bilinear resize of an (h, w) sprite to (side, side)."""
    rows = _resize_matrix(sprite.shape[0], side)
    cols = _resize_matrix(sprite.shape[1], side)
    return rows @ sprite @ cols.T


def background(rng: np.random.Generator, size: int, noise: float) -> np.ndarray:
    """A dark gradient between two random colours along a random direction, plus per-pixel colour noise.

    The noise is uniform with standard deviation ``noise`` (uniform draws are ~5x cheaper than Gaussian
    ones, and the noise draw was most of a scene's cost).
    """
    start, end = rng.uniform(0.05, 0.45, size=(2, 3, 1, 1)).astype(np.float32)
    angle = float(rng.uniform(0.0, 2.0 * np.pi))  # a Python float keeps the arithmetic in float32
    axis = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    ramp = math.cos(angle) * axis[None, :] + math.sin(angle) * axis[:, None]
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    grain = rng.random((3, size, size), dtype=np.float32)
    grain -= 0.5
    grain *= noise * math.sqrt(12.0)  # U(-0.5, 0.5) has standard deviation 1 / sqrt(12)
    grain += start + (end - start) * ramp[None]
    return np.clip(grain, 0.0, 1.0, out=grain)


def tint(rng: np.random.Generator) -> np.ndarray:
    """A random saturated, bright colour (HSV with S in [0.5, 1], V in [0.7, 1])."""
    rgb = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.5, 1.0), rng.uniform(0.7, 1.0))
    return np.asarray(rgb, dtype=np.float32)[:, None, None]


def place_sprite(
    image: np.ndarray,
    mask: np.ndarray,
    alpha: np.ndarray,
    colour: np.ndarray,
    box: Placement,
    threshold: float,
) -> None:
    """Alpha-blend ``colour`` into ``image`` at ``box``; label ``mask`` where ``alpha > threshold``."""
    rows, cols = slice(box.top, box.top + box.side), slice(box.left, box.left + box.side)
    image[:, rows, cols] += alpha * (colour - image[:, rows, cols])
    mask[rows, cols][alpha > threshold] = box.label + 1


def compose_scene(
    rng: np.random.Generator, images: np.ndarray, labels: np.ndarray, pool: np.ndarray, config: SceneConfig
) -> Scene:
    """One scene of ``config.min_sprites..max_sprites`` sprites drawn from ``images[pool]``."""
    size = config.size
    base = background(rng, size, config.noise)
    image, mask = base.copy(), np.zeros((size, size), dtype=np.int64)
    placements = []
    for _ in range(rng.integers(config.min_sprites, config.max_sprites + 1)):
        index = int(pool[rng.integers(len(pool))])
        side = max(2, round(rng.uniform(*config.scale) * size))
        top, left = (int(v) for v in rng.integers(0, size - side + 1, size=2))
        box = Placement(sprite=index, label=int(labels[index]), top=top, left=left, side=side)
        alpha = resize_sprite(images[index], side)
        alpha /= max(float(alpha.max()), 1e-6)
        place_sprite(image, mask, alpha, tint(rng), box, config.threshold)
        placements.append(box)
    return Scene(image=image, mask=mask, background=base, placements=tuple(placements))
