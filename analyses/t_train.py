"""T_train study: EM vs HEM (η = 0.5, 0.25) for T_train ∈ {1, 2, 3, 5, 8, 12}, 3 seeds, at EMANet's temperature
τ = 1 and at τ = 0.25 (sharper attention). Per setting: final val mIoU, decades of decay of grad/x and grad/mu,
and the regime each seed's run ends in. The analogue of EMANet's Fig. 4 and HEMNet's main comparison.

    python analyses/t_train.py [--quick] [--workers 2]       # 108 runs; 74 min on 2 CPU cores
"""

import sys

from _study import main

GRID = ["model.temperature=1.0,0.25", "model.kind=em,hem", "model.step_size=0.5,0.25",
        "model.iterations=1,2,3,5,8,12"]

if __name__ == "__main__":
    sys.exit(main("t_train", __doc__, GRID))
