from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from gradlab.data.transforms import (
    IGNORE_INDEX,
    EvalTransform,
    TrainTransform,
    denormalize,
    normalize,
)
from gradlab.errors import DataError

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def block_mask(height: int, width: int, block: int = 8) -> torch.Tensor:
    """Distinct class per block, so any misplacement between image and mask shows."""
    rows = torch.arange(height)[:, None] // block
    cols = torch.arange(width)[None, :] // block
    return ((rows * 7 + cols * 3) % 21).long()


def image_of(mask: torch.Tensor) -> torch.Tensor:
    """An image whose every channel spells the mask: value = class / 20."""
    return (mask.float() / 20).expand(3, *mask.shape).clone()


def spelled_mask(image: torch.Tensor) -> torch.Tensor:
    return denormalize(image, MEAN, STD)[0] * 20


def fixed(crop: int, scale: float = 1.0, flip: float = 0.0, seed: int = 0) -> TrainTransform:
    generator = torch.Generator().manual_seed(seed)
    return TrainTransform(crop, MEAN, STD, scale_range=(scale, scale), flip_prob=flip, generator=generator)


def test_normalize_and_denormalize_are_inverse():
    image = torch.rand(3, 5, 7)
    normed = normalize(image, MEAN, STD)
    assert torch.allclose(normed[1], (image[1] - 0.5) / 0.25)
    assert torch.allclose(denormalize(normed, MEAN, STD), image, atol=1e-6)


def test_eval_transform_normalises_the_image_and_leaves_the_mask():
    mask = block_mask(20, 30)
    image, out = EvalTransform(MEAN, STD)(image_of(mask), mask)
    assert out is mask and image.shape == (3, 20, 30)
    assert torch.allclose(spelled_mask(image), mask.float(), atol=1e-4)


def test_flip_mirrors_an_asymmetric_mask_and_its_image_together():
    mask = torch.zeros(16, 16, dtype=torch.long)
    mask[:, :4] = 5  # a bar on the left
    image, out = fixed(16, flip=1.0)(image_of(mask), mask)
    assert (out[:, 12:] == 5).all() and (out[:, :12] == 0).all()
    assert torch.allclose(spelled_mask(image), out.float(), atol=1e-4)


def test_no_flip_when_flip_prob_is_zero():
    mask = block_mask(16, 16)
    _, out = fixed(16, flip=0.0)(image_of(mask), mask)
    assert torch.equal(out, mask)


def test_padding_fills_labels_with_ignore_index_and_image_with_zero():
    mask = block_mask(10, 12)
    image, out = fixed(24)(image_of(mask), mask)
    assert out.shape == (24, 24) and image.shape == (3, 24, 24)
    padded = out == IGNORE_INDEX
    assert padded.sum() == 24 * 24 - 10 * 12
    assert (image[:, padded] == 0).all()  # 0 after normalisation = the mean colour
    assert torch.allclose(spelled_mask(image)[~padded], out[~padded].float(), atol=1e-4)


def test_crop_of_a_larger_image_is_a_window_of_the_original():
    mask = block_mask(40, 50)
    image, out = fixed(16, seed=5)(image_of(mask), mask)
    windows = mask.unfold(0, 16, 1).unfold(1, 16, 1)  # every 16x16 window
    assert (windows == out).flatten(2).all(-1).any()
    assert torch.allclose(spelled_mask(image), out.float(), atol=1e-4)


def test_integer_upscale_doubles_the_mask_by_nearest_neighbour():
    mask = block_mask(8, 8, block=2)
    _, out = fixed(16, scale=2.0)(image_of(mask), mask)
    assert torch.equal(out, mask.repeat_interleave(2, 0).repeat_interleave(2, 1))


def test_scaling_keeps_255_labels_as_they_are():
    mask = block_mask(20, 20)
    mask[:, :3] = IGNORE_INDEX
    _, out = fixed(13, scale=0.7)(image_of(mask), mask)
    assert set(out.unique().tolist()) <= set(mask.unique().tolist())
    assert (out[:, 0] == IGNORE_INDEX).all()


def interior(mask: torch.Tensor) -> torch.Tensor:
    """Pixels whose 3x3 neighbourhood has one label and lies inside the crop: no bilinear blur there."""
    grid = mask[None, None].float()
    high = F.max_pool2d(grid, 3, stride=1, padding=1)
    low = -F.max_pool2d(-grid, 3, stride=1, padding=1)
    inside = torch.zeros_like(mask, dtype=torch.bool)
    inside[1:-1, 1:-1] = True
    return (high == low)[0, 0] & inside & (mask != IGNORE_INDEX)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), low=st.floats(0.5, 1.0), high=st.floats(1.0, 2.0))
def test_random_scale_crop_flip_keeps_image_and_mask_aligned(seed, low, high):
    mask = block_mask(32, 40)
    generator = torch.Generator().manual_seed(seed)
    image, out = TrainTransform(24, MEAN, STD, scale_range=(low, high), generator=generator)(image_of(mask), mask)
    assert image.shape == (3, 24, 24) and out.shape == (24, 24) and out.dtype == torch.long
    keep = interior(out)
    assert keep.sum() > 10  # enough unblurred pixels to judge, even after a 0.5x downscale
    assert torch.allclose(spelled_mask(image)[keep], out[keep].float(), atol=1e-3)


def test_same_generator_seed_gives_the_same_augmentation():
    mask = block_mask(30, 30)
    first = fixed(20, scale=1.3, flip=0.5, seed=4)(image_of(mask), mask)
    again = fixed(20, scale=1.3, flip=0.5, seed=4)(image_of(mask), mask)
    assert torch.equal(first[1], again[1]) and torch.equal(first[0], again[0])


def test_different_seeds_give_different_augmentations():
    mask = block_mask(48, 48)
    results = {
        tuple(
            TrainTransform(16, MEAN, STD, generator=torch.Generator().manual_seed(s))(image_of(mask), mask)[1]
            .flatten()
            .tolist()
        )
        for s in range(5)
    }
    assert len(results) > 1


def test_global_rng_is_used_without_a_generator():
    mask = block_mask(48, 48)
    transform = TrainTransform(16, MEAN, STD)
    torch.manual_seed(1)
    first = transform(image_of(mask), mask)[1]
    torch.manual_seed(1)
    assert torch.equal(first, transform(image_of(mask), mask)[1])


def test_mismatched_image_and_mask_sizes_raise():
    with pytest.raises(DataError, match="differ in size"):
        EvalTransform(MEAN, STD)(torch.zeros(3, 4, 5), torch.zeros(4, 4, dtype=torch.long))
    with pytest.raises(DataError, match="float"):
        EvalTransform(MEAN, STD)(torch.zeros(3, 4, 4, dtype=torch.uint8), torch.zeros(4, 4, dtype=torch.long))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"crop_size": 0}, "crop_size"),
        ({"scale_range": (2.0, 1.0)}, "scale_range"),
        ({"flip_prob": 2}, "flip"),
    ],
)
def test_bad_train_transform_options_raise(options, message):
    kwargs = {"crop_size": 8, **options}
    with pytest.raises(DataError, match=message):
        TrainTransform(kwargs.pop("crop_size"), MEAN, STD, **kwargs)
