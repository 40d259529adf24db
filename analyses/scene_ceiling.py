"""The mIoU ceiling of a stride-s network on the scene datasets.

An oracle knows each s×s cell's class fractions exactly and upsamples them bilinearly, as the segmentation net
upsamples its logits; its val mIoU bounds what an output-stride-s model can reach on these scenes.

    python analyses/scene_ceiling.py                       # defaults, 64², stride 8, 300 val scenes
    python analyses/scene_ceiling.py --threshold 0.5 --min-sprites 3 --max-sprites 6 --scale 0.25 0.5
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from gradlab.data import build_dataset
from gradlab.train.evaluate import confusion_matrix, scores


def ceiling(size: int, stride: int, count: int, **scene) -> float:
    ds = build_dataset("digits", "val", size=size, length=count, **scene)
    conf = torch.zeros(ds.num_classes, ds.num_classes, dtype=torch.int64)
    for i in range(count):
        _, mask = ds[i]
        fractions = F.avg_pool2d(F.one_hot(mask, ds.num_classes).permute(2, 0, 1).float()[None], stride)
        pred = F.interpolate(fractions, size=mask.shape, mode="bilinear", align_corners=False).argmax(1)[0]
        conf += confusion_matrix(pred, mask, ds.num_classes)
    return scores(conf)["miou"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--stride", type=int, default=8)
    p.add_argument("--count", type=int, default=300)
    p.add_argument("--threshold", type=float, default=0.25)
    p.add_argument("--min-sprites", type=int, default=2)
    p.add_argument("--max-sprites", type=int, default=5)
    p.add_argument("--scale", type=float, nargs=2, default=(0.35, 0.6))
    a = p.parse_args()
    miou = ceiling(a.size, a.stride, a.count, threshold=a.threshold, min_sprites=a.min_sprites,
                   max_sprites=a.max_sprites, scale=tuple(a.scale))
    print(f"oracle val mIoU at {a.size}², stride {a.stride}: {miou:.3f}")


if __name__ == "__main__":
    main()
