"""The attention-free baseline to plateau: the network of the T_train plateau study without the EMA unit
(model.kind = none: the head's two 3×3 ConvBNReLU around an identity), 5 seeds, each run 24,000 steps
(`_study.PLATEAU`). The control of that study: how much val mIoU the EM and HEM units add on these scenes at all
(against.md: each of its settings minus this baseline, paired by seed).

    python analyses/plateau_baseline.py [--quick] [--workers 2]     # 5 runs of ~15-20 CPU-minutes each
"""

import sys

import pandas as pd
from _study import PLATEAU, banked, main

from gradlab.ablate.summary import reference_markdown
from gradlab.analysis.compare import reference_difference

GRID = ["model.kind=none"]


def against(runs: pd.DataFrame) -> str:
    """Each setting of the T_train plateau study minus this baseline: what its EM or HEM unit adds, paired by seed
    (a seed fixes the scenes a run trains and is validated on, so runs of one seed share their easy and hard
    scenes: seed 2 is the lowest of most settings and of the baseline)."""
    t_train, settings = banked("plateau_t_train")
    table = reference_difference(t_train, runs, settings, columns=("miou", "train_loss"), paired=True)
    return reference_markdown(table, settings, "baseline", paired=True)


if __name__ == "__main__":
    sys.exit(main("plateau_baseline", __doc__, GRID, seeds=5, overrides=PLATEAU, against=against))
