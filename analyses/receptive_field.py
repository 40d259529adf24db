"""How much of the scene each backbone feature cell sees: the pixels where the gradient of one feature cell (all
its channels) with respect to the input image is nonzero (its theoretical receptive field), for the corner and
the centre cell of the feature map, on a randomly initialised network of a preset (the receptive field is the
architecture's, not the training's). If every cell already sees the whole scene, global context (what the EMA
unit adds in EMANet) is available to the backbone without it.

    python analyses/receptive_field.py [--preset ablation] [--size 64 128]
"""

from __future__ import annotations

import argparse
import sys

import torch

from gradlab.cli import one_line
from gradlab.errors import GradlabError
from gradlab.models import model_from_config
from gradlab.train import load_config


def support(backbone: torch.nn.Module, size: int, cell: tuple[int, int]) -> tuple[int, int, int, int]:
    """(first row, last row, first column, last column) of the input pixels that feature `cell` depends on."""
    torch.manual_seed(0)
    images = torch.randn(2, 3, size, size, requires_grad=True)
    features = backbone(images)
    grad, = torch.autograd.grad(features[:, :, cell[0], cell[1]].sum(), images)
    rows, cols = (grad.abs().sum(dim=(0, 1)) > 0).nonzero(as_tuple=True)
    return int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="ablation", help="the config whose backbone to measure")
    parser.add_argument("--size", type=int, nargs="+", default=[64, 128], help="scene sizes (pixels)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.preset, ["model.kind=none"])
        backbone = model_from_config(config.model, 2).backbone.eval()
        lines = ["| scene | features | cell | rows seen | columns seen | share of the scene |", "|---" * 6 + "|"]
        for size in args.size:
            side = backbone(torch.zeros(1, 3, size, size)).shape[-1]
            for name, cell in (("corner", (0, 0)), ("centre", (side // 2, side // 2))):
                r0, r1, c0, c1 = support(backbone, size, cell)
                share = (r1 - r0 + 1) * (c1 - c0 + 1) / size**2
                lines.append(f"| {size}² | {side}×{side} | {name} {cell} | {r0}–{r1} | {c0}–{c1} | {share:.0%} |")
    except (GradlabError, RuntimeError) as err:
        print(f"receptive_field: error: {one_line(err)}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
