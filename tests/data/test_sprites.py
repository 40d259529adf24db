from __future__ import annotations

import numpy as np
import pytest

from gradlab.data import sprites as sprites_module
from gradlab.data.idx import write_idx
from gradlab.data.sprites import (
    DEFAULT_IDX_ROOT,
    SpriteSet,
    load_idx_sprites,
    load_sprites,
    split_sprite_indices,
)
from gradlab.errors import DataError


def test_digits_are_the_1797_real_8x8_digits_scaled_to_unit_range(digits):
    assert digits.images.shape == (1797, 8, 8) and digits.images.dtype == np.float32
    assert digits.images.min() == 0.0 and digits.images.max() == 1.0
    assert digits.labels.dtype == np.int64 and set(digits.labels.tolist()) == set(range(10))


def test_digits_sprites_look_like_digits_not_noise(digits):
    # a handwritten zero is a ring: its centre is darker than its left and right strokes
    zeros = digits.images[digits.labels == 0].mean(axis=0)
    assert zeros[3:5, 3:5].mean() < 0.5 * zeros[3:5, [1, 6]].mean()


@pytest.mark.parametrize("gz", [True, False])
def test_idx_sprites_match_the_files_values_over_255(tmp_path, make_idx_folder, gz):
    images, labels = make_idx_folder(tmp_path, count=12, gz=gz)
    sprites = load_idx_sprites(tmp_path)
    np.testing.assert_allclose(sprites.images, images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(sprites.labels, labels)
    assert sprites.images.dtype == np.float32 and sprites.name == "idx"


def test_idx_t10k_part_reads_the_test_files(tmp_path, make_idx_folder):
    make_idx_folder(tmp_path, part="train", count=10)
    make_idx_folder(tmp_path, part="t10k", count=7)
    assert len(load_idx_sprites(tmp_path, part="t10k")) == 7


def test_idx_missing_label_file_names_it(tmp_path, make_idx_folder):
    make_idx_folder(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="train-labels-idx1-ubyte"):
        load_idx_sprites(tmp_path)


def test_idx_image_and_label_counts_must_agree(tmp_path, make_idx_folder):
    make_idx_folder(tmp_path, count=10)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(9, np.uint8))
    with pytest.raises(DataError, match="do not belong together"):
        load_idx_sprites(tmp_path)


def test_idx_images_must_be_uint8_of_three_dimensions(tmp_path, make_idx_folder):
    make_idx_folder(tmp_path, count=10)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((10, 784), np.uint8))
    with pytest.raises(DataError, match=r"uint8 \(N, h, w\)"):
        load_idx_sprites(tmp_path)


def test_idx_labels_outside_0_to_9_are_rejected(tmp_path, make_idx_folder):
    make_idx_folder(tmp_path, count=10)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.full(10, 10, np.uint8))
    with pytest.raises(DataError, match="labels must lie in 0..9"):
        load_idx_sprites(tmp_path)


def test_idx_unknown_part_and_missing_root_raise(tmp_path):
    with pytest.raises(DataError, match="part 'test'"):
        load_idx_sprites(tmp_path, part="test")
    with pytest.raises(DataError, match="not a folder"):
        load_idx_sprites(tmp_path / "absent")


def test_idx_default_root_is_used_when_present(tmp_path, make_idx_folder, monkeypatch):
    make_idx_folder(tmp_path, count=5)
    monkeypatch.setattr(sprites_module, "DEFAULT_IDX_ROOT", tmp_path)
    assert len(load_sprites("idx")) == 5


def test_idx_without_root_or_default_folder_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setattr(sprites_module, "DEFAULT_IDX_ROOT", tmp_path / "absent")
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        load_sprites("idx")


@pytest.mark.skipif(not DEFAULT_IDX_ROOT.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_installed_fashion_mnist_has_60000_training_sprites():
    sprites = load_idx_sprites()
    assert sprites.images.shape == (60000, 28, 28) and set(sprites.labels.tolist()) == set(range(10))


def test_unknown_source_lists_the_valid_ones():
    with pytest.raises(DataError, match="digits, idx"):
        load_sprites("cifar")


def test_train_and_val_sprite_indices_are_disjoint_and_cover_the_pool():
    train, val = split_sprite_indices(1797, "train"), split_sprite_indices(1797, "val")
    assert not set(train.tolist()) & set(val.tolist())
    assert len(train) + len(val) == 1797 and len(val) == round(0.2 * 1797)


def test_sprite_split_is_fixed_and_not_a_prefix():
    val = split_sprite_indices(1000, "val")
    np.testing.assert_array_equal(val, split_sprite_indices(1000, "val"))
    assert val.max() > 500  # a permutation, not the first 20 %


def test_sprite_split_rejects_unknown_splits_and_fractions():
    with pytest.raises(DataError, match="split 'test'"):
        split_sprite_indices(100, "test")
    with pytest.raises(DataError, match="val_fraction"):
        split_sprite_indices(100, "val", val_fraction=1.0)
    with pytest.raises(DataError, match="leave none"):
        split_sprite_indices(2, "val", val_fraction=0.1)


def test_sprite_set_rejects_mismatched_labels():
    with pytest.raises(DataError, match="must be"):
        SpriteSet(np.zeros((3, 8, 8), np.float32), np.zeros(2, np.int64), "bad")
