from __future__ import annotations

import pytest
import torch

from gradlab.attribution import AttributionError, class_regions


def test_each_image_gets_its_largest_foreground_class_and_its_pixels():
    masks = torch.zeros(3, 4, 4, dtype=torch.int64)
    masks[0, :2] = 3
    masks[0, 3, :3] = 5
    masks[1, :, :] = 255  # ignored pixels never win
    masks[1, 0, 0] = 2
    classes, regions = class_regions(masks)  # image 2 is all background
    assert classes.tolist() == [3, 2, 0]
    assert regions.dtype == torch.float32 and regions.sum(dim=(1, 2)).tolist() == [8, 1, 16]
    assert torch.equal(regions[0].bool(), masks[0] == 3)


def test_a_class_absent_from_its_image_is_an_error():
    masks = torch.zeros(2, 4, 4, dtype=torch.int64)
    masks[1, 0] = 7
    with pytest.raises(AttributionError, match=r"image\(s\) \[0\] have no pixel of their class \[7\]"):
        class_regions(masks, [7, 7])


def test_one_class_per_image_is_required():
    with pytest.raises(AttributionError, match="2 classes for 3 masks"):
        class_regions(torch.zeros(3, 4, 4, dtype=torch.int64), [0, 0])
