"""Is 24,000 steps the plateau? The T_train plateau study's HEM setting of the learning curve that chose the
budget (η = 0.5, T = 3, τ = 1) trained twice as long, 48,000 steps under the same poly schedule, 3 seeds (0-2):
paired by seed with the study's 24,000-step runs (same initialisation), the rise of val mIoU that doubling the
budget buys (against.md).

    python analyses/plateau_budget.py [--quick] [--workers 2]     # 3 runs of ~60 CPU-minutes each
"""

import sys

import pandas as pd
from _study import PLATEAU, banked, main

from gradlab.ablate.summary import reference_markdown
from gradlab.analysis.compare import reference_difference

GRID = ["train.steps=48000"]
SETTING = {"model.temperature": 1.0, "model.kind": "hem", "model.iterations": 3}  # of the T_train plateau study


def against(runs: pd.DataFrame) -> str:
    """48,000 steps minus the T_train plateau study's 24,000 steps of the same setting, paired by seed (the late
    rise of mIoU is left out: its window, the last 25% of training, is twice as long at 48,000 steps)."""
    reference, _ = banked("plateau_t_train", SETTING)
    table = reference_difference(runs, reference, ["train.steps"], columns=("miou", "train_loss"), paired=True)
    return reference_markdown(table, ["train.steps"], "24,000 steps", paired=True)


if __name__ == "__main__":
    sys.exit(main("plateau_budget", __doc__, GRID, overrides=[*PLATEAU, *(f"{k}={v}" for k, v in SETTING.items())],
                  against=against))
