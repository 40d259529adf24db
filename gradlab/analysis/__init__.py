"""Analysis of recorded gradient flow (MATH.md §7): every function takes a tidy frame and returns one.

    runs = load_runs(["runs/em", "runs/hem"])      # records + config columns
    decay(runs)                                     # R, decades, ρ, D½ per step, layer and grad/* quantity
    flags(runs), regime(runs)                       # what is wrong, and the verdict per run and layer
    compare(runs, by=["model.kind"])                # one row per group, Student-t CI over runs (seeds)
"""

from gradlab.analysis.aggregate import geometric_mean, log_median, summarize, window, windows
from gradlab.analysis.compare import compare, contrast, final_metric, per_run
from gradlab.analysis.decay import decay, profile, shares
from gradlab.analysis.flags import diagnostics, flags, spikes
from gradlab.analysis.intervals import INTERVAL_METHOD, bootstrap_ci, t_interval, welch_difference
from gradlab.analysis.load import load_configs, load_metrics, load_runs
from gradlab.analysis.regime import regime

__all__ = [
    "INTERVAL_METHOD", "bootstrap_ci", "compare", "contrast", "decay", "diagnostics", "final_metric", "flags",
    "geometric_mean", "load_configs", "load_metrics", "load_runs", "log_median", "per_run", "profile", "regime",
    "shares", "spikes", "summarize", "t_interval", "welch_difference", "window", "windows",
]
