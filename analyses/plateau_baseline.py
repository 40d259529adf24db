"""The attention-free baseline to plateau: the network of the T_train plateau study without the EMA unit
(model.kind = none: the head's two 3×3 ConvBNReLU around an identity), 5 seeds, each run 24,000 steps
(`_study.PLATEAU`). The control of that study: how much val mIoU the EM and HEM units add on these scenes at all.

    python analyses/plateau_baseline.py [--quick] [--workers 2]     # 5 runs of ~15-20 CPU-minutes each
"""

import sys

from _study import PLATEAU, main

GRID = ["model.kind=none"]

if __name__ == "__main__":
    sys.exit(main("plateau_baseline", __doc__, GRID, seeds=5, overrides=PLATEAU))
