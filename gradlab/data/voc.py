"""``VOCSegmentation``: a PASCAL VOC 2012 segmentation folder read from local disk.

Expected layout under ``root``::

    JPEGImages/<id>.jpg               RGB photos
    SegmentationClass/<id>.png        palette (or greyscale) PNGs: pixel value = class 0..20, 255 = ignore
    ImageSets/Segmentation/<split>.txt  one id per line (train.txt, val.txt, trainval.txt)

The folder and every listed file are checked when the dataset is built; each mask's size and label values are
checked when it is loaded.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from gradlab.data.transforms import IGNORE_INDEX, EvalTransform, JointTransform, Pair
from gradlab.errors import DataError

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip
VOC_NUM_CLASSES = len(VOC_CLASSES)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VOC_FOLDERS = ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation")


def read_split_ids(root: Path, split: str) -> list[str]:
    """The ids listed in ``ImageSets/Segmentation/<split>.txt``; DataError when missing or empty."""
    path = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not path.is_file():
        found = sorted(p.stem for p in path.parent.glob("*.txt"))
        raise DataError(f"VOC split file {path} is missing; splits found: {', '.join(found) or 'none'}")
    try:
        text = path.read_bytes().decode("utf-8-sig")  # a byte-order mark is no part of the first id
    except UnicodeDecodeError as err:
        raise DataError(f"VOC split file {path} is not UTF-8 text ({err.reason} at byte {err.start}): save it "
                        "as UTF-8, one image id per line") from None
    ids = [line.strip() for line in text.splitlines() if line.strip()]
    if not ids:
        raise DataError(f"VOC split file {path} lists no ids; add one image id per line")
    return ids


def open_image(path: Path, mode: str | None = None) -> Image.Image:
    """Open and fully decode an image (optionally converted to ``mode``); DataError when it is corrupt."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # a refusal, not a line of output
            with Image.open(path) as image:
                image.load()
                return image.convert(mode) if mode else image.copy()
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise DataError(f"image {path} is too large to decode safely ({exc}); resize it") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot decode image {path} ({exc}); replace the corrupt file") from None


def read_mask(path: Path) -> np.ndarray:
    """A class-index mask (H, W) int64 from a palette or greyscale PNG, label values checked."""
    image = open_image(path)
    if image.mode not in ("P", "L"):
        raise DataError(f"mask {path} has mode {image.mode}; VOC masks are palette ('P') PNGs of class ids")
    mask = np.asarray(image, dtype=np.int64)
    bad = (mask >= VOC_NUM_CLASSES) & (mask != IGNORE_INDEX)
    if bad.any():
        values = np.unique(mask[bad])[:5].tolist()
        raise DataError(
            f"mask {path} has label values {values} outside [0, {VOC_NUM_CLASSES}) and not {IGNORE_INDEX}; "
            "masks must hold class indices, not colours"
        )
    return mask


class VOCSegmentation(Dataset):
    """PASCAL VOC 2012 segmentation: items ``(image, mask)``, image float (3, H, W), mask int64 (H, W).

    ``transform(image, mask)`` gets the image in [0, 1]; by default it is normalised with ImageNet statistics.
    """

    num_classes = VOC_NUM_CLASSES
    ignore_index = IGNORE_INDEX

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        transform: JointTransform | None = None,
    ) -> None:
        self.root, self.split = Path(root), split
        self._check_folders()
        self.ids = read_split_ids(self.root, split)
        self._check_files()
        self.transform = transform if transform is not None else EvalTransform(IMAGENET_MEAN, IMAGENET_STD)

    def _check_folders(self) -> None:
        if not self.root.is_dir():
            raise DataError(f"VOC root {self.root} does not exist; pass the folder holding JPEGImages/")
        for folder in VOC_FOLDERS:
            if not (self.root / folder).is_dir():
                raise DataError(f"VOC root {self.root} has no {folder}/ folder; is it a VOC2012 folder?")

    def _check_files(self) -> None:
        for sample_id in self.ids:
            for path in (self.image_path(sample_id), self.mask_path(sample_id)):
                if not path.is_file():
                    raise DataError(f"{self.split}.txt lists {sample_id!r} but {path} is missing")

    def image_path(self, sample_id: str) -> Path:
        return self.root / "JPEGImages" / f"{sample_id}.jpg"

    def mask_path(self, sample_id: str) -> Path:
        return self.root / "SegmentationClass" / f"{sample_id}.png"

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Pair:
        sample_id = self.ids[index]
        image = np.asarray(open_image(self.image_path(sample_id), "RGB"))
        mask = read_mask(self.mask_path(sample_id))
        if mask.shape != image.shape[:2]:
            (ih, iw), (mh, mw) = image.shape[:2], mask.shape
            raise DataError(f"{sample_id}: image {iw}x{ih} and mask {mw}x{mh} differ in size; make them match")
        image_t = torch.from_numpy(image.copy()).permute(2, 0, 1).float().div_(255.0)
        return self.transform(image_t, torch.from_numpy(mask))
