"""Is 24,000 steps the plateau? The T_train plateau study's HEM setting of the learning curve that chose the
budget (η = 0.5, T = 3, τ = 1) trained twice as long, 48,000 steps under the same poly schedule, 3 seeds (0-2):
paired by seed with the study's 24,000-step runs (same initialisation), the rise of val mIoU that doubling the
budget buys.

    python analyses/plateau_budget.py [--quick] [--workers 2]     # 3 runs of ~60 CPU-minutes each
"""

import sys

from _study import PLATEAU, main

GRID = ["train.steps=48000"]

if __name__ == "__main__":
    sys.exit(main("plateau_budget", __doc__, GRID, overrides=[*PLATEAU, "model.iterations=3"]))
