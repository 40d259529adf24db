from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from gradlab.data.transforms import IGNORE_INDEX, denormalize
from gradlab.data.voc import IMAGENET_MEAN, IMAGENET_STD, VOC_NUM_CLASSES, VOCSegmentation
from gradlab.errors import DataError


def test_reads_the_listed_ids_in_order(voc_root):
    assert VOCSegmentation(voc_root, "train").ids == ["a", "b", "c"]
    assert len(VOCSegmentation(voc_root, "val")) == 2


def test_items_are_normalised_images_and_the_exact_masks_written(voc_root):
    dataset = VOCSegmentation(voc_root, "train")
    image, mask = dataset[1]  # id "b": 24 wide, 36 high
    assert image.shape == (3, 36, 24) and image.dtype == torch.float32
    assert mask.shape == (36, 24) and mask.dtype == torch.int64
    written = np.asarray(Image.open(voc_root / "SegmentationClass" / "b.png"))
    np.testing.assert_array_equal(mask.numpy(), written)
    photo = np.asarray(Image.open(voc_root / "JPEGImages" / "b.jpg")) / 255.0
    restored = denormalize(image, IMAGENET_MEAN, IMAGENET_STD).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(restored, photo, atol=1e-5)


def test_border_pixels_keep_the_ignore_index(voc_root):
    _, mask = VOCSegmentation(voc_root, "val")[0]
    assert (mask[0] == IGNORE_INDEX).all() and (mask[:, 0] == IGNORE_INDEX).all()
    inner = mask[1:, 1:]
    assert inner.min() >= 0 and inner.max() < VOC_NUM_CLASSES


def test_dataset_reports_21_classes_and_ignore_255(voc_root):
    dataset = VOCSegmentation(voc_root, "train")
    assert dataset.num_classes == 21 and dataset.ignore_index == 255


def test_transform_receives_the_image_in_unit_range(voc_root):
    seen = {}

    def spy(image, mask):
        seen["range"] = (float(image.min()), float(image.max()))
        return image, mask

    VOCSegmentation(voc_root, "train", transform=spy)[0]
    assert 0.0 <= seen["range"][0] and seen["range"][1] <= 1.0


def test_greyscale_masks_are_read_like_palette_masks(voc_root):
    mask = np.full((30, 40), 7, np.uint8)
    Image.fromarray(mask, mode="L").save(voc_root / "SegmentationClass" / "a.png")
    assert (VOCSegmentation(voc_root, "train")[0][1] == 7).all()


def test_missing_root_raises(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        VOCSegmentation(tmp_path / "nowhere", "train")


@pytest.mark.parametrize("folder", ["JPEGImages", "SegmentationClass", "ImageSets/Segmentation"])
def test_missing_subfolder_is_named(voc_root, folder):
    shutil.rmtree(voc_root / folder)
    with pytest.raises(DataError, match=f"no {folder}/ folder"):
        VOCSegmentation(voc_root, "train")


def test_missing_split_file_lists_the_splits_found(voc_root):
    with pytest.raises(DataError, match=r"trainval.txt is missing; splits found: train, val"):
        VOCSegmentation(voc_root, "trainval")


def test_empty_split_file_raises(voc_root):
    (voc_root / "ImageSets" / "Segmentation" / "train.txt").write_text("\n  \n")
    with pytest.raises(DataError, match="lists no ids"):
        VOCSegmentation(voc_root, "train")


@pytest.mark.parametrize(("folder", "suffix"), [("JPEGImages", "jpg"), ("SegmentationClass", "png")])
def test_listed_id_without_its_file_raises_when_built(voc_root, folder, suffix):
    (voc_root / folder / f"b.{suffix}").unlink()
    with pytest.raises(DataError, match=rf"lists 'b' but .*b\.{suffix} is missing"):
        VOCSegmentation(voc_root, "train")


def test_corrupt_image_raises_on_load(voc_root):
    (voc_root / "JPEGImages" / "c.jpg").write_bytes(b"not a jpeg at all")
    dataset = VOCSegmentation(voc_root, "train")
    with pytest.raises(DataError, match=r"cannot decode image .*c\.jpg"):
        dataset[2]


def test_truncated_image_raises_on_load(voc_root):
    path = voc_root / "JPEGImages" / "a.jpg"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match="cannot decode"):
        VOCSegmentation(voc_root, "train")[0]


def test_image_and_mask_size_mismatch_raises(voc_root, save_mask):
    save_mask(voc_root / "SegmentationClass" / "a.png", np.zeros((31, 40), np.uint8))
    with pytest.raises(DataError, match="image 40x30 and mask 40x31 differ in size"):
        VOCSegmentation(voc_root, "train")[0]


@pytest.mark.parametrize("value", [21, 100, 254])
def test_label_values_outside_the_classes_raise(voc_root, save_mask, value):
    mask = np.zeros((30, 40), np.uint8)
    mask[5, 5] = value
    save_mask(voc_root / "SegmentationClass" / "a.png", mask)
    with pytest.raises(DataError, match=rf"label values \[{value}\] outside \[0, 21\)"):
        VOCSegmentation(voc_root, "train")[0]


def test_colour_masks_are_rejected(voc_root):
    Image.new("RGB", (40, 30), (128, 0, 0)).save(voc_root / "SegmentationClass" / "a.png")
    with pytest.raises(DataError, match="mode RGB"):
        VOCSegmentation(voc_root, "train")[0]


@pytest.mark.parametrize("encode", [lambda t: t.encode("utf-8-sig"), lambda t: t.replace("\n", "\r\n").encode()])
def test_a_split_file_with_a_byte_order_mark_or_crlf_lists_the_same_ids(voc_root, encode):
    path = voc_root / "ImageSets" / "Segmentation" / "train.txt"
    ids = path.read_text().split()
    path.write_bytes(encode(path.read_text()))
    assert VOCSegmentation(voc_root, "train").ids == ids


@pytest.mark.parametrize("data", ["2007_000001\n".encode("utf-16"), b"\xff\xfe\x00bad", b"caf\xe9\n"])
def test_a_split_file_that_is_not_utf8_is_one_data_error(voc_root, data):
    (voc_root / "ImageSets" / "Segmentation" / "train.txt").write_bytes(data)
    with pytest.raises(DataError, match="is not UTF-8 text"):
        VOCSegmentation(voc_root, "train")


def test_an_image_too_large_to_decode_safely_is_one_data_error_and_no_warning(voc_root, monkeypatch):
    import warnings

    sample_id = VOCSegmentation(voc_root, "train").ids[0]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # every test image is then a "decompression bomb"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match=f"{sample_id}.jpg is too large to decode safely"):
            VOCSegmentation(voc_root, "train")[0]
