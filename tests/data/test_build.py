from __future__ import annotations

import pytest
import torch

from gradlab.data import NUM_CLASSES, SceneDataset, VOCSegmentation, build_dataset
from gradlab.errors import DataError


def test_digits_scenes_have_11_classes_ignore_255_and_the_requested_size():
    dataset = build_dataset("digits", "val", size=128, length=3)
    assert isinstance(dataset, SceneDataset) and len(dataset) == 3
    assert dataset.num_classes == 11 == NUM_CLASSES["digits"] and dataset.ignore_index == 255
    assert dataset[0][0].shape == (3, 128, 128)


def test_seed_reaches_the_scenes():
    first, second = (build_dataset("digits", "train", seed=s, length=1)[0][1] for s in (0, 1))
    assert torch.equal(first, build_dataset("digits", "train", seed=0, length=1)[0][1])
    assert not torch.equal(first, second)


def test_scene_options_are_passed_on():
    dataset = build_dataset("digits", "train", length=4, min_sprites=1, max_sprites=1)
    assert all(len(dataset.scene(i).placements) == 1 for i in range(4))


def test_idx_source_reads_the_root_folder(tmp_path, make_idx_folder):
    make_idx_folder(tmp_path, count=40)
    dataset = build_dataset("idx", "train", root=tmp_path, length=2)
    assert dataset.sprites.images.shape == (40, 28, 28) and dataset.num_classes == 11


def test_voc_train_is_augmented_and_cropped_to_size(voc_root):
    generator = torch.Generator().manual_seed(0)
    dataset = build_dataset("voc", "train", root=voc_root, size=48, generator=generator)
    assert isinstance(dataset, VOCSegmentation) and dataset.num_classes == 21 == NUM_CLASSES["voc"]
    image, mask = dataset[0]
    assert image.shape == (3, 48, 48) and mask.shape == (48, 48)
    assert (mask == 255).any()  # the 40x30 photo needed label padding


def test_voc_val_keeps_full_images(voc_root):
    image, mask = build_dataset("voc", "val", root=voc_root, size=48)[0]
    assert image.shape == (3, 28, 20) and mask.shape == (28, 20)


def test_voc_needs_a_root():
    with pytest.raises(DataError, match="needs root="):
        build_dataset("voc", "train")


def test_unknown_source_lists_the_valid_ones():
    with pytest.raises(DataError, match="unknown data source 'coco'; valid sources: digits, idx, voc"):
        build_dataset("coco", "train")


@pytest.mark.parametrize(("source", "option"), [("digits", "crop_size"), ("voc", "length")])
def test_unknown_options_are_named(voc_root, source, option):
    with pytest.raises(DataError, match=f"unknown option.*{option}.*valid options"):
        build_dataset(source, "train", root=voc_root, **{option: 3})
