"""Gradient-mode study: how much of the unrolled loop carries gradient (MATH.md §5): none (EMANet's official
code: the bases iterate under no_grad), the last iteration only (one-step gradient) and all iterations, for EM
and HEM (η = 0.5) at T_train = 5, 3 seeds.

    python analyses/grad_mode.py [--quick] [--workers 2]      # 18 runs; about 12 min on 2 CPU cores
"""

import sys

from _study import main

GRID = ["model.kind=em,hem", 'model.grad_iterations=0,1,"all"']

if __name__ == "__main__":
    sys.exit(main("grad_mode", __doc__, GRID, overrides=["model.iterations=5"]))
