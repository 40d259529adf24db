"""Scale check, larger feature map: the main EM-vs-HEM comparison on 128² scenes (16×16 features at output
stride 8, four times the pixels of the 64² studies) for T_train ∈ {3, 8}, 2 seeds: do the conclusions drawn on
8×8 feature maps hold?

    python analyses/scale_128.py [--quick] [--workers 2]      # 8 runs; about 15 min on 2 CPU cores
"""

import sys

from _study import main

GRID = ["model.kind=em,hem", "model.iterations=3,8"]

if __name__ == "__main__":
    sys.exit(main("scale_128", __doc__, GRID, seeds=2, overrides=["data.size=128"]))
