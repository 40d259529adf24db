"""T_train to plateau: EM vs HEM (η = 0.5) at T_train ∈ {1, 3, 8}, at τ = 1 and τ = 0.25, 5 seeds, each run
24,000 steps (`_study.PLATEAU`: where the learning curve of the ablation preset flattens). The issue-19 version
of analyses/t_train.py, whose 1,500-step runs measure early training.

    python analyses/plateau_t_train.py [--quick] [--workers 2]     # 60 runs of ~20-40 CPU-minutes each
"""

import sys

from _study import PLATEAU, main

GRID = ["model.temperature=1.0,0.25", "model.kind=em,hem", "model.iterations=1,3,8"]

if __name__ == "__main__":
    sys.exit(main("plateau_t_train", __doc__, GRID, seeds=5, overrides=PLATEAU))
