"""Ablations: a grid of config values × seeds, one run directory per trial, resumable, summarised with CIs."""

from gradlab.ablate.ablation import AblationResult, run_ablation
from gradlab.ablate.grid import Axis, Trial, expand, parse_axis
from gradlab.ablate.summary import summarize_ablation

__all__ = ["AblationResult", "Axis", "Trial", "expand", "parse_axis", "run_ablation",
           "summarize_ablation"]
