"""Joint image / mask transforms on tensors: image (3, H, W) float in [0, 1], mask (H, W) int64.

Training: random scale (bilinear image, nearest-exact mask) -> normalise -> pad to the crop size (image 0,
the mean after normalisation; mask ``IGNORE_INDEX``) -> random crop -> random horizontal flip.
Evaluation: normalise only. Randomness comes from a ``torch.Generator`` when given, else torch's global RNG.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from gradlab.errors import DataError

IGNORE_INDEX = 255
Pair = tuple[torch.Tensor, torch.Tensor]
JointTransform = Callable[[torch.Tensor, torch.Tensor], Pair]  # (image, mask) -> (image, mask)


def check_pair(image: torch.Tensor, mask: torch.Tensor) -> None:
    """DataError unless ``image`` is (3, H, W) floating and ``mask`` is (H, W) of the same H, W."""
    if image.ndim != 3 or not image.is_floating_point():
        raise DataError(f"image must be a float (C, H, W) tensor, got {image.dtype} {tuple(image.shape)}")
    if mask.shape != image.shape[1:]:
        raise DataError(f"mask {tuple(mask.shape)} and image {tuple(image.shape)} differ in size")


def _affine_per_channel(image: torch.Tensor, scale: Sequence[float], shift: Sequence[float]) -> torch.Tensor:
    """``image[c] * scale[c] + shift[c]``, one channel plane at a time.

    Plane by plane, a small image (up to 128²) stays under torch's parallel grain size, so a data item
    does not wake the intra-op thread pool; when the cores are busy, that wake-up made 128² scenes
    ~10-40x slower to load (measured).
    """
    if image.shape[0] != len(scale):
        raise DataError(f"image has {image.shape[0]} channels but mean/std have {len(scale)} values")
    out = torch.empty_like(image)
    for channel, (a, b) in enumerate(zip(scale, shift, strict=True)):
        torch.mul(image[channel], a, out=out[channel]).add_(b)
    return out


def normalize(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Per-channel ``(image - mean) / std``."""
    return _affine_per_channel(image, [1.0 / s for s in std], [-m / s for m, s in zip(mean, std, strict=True)])


def denormalize(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """The inverse of :func:`normalize` (for display)."""
    return _affine_per_channel(image, std, mean)


def scale_pair(image: torch.Tensor, mask: torch.Tensor, factor: float) -> Pair:
    """Resize both by ``factor``: bilinear for the image, nearest for the mask (labels stay labels).

    The mask uses ``nearest-exact`` (pixel centres, like bilinear with ``align_corners=False``); plain
    ``nearest`` would shift it by up to half a source pixel against the image.
    """
    height, width = mask.shape
    out = (max(1, round(height * factor)), max(1, round(width * factor)))
    if out == (height, width):
        return image, mask
    image = F.interpolate(image[None], size=out, mode="bilinear", align_corners=False)[0]
    mask = F.interpolate(mask[None, None].float(), size=out, mode="nearest-exact")[0, 0].to(mask.dtype)
    return image, mask


def pad_pair(image: torch.Tensor, mask: torch.Tensor, size: int, label_pad: int = IGNORE_INDEX) -> Pair:
    """Pad bottom / right up to at least ``size`` x ``size``: image with 0, mask with ``label_pad``."""
    height, width = mask.shape
    pad_h, pad_w = max(0, size - height), max(0, size - width)
    if pad_h == 0 and pad_w == 0:
        return image, mask
    image = F.pad(image, (0, pad_w, 0, pad_h), value=0.0)
    mask = F.pad(mask, (0, pad_w, 0, pad_h), value=label_pad)
    return image, mask


def crop_pair(image: torch.Tensor, mask: torch.Tensor, top: int, left: int, size: int) -> Pair:
    """The ``size`` x ``size`` window at (top, left) of both."""
    return image[:, top : top + size, left : left + size], mask[top : top + size, left : left + size]


def hflip_pair(image: torch.Tensor, mask: torch.Tensor) -> Pair:
    """Mirror both left-right."""
    return image.flip(-1), mask.flip(-1)


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _randint(high: int, generator: torch.Generator | None) -> int:
    """A uniform integer in [0, high]."""
    return int(torch.randint(high + 1, (), generator=generator))


class EvalTransform:
    """Normalise the image; the mask passes through."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> Pair:
        check_pair(image, mask)
        return normalize(image, self.mean, self.std), mask


class TrainTransform:
    """Random scale in ``scale_range``, normalise, pad and random-crop to ``crop_size``, random h-flip."""

    def __init__(
        self,
        crop_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        scale_range: tuple[float, float] = (0.5, 2.0),
        flip_prob: float = 0.5,
        generator: torch.Generator | None = None,
    ) -> None:
        if crop_size < 1:
            raise DataError(f"crop_size={crop_size} must be a positive number of pixels")
        if not 0 < scale_range[0] <= scale_range[1]:
            raise DataError(f"scale_range={scale_range} must be (low, high) with 0 < low <= high")
        if not 0.0 <= flip_prob <= 1.0:
            raise DataError(f"flip_prob={flip_prob} must lie in [0, 1]")
        self.crop_size, self.scale_range, self.flip_prob = crop_size, tuple(scale_range), flip_prob
        self.mean, self.std = tuple(mean), tuple(std)
        self.generator = generator

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> Pair:
        check_pair(image, mask)
        g, size = self.generator, self.crop_size
        image, mask = scale_pair(image, mask, _uniform(*self.scale_range, g))
        image = normalize(image, self.mean, self.std)
        image, mask = pad_pair(image, mask, size)
        height, width = mask.shape
        image, mask = crop_pair(image, mask, _randint(height - size, g), _randint(width - size, g), size)
        if _uniform(0.0, 1.0, g) < self.flip_prob:
            image, mask = hflip_pair(image, mask)
        return image.contiguous(), mask.contiguous()
