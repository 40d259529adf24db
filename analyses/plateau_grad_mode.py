"""Gradient modes to plateau at T = 5: none (the bases iterate under no_grad, EMANet's official code), the
one-step gradient, backpropagation through all iterations, and the implicit-function-theorem gradient at the
fixed point, for EM and HEM (η = 0.5) at τ = 1 and τ = 0.25, 3 seeds, each run 24,000 steps (`_study.PLATEAU`).
The four modes are one linked axis (grad_mode=implicit needs grad_iterations="all"). Its T = 12 part is
analyses/plateau_grad_mode_t12.py. Not yet run: start it when the T_train plateau study has finished.

    python analyses/plateau_grad_mode.py [--quick] [--workers 2] [--keep DIR]   # 48 runs of ~30-40 CPU-minutes
"""

import sys

from _study import PLATEAU, main

#: none, one-step, unrolled, implicit (MATH.md §5 and the implicit gradient of docs/layers.md)
MODES = 'model.grad_mode:model.grad_iterations=unrolled:0,unrolled:1,unrolled:"all",implicit:"all"'
GRID = ["model.temperature=1.0,0.25", "model.kind=em,hem", MODES]

if __name__ == "__main__":
    sys.exit(main("plateau_grad_mode", __doc__, GRID, overrides=[*PLATEAU, "model.iterations=5"]))
