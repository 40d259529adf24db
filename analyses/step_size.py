"""Step-size study: HEM's η ∈ {0.1, 0.25, 0.5, 0.75, 1.0} (η = 1 is EM) at T_train = 5, 3 seeds: decay of grad/x
and grad/mu, final val mIoU, and forward convergence: ℓ(μ^(t)) − ℓ(μ^(0)) per iteration t (MATH.md §3), drawn
to OUT/objective.png.

    python analyses/step_size.py [--quick] [--workers 2]      # 15 runs; about 10 min on 2 CPU cores
"""

import sys

from _study import main

from gradlab.ablate import AblationResult
from gradlab.analysis import load_runs
from gradlab.plots import objective_per_iteration, save

GRID = ["model.step_size=0.1,0.25,0.5,0.75,1.0"]


def objective(result: AblationResult) -> None:
    """ℓ^(t) − ℓ^(0) over the second half of training, one line per η (seeds pooled)."""
    runs = load_runs([result.out / t.name for t in result.trials], missing="skip")
    late = runs[runs["step"] >= runs["step"].max() / 2]
    save(objective_per_iteration(late, hue="model.step_size", relative=True), result.out / "objective.png")


if __name__ == "__main__":
    sys.exit(main("step_size", __doc__, GRID, overrides=["model.iterations=5"], after=objective))
