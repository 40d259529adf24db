from __future__ import annotations

import numpy as np
import pytest

from gradlab.data.compose import SceneConfig, background, compose_scene, resize_sprite
from gradlab.errors import DataError


def compose(digits, seed: int, **config):
    rng = np.random.default_rng(seed)
    pool = np.arange(len(digits))
    return compose_scene(rng, digits.images, digits.labels, pool, SceneConfig(**config))


def sprite_alpha(digits, placement) -> np.ndarray:
    alpha = resize_sprite(digits.images[placement.sprite], placement.side)
    return alpha / alpha.max()


def test_resize_keeps_constants_and_the_value_range():
    assert np.allclose(resize_sprite(np.full((8, 8), 0.7, np.float32), 23), 0.7)
    ramp = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    out = resize_sprite(ramp, 30)
    assert out.shape == (30, 30) and out.min() >= 0.0 and out.max() <= 1.0


def test_resize_to_the_same_size_is_the_identity():
    sprite = np.random.default_rng(0).random((8, 8), dtype=np.float32)
    np.testing.assert_allclose(resize_sprite(sprite, 8), sprite, atol=1e-6)


def test_single_sprite_mask_is_exactly_its_pixels_above_threshold(digits):
    scene = compose(digits, 3, min_sprites=1, max_sprites=1, threshold=0.5)
    (box,) = scene.placements
    expected = np.zeros_like(scene.mask)
    window = expected[box.top : box.top + box.side, box.left : box.left + box.side]
    window[sprite_alpha(digits, box) > 0.5] = box.label + 1
    np.testing.assert_array_equal(scene.mask, expected)


@pytest.mark.parametrize("seed", range(5))
def test_later_sprites_occlude_earlier_ones_in_the_mask(digits, seed):
    scene = compose(digits, seed, min_sprites=4, max_sprites=6)
    top = scene.placements[-1]
    window = scene.mask[top.top : top.top + top.side, top.left : top.left + top.side]
    assert (window[sprite_alpha(digits, top) > 0.5] == top.label + 1).all()


@pytest.mark.parametrize("seed", range(5))
def test_mask_classes_are_those_of_the_placed_sprites(digits, seed):
    scene = compose(digits, seed)
    placed = {0} | {p.label + 1 for p in scene.placements}
    assert set(np.unique(scene.mask).tolist()) <= placed
    assert 2 <= len(scene.placements) <= 5  # the defaults


def test_pixels_outside_every_sprite_box_are_pure_background(digits):
    scene = compose(digits, 11)
    outside = np.ones(scene.mask.shape, bool)
    for p in scene.placements:
        outside[p.top : p.top + p.side, p.left : p.left + p.side] = False
    assert outside.any() and (scene.mask[outside] == 0).all()
    np.testing.assert_array_equal(scene.image[:, outside], scene.background[:, outside])


@pytest.mark.parametrize("seed", range(5))
def test_foreground_pixels_are_tinted_and_brighter_than_background(digits, seed):
    scene = compose(digits, seed)
    fg, bg = scene.mask > 0, scene.mask == 0
    change = np.abs(scene.image - scene.background).max(axis=0)
    assert change[fg].mean() > 0.3 > change[bg].mean()
    assert scene.image.max(axis=0)[fg].mean() > scene.image.max(axis=0)[bg].mean() + 0.2


def test_scene_arrays_have_the_documented_shapes_dtypes_and_range(digits):
    scene = compose(digits, 0, size=128)
    assert scene.image.shape == (3, 128, 128) and scene.image.dtype == np.float32
    assert scene.mask.shape == (128, 128) and scene.mask.dtype == np.int64
    assert 0.0 <= scene.image.min() and scene.image.max() <= 1.0


def test_sprite_sides_follow_the_scale_range(digits):
    sides = [p.side for s in range(20) for p in compose(digits, s, size=100, scale=(0.2, 0.3)).placements]
    assert min(sides) >= 20 and max(sides) <= 30


def test_background_is_not_flat_but_smooth_plus_noise():
    image = background(np.random.default_rng(0), 64, noise=0.0)
    assert image.std(axis=(1, 2)).max() > 0.01  # a gradient, not one colour
    assert np.abs(np.diff(image, axis=2)).max() < 0.02  # smooth when noise is off
    noisy = background(np.random.default_rng(0), 64, noise=0.04)
    assert 0.02 < np.abs(noisy - image).mean() < 0.05


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"size": 4}, "too small"),
        ({"min_sprites": 0}, "1 <= min <= max"),
        ({"min_sprites": 5, "max_sprites": 4}, "1 <= min <= max"),
        ({"scale": (0.5, 1.5)}, "fractions of the canvas"),
        ({"threshold": 1.0}, "threshold"),
        ({"noise": -0.1}, "noise"),
    ],
)
def test_bad_scene_configs_raise_data_errors(options, message):
    with pytest.raises(DataError, match=message):
        SceneConfig(**options)
