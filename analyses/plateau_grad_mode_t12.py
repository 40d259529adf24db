"""Gradient modes to plateau at T = 12, τ = 0.25: none, one-step, unrolled and implicit (the linked axis of
analyses/plateau_grad_mode.py) for EM and HEM (η = 0.5), 3 seeds, each run 24,000 steps (`_study.PLATEAU`). A
1,500-step probe read val mIoU 0.136 for EM with full backpropagation and 0.274 with the one-step gradient: this
measures whether that holds at plateau, with seeds. Not yet run.

    python analyses/plateau_grad_mode_t12.py [--quick] [--workers 2] [--keep DIR]   # 24 runs of ~1 CPU-hour
"""

import sys

from _study import PLATEAU, main
from plateau_grad_mode import MODES

GRID = ["model.temperature=0.25", "model.kind=em,hem", MODES]

if __name__ == "__main__":
    sys.exit(main("plateau_grad_mode_t12", __doc__, GRID, overrides=[*PLATEAU, "model.iterations=12"]))
