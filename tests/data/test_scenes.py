from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from gradlab.data.scenes import SCENE_NUM_CLASSES, SceneDataset
from gradlab.data.sprites import load_idx_sprites
from gradlab.data.transforms import TrainTransform
from gradlab.errors import DataError


def sprites_used(dataset: SceneDataset, count: int) -> set[int]:
    return {p.sprite for i in range(count) for p in dataset.scene(i).placements}


def test_same_seed_gives_the_same_scenes_in_any_order(digits):
    first, second = SceneDataset(digits, seed=7, length=20), SceneDataset(digits, seed=7, length=20)
    forward = [first[i] for i in range(20)]
    backward = [second[i] for i in reversed(range(20))][::-1]
    for (xa, ya), (xb, yb) in zip(forward, backward, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_different_seeds_give_different_scenes(digits):
    a, b = SceneDataset(digits, seed=0, length=5), SceneDataset(digits, seed=1, length=5)
    assert all(not torch.equal(a[i][1], b[i][1]) for i in range(5))


def test_train_and_val_scenes_differ_for_one_seed_and_index(digits):
    train, val = SceneDataset(digits, "train", length=5), SceneDataset(digits, "val", length=5)
    assert all(not torch.equal(train[i][0], val[i][0]) for i in range(5))


def test_train_and_val_draw_from_disjoint_sprites_even_with_different_seeds(digits):
    train = SceneDataset(digits, "train", seed=0, length=200)
    val = SceneDataset(digits, "val", seed=1, length=200)
    used_train, used_val = sprites_used(train, 200), sprites_used(val, 200)
    assert used_train <= set(train.pool.tolist()) and used_val <= set(val.pool.tolist())
    assert not used_train & used_val
    assert len(used_val) > 200  # many different val sprites, not a handful


def test_items_are_normalised_float_images_and_int64_masks(digits):
    for size in (64, 128):
        image, mask = SceneDataset(digits, size=size, length=1)[0]
        assert image.shape == (3, size, size) and image.dtype == torch.float32
        assert mask.shape == (size, size) and mask.dtype == torch.int64


def test_mask_classes_lie_in_0_to_10_and_all_appear(digits):
    masks = torch.stack([mask for _, mask in SceneDataset(digits, length=60)])
    assert masks.min() >= 0 and masks.max() < SCENE_NUM_CLASSES
    assert set(masks.unique().tolist()) == set(range(SCENE_NUM_CLASSES))


def test_normalisation_constants_fit_the_scenes(digits):
    images = torch.stack([image for image, _ in SceneDataset(digits, length=200)])
    mean, std = images.mean(dim=(0, 2, 3)), images.std(dim=(0, 2, 3))
    assert mean.abs().max() < 0.1 and ((std - 1).abs() < 0.1).all()


def test_foreground_covers_a_useful_share_of_the_canvas(digits):
    masks = torch.stack([mask for _, mask in SceneDataset(digits, length=100)])
    assert 0.08 < (masks > 0).float().mean() < 0.35


def test_lengths_default_per_split_and_can_be_set(digits):
    assert len(SceneDataset(digits, "train")) == 2000 and len(SceneDataset(digits, "val")) == 500
    assert len(SceneDataset(digits, length=7)) == 7


def test_sprites_per_scene_follow_the_configured_range(digits):
    dataset = SceneDataset(digits, length=30, min_sprites=2, max_sprites=3)
    counts = {len(dataset.scene(i).placements) for i in range(30)}
    assert counts == {2, 3}


def test_index_out_of_range_raises_index_error_and_negative_indices_wrap(digits):
    dataset = SceneDataset(digits, length=3)
    with pytest.raises(IndexError):
        dataset[3]
    assert torch.equal(dataset[-1][1], dataset[2][1])


def test_a_custom_transform_replaces_the_normalisation(digits):
    transform = TrainTransform(32, (0.5,) * 3, (0.5,) * 3, generator=torch.Generator().manual_seed(0))
    image, mask = SceneDataset(digits, length=1, transform=transform)[0]
    assert image.shape == (3, 32, 32) and mask.shape == (32, 32)


def test_dataloader_workers_give_the_same_batches_as_the_main_process(digits):
    dataset = SceneDataset(digits, length=8, seed=3)
    direct = [torch.stack([dataset[i][1] for i in range(j, j + 4)]) for j in (0, 4)]
    loaded = [mask for _, mask in DataLoader(dataset, batch_size=4, num_workers=2)]
    assert all(torch.equal(a, b) for a, b in zip(direct, loaded, strict=True))


@pytest.mark.parametrize(
    ("options", "message"),
    [({"length": -1}, "length"), ({"size": 4}, "too small"), ({"val_fraction": 0}, "val_fraction")],
)
def test_bad_options_raise_data_errors(digits, options, message):
    with pytest.raises(DataError, match=message):
        SceneDataset(digits, **options)


def test_unknown_split_raises_data_error(digits):
    with pytest.raises(DataError, match="split 'test'"):
        SceneDataset(digits, "test")


def test_scenes_from_idx_sprites_have_28_pixel_sources_upscaled(tmp_path, make_idx_folder):
    make_idx_folder(tmp_path, count=20)
    dataset = SceneDataset(load_idx_sprites(tmp_path), "val", length=2, size=128)
    assert dataset[0][0].shape == (3, 128, 128) and set(dataset.pool.tolist()) <= set(range(20))
    assert np.isin(dataset.scene(1).mask, np.arange(11)).all()
