"""Fixtures for the data tests: tiny MNIST-style IDX folders and VOC-layout folders built in tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gradlab.data.idx import write_idx
from gradlab.data.sprites import SpriteSet, load_digits_sprites


@pytest.fixture(scope="session")
def digits() -> SpriteSet:
    return load_digits_sprites()


def write_idx_folder(root: Path, part: str = "train", count: int = 30, gz: bool = True) -> tuple:
    """``count`` random 28x28 uint8 images and labels 0..9 as ``{part}-*-ubyte(.gz)``; returns them."""
    rng = np.random.default_rng(count)
    images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
    labels = (np.arange(count) % 10).astype(np.uint8)
    suffix = ".gz" if gz else ""
    root.mkdir(parents=True, exist_ok=True)
    write_idx(root / f"{part}-images-idx3-ubyte{suffix}", images)
    write_idx(root / f"{part}-labels-idx1-ubyte{suffix}", labels)
    return images, labels


@pytest.fixture
def idx_root(tmp_path: Path) -> Path:
    write_idx_folder(tmp_path / "mnist")
    return tmp_path / "mnist"


VOC_SIZES = {"a": (40, 30), "b": (24, 36), "c": (32, 32), "d": (20, 28), "e": (30, 22)}  # id -> (w, h)
VOC_SPLITS = {"train": ["a", "b", "c"], "val": ["d", "e"]}


def voc_palette() -> list[int]:
    """A 256-colour palette: VOC-like colours for classes, white for 255."""
    rng = np.random.default_rng(0)
    palette = rng.integers(0, 256, size=(256, 3)).astype(int)
    palette[0], palette[255] = (0, 0, 0), (255, 255, 255)
    return palette.ravel().tolist()


def voc_mask(width: int, height: int, seed: int) -> np.ndarray:
    """Blocks of random classes 0..20 with a 255 border, as VOC masks have."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 21, size=(height // 4 + 1, width // 4 + 1), dtype=np.uint8)
    mask = np.kron(blocks, np.ones((4, 4), dtype=np.uint8))[:height, :width]
    mask[0, :] = mask[:, 0] = 255
    return mask


def save_palette_png(path: Path, mask: np.ndarray) -> None:
    image = Image.new("P", (mask.shape[1], mask.shape[0]))
    image.putpalette(voc_palette())
    image.putdata(mask.ravel().tolist())
    image.save(path)


def voc_image(width: int, height: int, seed: int) -> np.ndarray:
    """A smooth RGB image (JPEG keeps it nearly exact)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, width)[None, :, None] * rng.uniform(50, 200, size=(1, 1, 3))
    return (np.broadcast_to(ramp, (height, width, 3)) + 20).astype(np.uint8)


@pytest.fixture
def voc_root(tmp_path: Path) -> Path:
    root = tmp_path / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    for seed, (sample_id, (width, height)) in enumerate(VOC_SIZES.items()):
        Image.fromarray(voc_image(width, height, seed)).save(root / "JPEGImages" / f"{sample_id}.jpg", quality=98)
        save_palette_png(root / "SegmentationClass" / f"{sample_id}.png", voc_mask(width, height, seed))
    for split, ids in VOC_SPLITS.items():
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


@pytest.fixture
def make_idx_folder():
    """The IDX folder writer, for tests that need other parts, counts or plain files."""
    return write_idx_folder


@pytest.fixture
def save_mask():
    """The palette-PNG mask writer, for tests that plant a bad mask."""
    return save_palette_png
