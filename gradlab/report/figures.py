"""The report's figures (gradlab.plots), saved as PNG beside the report and embedded in the HTML. A figure whose
data is missing is left out with a note; one that fails to draw becomes a warning, never a failed report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from gradlab.analysis.decay import iteration_gradients
from gradlab.plots import (
    decay_curves,
    objective_per_iteration,
    retention_over_training,
    save,
    sigma_and_rho,
    step_iteration_heatmap,
    training_curves,
)

FIGURES_DIR = "figures"
TRAINING_NAMES = ("loss", "miou", "pixel_acc")


@dataclass(frozen=True)
class FigureSpec:
    name: str  # file name without suffix
    title: str
    caption: str
    draw: Callable[[], Figure]


def figure_specs(records: pd.DataFrame, decay_frame: pd.DataFrame, metrics: pd.DataFrame,
                 hue: str) -> tuple[list[FigureSpec], list[str]]:
    """The figures the data allows, and a note for each one it does not."""
    specs, missing = [], []
    grad_x = iteration_gradients(records[(records["quantity"] == "grad/x").to_numpy()])
    if len(grad_x):
        specs += _gradient_specs(records, decay_frame, hue)
    else:
        missing.append("no grad/x records: the decay curves, the heatmap and retention over training are left out")
    if (records["quantity"] == "jac/sigma_max").any():
        specs.append(FigureSpec(
            "jacobians", "Where the gradient goes: σ_t and ρ_t",
            "σ_t = ‖∂μ^(t)/∂μ^(t−1)‖₂ of each iteration's state map (power iteration on the sampled images, the "
            "max over them; solid) and the measured factor ρ_t = ‖∂L/∂μ^(t−1)‖ / ‖∂L/∂μ^(t)‖ (dashed), medians "
            "over the Jacobian steps. Below the last iteration ρ_t ≤ σ_t; a ρ_t far under σ_t means the gradient "
            "meets a weak direction of J_t (alignment), not a contraction (MATH.md §9).",
            lambda: sigma_and_rho(records, hue=hue)))
    if (records["quantity"] == "loglik").any():
        specs.append(FigureSpec(
            "objective", "Objective per iteration",
            "Forward convergence: the EM objective ℓ(μ^(t)) − ℓ(μ^(0)) at each iteration, median over the recorded "
            "steps. EM, and HEM with 0 < η ≤ 1, never decrease it; a flat curve means the later iterations no "
            "longer move the bases.",
            lambda: objective_per_iteration(records, hue=hue, relative=True)))
    else:
        missing.append("no loglik records: the objective per iteration is left out")
    names = [n for n in TRAINING_NAMES if (metrics["name"] == n).any()]
    if names:
        specs.append(FigureSpec(
            "training", "Training curves", "Training loss and the validation scores over the training steps.",
            lambda: training_curves(metrics, names=names, hue=hue if hue in metrics.columns else "run")))
    else:
        missing.append("no metrics.parquet rows: the training curves are left out")
    return specs, missing


def _gradient_specs(records: pd.DataFrame, decay_frame: pd.DataFrame, hue: str) -> list[FigureSpec]:
    return [
        FigureSpec(
            "decay_curves", "Gradient reaching each iteration",
            "‖∂L/∂X^(t)‖, the gradient the backbone receives through iteration t, on a log axis: the median over "
            "all recorded steps (line) and the central 95% of steps (band). The gradient enters at the last "
            "iteration T and travels back toward t = 1, so a line that falls to the left is decay. ▼ marks an "
            "exact zero, ✖ an iteration with no gradient (no_grad).",
            lambda: decay_curves(records, "grad/x", hue=hue)),
        FigureSpec(
            "heatmap", "Step × iteration heatmap",
            "The same norm at every recorded step (rows) and iteration (columns) on one log colour scale: when in "
            "training and at which iteration the gradient fades. Black: exact zero; hatched grey: no gradient.",
            lambda: step_iteration_heatmap(records, quantity="grad/x")),
        FigureSpec(
            "retention", "Retention over training",
            "Decades of decay log10 R, R = g_first / g_last of grad/x, at every recorded step. The dashed lines at "
            "−3 and +3 decades are the vanishing and exploding thresholds.",
            lambda: retention_over_training(decay_frame, hue=hue, quantity="grad/x")),
    ]


def render(specs: list[FigureSpec], out_dir: Path, dpi: int) -> tuple[list[tuple[FigureSpec, Path]], list[str]]:
    """Draw and save each figure as out_dir/figures/NAME.png (atomically); a figure that fails is a note."""
    saved, failed = [], []
    for spec in specs:
        try:
            path = save(spec.draw(), out_dir / FIGURES_DIR / f"{spec.name}.png", dpi=dpi)
        except Exception as err:  # one figure must not cost the whole report
            failed.append(f"figure {spec.title!r} could not be drawn: {type(err).__name__}: {err}")
            continue
        saved.append((spec, path))
    return saved, failed
