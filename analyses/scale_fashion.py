"""Scale check, other data: the main EM-vs-HEM comparison on scenes of Fashion-MNIST product photos (the `idx`
source; Debian's dataset-fashion-mnist, see docs/data.md) for T_train ∈ {3, 8}, 3 seeds.

    python analyses/scale_fashion.py [--quick] [--workers 2]  # 12 runs; about 8 min on 2 CPU cores
"""

import sys

from _study import main

GRID = ["model.kind=em,hem", "model.iterations=3,8"]

if __name__ == "__main__":
    sys.exit(main("scale_fashion", __doc__, GRID, overrides=["data.source=idx"]))
