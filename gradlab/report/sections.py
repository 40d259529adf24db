"""The sections of a report, each built from the tables of `report.tables` (and the figures of gradlab.plots)
as Text, Table and Image blocks that the HTML and the Markdown writer render alike."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from gradlab.analysis import thresholds as th
from gradlab.analysis.decay import iteration_gradients
from gradlab.analysis.intervals import INTERVAL_METHOD
from gradlab.atomic import atomic_path
from gradlab.plots import (
    decay_curves,
    objective_per_iteration,
    retention_over_training,
    save,
    sigma_and_rho,
    step_iteration_heatmap,
    training_curves,
)
from gradlab.records import INPUT_GRADIENT
from gradlab.report import tables as fmt
from gradlab.report.render import Image, Section, Table, Text, table_from
from gradlab.report.tables import RunInfo, comparison_rows, config_keys, differing_keys
from gradlab.run_dir import ATTRIBUTION, ATTRIBUTION_FIGURES, RunDirectory

KEY_SETTINGS = ("model.kind", "model.iterations", "model.step_size", "model.bases", "model.grad_iterations",
                "model.kernel", "model.temperature", "model.backbone", "data.source", "data.size", "train.steps",
                "train.batch_size", "train.lr", "seed")


def summary_section(regimes: pd.DataFrame, *, runs: list[RunInfo], configs: pd.DataFrame, decay: pd.DataFrame,
                    scores: pd.DataFrame, flag_table: pd.DataFrame, fraction: float) -> Section:
    """One row per run and unrolled layer (EM layer or watched loop): what it is, its regime, the flags raised at
    any step, the decay of its input gradient (grad/x, or a loop's grad/in) and its final scores."""
    config = configs.set_index("run")
    raised = _flags_in_short(flag_table)
    grad_x = decay[decay["quantity"].isin(INPUT_GRADIENT)].set_index(["run", "layer"])
    score = scores.set_index("run")
    info = {r.name: r for r in runs}
    rows = []
    for r in regimes.itertuples(index=False):
        run, key = info[r.run], (r.run, r.layer)
        x = grad_x.loc[key] if key in grad_x.index else None
        rows.append([r.run, r.layer or "—", _status(run), _setting(config, r.run, "model.kind"),
                     _setting(config, r.run, "model.iterations"), _setting(config, r.run, "model.step_size"),
                     r.regime, raised.get(key, "—"), fmt.decades(x["decades"]) if x is not None else fmt.MISSING,
                     fmt.factor(x["rho"]) if x is not None else fmt.MISSING,
                     fmt.score(score.at[r.run, "miou"]), fmt.score(score.at[r.run, "pixel_acc"])])
    columns = ["run", "layer", "status", "kind", "T", "η", "regime", "flags (steps)",
               f"decades (input gradient, last {fraction:.0%})", "ρ (input gradient)", "val mIoU", "pixel acc."]
    return Section("summary", "Summary", [Table(columns, rows, badge="regime")])


def _flags_in_short(flag_table: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(run, layer) → "collapse (34), spike (3, transient)": each flag with the most steps any quantity raised it
    at, marked transient when the layer's regime does not show it."""
    if flag_table.empty:
        return {}
    steps = (flag_table.groupby(["run", "layer", "flag"], sort=False)
             .agg(steps=("steps", "max"), transient=("transient", "all")).reset_index())
    return {key: ", ".join(f"{f} ({n}, transient)" if t else f"{f} ({n})"
                           for f, n, t in zip(g["flag"], g["steps"], g["transient"]))
            for key, g in steps.groupby(["run", "layer"], sort=False)}


def _status(run: RunInfo) -> str:
    steps = f"{run.recorded_steps} steps recorded" if run.recorded_steps else "no records"
    return f"{run.status}, {steps}" if run.partial else steps


def _setting(config: pd.DataFrame, run: str, key: str) -> str:
    return fmt.value(config.at[run, key]) if key in config.columns else fmt.MISSING


def notes_section(notes: list[str]) -> Section:
    return Section("missing", "What is missing", [Text(n, "warning") for n in notes])


def regime_legend() -> dict[str, str]:
    """What each regime means, for the report's legend, in the order gradlab.analysis.regime tests them (the last
    two instead of one_step … healthy for a layer in grad_mode implicit); the thresholds are read when called,
    so a changed `gradlab.analysis.thresholds` value shows."""
    return {
        "nonfinite": "NaN/Inf gradient norms",
        "no_grad": "no iteration receives gradient (grad_iterations = 0)",
        "dead": "the gradient reaching the layer is exactly 0 at every iteration: nothing downstream passes any back",
        "collapse": f"all bases alike (similarity > {th.COLLAPSE_SIMILARITY:g}) and attention uniform (entropy > "
                    f"{th.COLLAPSE_ENTROPY:g} ln K): the gradient cancels in the softmax (not saturation)",
        "saturation": f"attention nearly one-hot (entropy < {th.SATURATION_ENTROPY:g} ln K): the softmax Jacobian "
                      "vanishes (HEMNet's premise)",
        "one_step": "only the last iteration carries gradient: nothing to decay",
        "exploding": f"the gradient grows toward the early iterations (R > {th.EXPLODING_RETENTION:g} or ρ > "
                     f"{th.EXPLODING_RHO:g}: instability)",
        "vanishing": f"more than {-math.log10(th.VANISHING_RETENTION):g} decades of decay, with neither collapse "
                     "nor saturation",
        "misdirected": "the earlier iterations add a large part that barely agrees with the last one's gradient: the "
                       f"full gradient turns ≥ {th.MISDIRECTED_TURN:g}° away from the one-step gradient (not small, "
                       "but pointing elsewhere)",
        "attenuated": f"the layer passes little of what it receives: gain G < {th.ATTENUATED_GAIN:g} or EM-branch "
                      f"share < {th.ATTENUATED_SHARE:g}, while the iterations' ratios look healthy",
        "healthy": "the gradient reaches every iteration",
        "implicit_fallback": f"grad_mode implicit: the adjoint solve diverged at ≥ {th.REGIME_MAJORITY:.0%} of steps, "
                             "where the gradient falls back to the two-iteration (JFB) gradient",
        "implicit": "grad_mode implicit: the adjoint solve did not diverge, the gradient is the implicit one at the "
                    "fixed point (up to its residual)",
    }


def diagnosis_section(regimes: pd.DataFrame, *, fraction: float) -> Section:
    """The regime of each run and layer, with the sentence that says why."""
    shown = regimes.assign(
        layer=regimes["layer"].replace("", "—"),
        window=[fmt.step_window(a, b, n) for a, b, n in zip(regimes["from_step"], regimes["to_step"],
                                                             regimes["steps"])])
    columns = {"run": "run", "layer": "layer", "regime": "regime", "window": "steps", "reason": "why"}
    if regimes["rank"].nunique() > 1:
        columns = {"run": "run", "rank": "rank", **{k: v for k, v in columns.items() if k != "run"}}
    intro = Text(f"Each EM layer's regime over the last {fraction:.0%} of its recorded steps, from the gradient "
                 "norms and the forward diagnostics beside them (entropy of the attention, similarity of the "
                 "bases). A regime holds when most of the window's steps show it.", "note")
    legend = Table(["regime", "meaning"], [[k, v] for k, v in regime_legend().items()], badge="regime",
                   collapsed="How to read the regimes")
    blocks = [intro, table_from(shown, columns=columns, badge="regime")]
    if "gain" in regimes.columns and regimes[list(MECHANISM_TEXT)].notna().any().any():
        blocks.append(_mechanism_table(shown))
    return Section("diagnosis", "Diagnosis", [*blocks, legend])


#: the mechanism numbers of MATH.md §9 the diagnosis shows: column → (header, formatter)
MECHANISM_TEXT = {
    "gain": ("gain G", fmt.factor), "branch_share": ("EM-branch share", fmt.score),
    "e_gain": ("E-step gain e", fmt.factor), "c_rest": ("c_rest", fmt.score), "r_rest": ("r_rest", fmt.factor),
    "turn": ("turn (°)", fmt.factor),
    "grad_params": ("‖∂L/∂θ‖", fmt.factor), "sigma": ("σ_t (geo. mean)", fmt.factor),
    "predicted": ("predicted decay", fmt.decades), "measured": ("measured decay", fmt.decades),
    "alignment": ("alignment α", fmt.factor),
}


def _mechanism_table(shown: pd.DataFrame) -> Table:
    columns = ["run", "layer", *(header for header, _ in MECHANISM_TEXT.values())]
    rows = [[r["run"], r["layer"], *(f(r[c]) for c, (_, f) in MECHANISM_TEXT.items())] for _, r in shown.iterrows()]
    return Table(columns, rows, caption=(
        "The mechanism (MATH.md §9), medians over the same window: G = ‖∂L/∂X‖ / ‖∂L/∂X̃‖, the layer's backward "
        "gain; the EM branch's share of the gradient reaching the EMA unit's input; e = (1/τ) mean_n (1 − Σ_k z²), "
        "what the E-step passes back per unit of logit; c_rest = cos(Σ_{t<T} g_t, g_T) and r_rest = "
        "‖Σ_{t<T} g_t‖ / ‖g_T‖, how much the earlier iterations add to the last one's gradient and whether it "
        "agrees, and the angle by which that turns the gradient away from the one-step gradient; the total "
        "parameter gradient; σ_t of the state Jacobians, the decay of grad/mu they predict "
        "(an upper bound, Σ log10 σ_t) and the measured one over the same iterations, and the alignment α = "
        "ρ_t / σ_t (geometric mean; ≪ 1: the gradient meets weak directions of J_t)."))


def numbers_section(decay: pd.DataFrame, *, scores: pd.DataFrame, fraction: float) -> Section:
    """Decay of every per-iteration gradient over the last part of training, and the final scores."""
    shown = decay.assign(
        layer=decay["layer"].replace("", "—"),
        window=[fmt.step_window(a, b, n) for a, b, n in zip(decay["from_step"], decay["to_step"], decay["steps"])],
        decades_text=decay["decades"].map(fmt.decades), rho_text=decay["rho"].map(fmt.factor),
        half=[fmt.half_depth(d, r) for d, r in zip(decay["half_depth"], decay["half_reached"])],
        no_grad=decay["no_grad_iterations"].astype(str).replace("", "—"))
    decay_table = table_from(shown, columns={
        "run": "run", "layer": "layer", "quantity": "quantity", "window": "steps",
        "decades_text": "decades log10 R", "rho_text": "ρ per iteration", "half": "half-depth D½",
        "no_grad": "no-gradient iterations"},
        caption=f"Mean over each run's last {fraction:.0%} of recorded steps (ρ, R: geometric means). "
                "R = g_first / g_last; −2 decades: the first iteration gets 1% of the last one's gradient. "
                "ρ < 1 decays toward the early iterations. D½: iterations back from the last until the "
                "gradient halves.")
    score_shown = scores.assign(miou=scores["miou"].map(fmt.score), acc=scores["pixel_acc"].map(fmt.score),
                                at=scores["val_step"].map(lambda s: f"{s:.0f}" if pd.notna(s) else fmt.MISSING),
                                loss=scores["loss"].map(fmt.loss))
    score_table = table_from(score_shown, columns={"run": "run", "miou": "val mIoU", "acc": "pixel accuracy",
                                           "at": "at step", "loss": "last training loss"},
                             caption="The last validation in metrics.parquet.")
    blocks = [decay_table] if len(decay) else [Text("No per-iteration gradients were recorded.", "warning")]
    return Section("numbers", "Headline numbers", [*blocks, score_table])


def flags_section(flag_table: pd.DataFrame, *, runs: list[RunInfo], fraction: float) -> Section:
    """Every flag raised, with how many steps raised it and why; a flag the layer's regime does not show over
    the window is marked transient (an event at some steps, not a verdict)."""
    if flag_table.empty:
        return Section("flags", "Flags", [Text(
            f"No flag raised: no missing or dead gradient, no NaN/Inf, no decay beyond R < "
            f"{th.VANISHING_RETENTION:g} or growth beyond R > {th.EXPLODING_RETENTION:g}, no spike, no collapse "
            "and no saturation at any recorded step.")])
    recorded = {r.name: r.recorded_steps for r in runs}
    shown = flag_table.assign(
        layer=flag_table["layer"].replace("", "—"),
        flag=[f"{f} (transient)" if t else f for f, t in zip(flag_table["flag"], flag_table["transient"])],
        when=[f"{n} of {recorded.get(run, 0)} ({fmt.step_range(a, b)})" for run, n, a, b in
              zip(flag_table["run"], flag_table["steps"], flag_table["first_step"], flag_table["last_step"])])
    caption = "Thresholds: gradlab.analysis.thresholds (docs/analysis.md, Flags)."
    if flag_table["transient"].any():
        caption += (f" Transient: raised at some steps, but not the layer's regime over the last {fraction:.0%} "
                    "of its steps (the Diagnosis gives the verdict).")
    table = table_from(shown, columns={"run": "run", "layer": "layer", "quantity": "quantity", "flag": "flag",
                               "when": "steps flagged (first–last)", "reason": "reason"}, caption=caption)
    return Section("flags", "Flags", [table])


def comparison_section(table: pd.DataFrame, *, by: list[str], fraction: float) -> Section:
    if table.empty:
        return Section("comparison", "Comparison", [Text("No run recorded grad/x: nothing to compare.", "warning")])
    caption = (f"Runs grouped by {', '.join(by)}: each run's mean decades of grad/x over its last {fraction:.0%} "
               f"of steps, averaged over the group's runs, with a {INTERVAL_METHOD}; "
               "n/a with a single run per group. `gradlab compare` prints the same table.")
    shown = comparison_rows(table, label="decades (grad/x)")
    if fmt.lacks_keys(shown):
        caption += f" {fmt.MISSING_KEY_NOTE}."
    table = table_from(shown, columns={c: c for c in shown.columns}, caption=caption)
    return Section("comparison", "Comparison", [table])


def configs_section(configs: pd.DataFrame) -> Section:
    """The keys that differ between runs, each run's key settings, and every key (folded)."""
    runs = list(configs["run"])
    by_key = configs.set_index("run").T
    blocks = []
    if len(runs) > 1:
        differ = differing_keys(configs)
        blocks.append(_key_table(by_key, differ, runs, "Config keys that differ between the runs.") if differ else
                      Text("The runs share every config key.", "note"))
    settings = [k for k in KEY_SETTINGS if k in by_key.index]
    blocks.append(_key_table(by_key, settings, runs, "Key settings of each run."))
    blocks.append(_key_table(by_key, config_keys(configs), runs, "Every config key (config.toml).",
                             collapsed="Full configs"))
    paths = [[r, str(p)] for r, p in zip(runs, configs["run_dir"])]
    blocks.append(Table(["run", "run directory"], paths))
    return Section("configs", "Configs", blocks)


def _key_table(by_key: pd.DataFrame, keys: list[str], runs: list[str], caption: str, **kwargs) -> Table:
    rows = [[key, *(fmt.value(by_key.at[key, run]) for run in runs)] for key in keys]
    return Table(["key", *runs], rows, caption=caption, **kwargs)


FIGURES_DIR = "figures"
TRAINING_NAMES = ("loss", "miou", "pixel_acc")


@dataclass(frozen=True)
class FigureSpec:
    name: str  # file name without suffix
    title: str
    caption: str
    draw: Callable[[], Figure]


def figures_section(records: pd.DataFrame, *, decay_frame: pd.DataFrame, metrics: pd.DataFrame, hue: str,
                    out: Path, dpi: int) -> tuple[Section, list[Path], list[str]]:
    """The figures the data allows, drawn and saved as out/figures/NAME.png (atomically); the files, and a note
    for each figure that could not be drawn (one figure must not cost the whole report)."""
    specs, missing = figure_specs(records, decay_frame=decay_frame, metrics=metrics, hue=hue)
    blocks, files, failed = [], [], []
    for spec in specs:
        try:
            path = save(spec.draw(), out / FIGURES_DIR / f"{spec.name}.png", dpi=dpi)
        except Exception as err:  # one figure must not cost the whole report
            failed.append(f"figure {spec.title!r} could not be drawn: {type(err).__name__}: {err}")
            continue
        files.append(path)
        blocks.append(Image(spec.title, spec.caption, f"{FIGURES_DIR}/{path.name}", path.read_bytes()))
    blocks += [Text(n, "warning") for n in missing + failed]
    return Section("figures", "Figures", blocks), files, failed


def figure_specs(records: pd.DataFrame, *, decay_frame: pd.DataFrame, metrics: pd.DataFrame,
                 hue: str) -> tuple[list[FigureSpec], list[str]]:
    """The figures the data allows, and a note for each one it does not."""
    specs, missing = [], []
    for quantity in INPUT_GRADIENT:
        if len(iteration_gradients(records[(records["quantity"] == quantity).to_numpy()])):
            specs += _gradient_specs(records, quantity, decay_frame=decay_frame, hue=hue)
    if not specs:
        missing.append("no grad/x or grad/in records: the decay curves, the heatmap and retention over training "
                       "are left out")
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


#: per input gradient: (figure-name suffix, what its norm is, where its title says it enters)
_INPUT_FIGURES = {
    "grad/x": ("", "‖∂L/∂X^(t)‖, the gradient the backbone receives through iteration t", ""),
    "grad/in": ("_loops", "‖∂L/∂input_c‖, the gradient that reaches the input of call c of a watched loop "
                "(gradlab.watch(loops=...))", " (watched loops)"),
}


def _gradient_specs(records: pd.DataFrame, quantity: str, *, decay_frame: pd.DataFrame,
                    hue: str) -> list[FigureSpec]:
    vanishing, exploding = (f"{math.log10(r):+g}".replace("-", "−")
                            for r in (th.VANISHING_RETENTION, th.EXPLODING_RETENTION))
    suffix, norm, where = _INPUT_FIGURES[quantity]
    return [
        FigureSpec(
            f"decay_curves{suffix}", f"Gradient reaching each iteration{where}",
            f"{norm}, on a log axis: the median over all recorded steps (line) and the central 95% of steps "
            "(band). The gradient enters at the last iteration T and travels back toward t = 1, so a line that "
            "falls to the left is decay. ▼ marks an exact zero, ✖ an iteration with no gradient (no_grad).",
            lambda: decay_curves(records, quantity=quantity, hue=hue)),
        FigureSpec(
            f"heatmap{suffix}", f"Step × iteration heatmap{where}",
            "The same norm at every recorded step (rows) and iteration (columns) on one log colour scale: when in "
            "training and at which iteration the gradient fades. Black: exact zero; hatched grey: no gradient.",
            lambda: step_iteration_heatmap(records, quantity=quantity)),
        FigureSpec(
            f"retention{suffix}", f"Retention over training{where}",
            f"Decades of decay log10 R, R = g_first / g_last of {quantity}, at every recorded step. The dashed lines "
            f"at {vanishing} and {exploding} decades are the vanishing and exploding thresholds.",
            lambda: retention_over_training(decay_frame, quantity=quantity, hue=hue)),
    ]


def attribution_section(runs: list[RunInfo], *, out: Path) -> tuple[Section | None, list[Path]]:
    """The attribution tables and figures the runs hold (written by `gradlab attribute`: attribution.parquet and
    report/attribution*.png in the run directory), copied beside the report; None when no run has any."""
    blocks, files = [], []
    for run in runs:
        run_dir = RunDirectory(run.run_dir)
        table = attribution_table(run_dir.attribution_path)
        if table is not None:
            rows = [[fmt.number(v) if isinstance(v, float) else str(v) for v in row]
                    for row in table.itertuples(index=False, name=None)]
            blocks.append(Table([str(c) for c in table.columns], rows,
                                caption=f"{run.name}: {ATTRIBUTION} (first {len(table)} rows)"))
        for source in sorted(run_dir.report_path.glob(ATTRIBUTION_FIGURES)):
            path = _copy_image(source, out / FIGURES_DIR, run.name)
            files.append(path)
            blocks.append(Image(f"{run.name}: {source.stem}", f"{source} from the run directory",
                                f"{FIGURES_DIR}/{path.name}", path.read_bytes()))
    return (Section("attribution", "Attribution", blocks) if blocks else None), files


ATTRIBUTION_ROWS = 20


def attribution_table(path: Path) -> pd.DataFrame | None:
    """The first ATTRIBUTION_ROWS rows of a run's attribution.parquet, or None (absent or unreadable)."""
    if not path.is_file():
        return None
    try:
        return pd.read_parquet(path).head(ATTRIBUTION_ROWS)
    except Exception:  # an optional extra: an unreadable file is reported as absent
        return None


def _copy_image(source: Path, folder: Path, run: str) -> Path:
    """Copy a PNG into the report's figures folder under a name made safe from the run's name
    ("em/seed0" → "attribution-em-seed0-NAME.png")."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", run).strip("-.") or "run"
    target = folder / f"attribution-{slug}-{source.name}"
    with atomic_path(target) as tmp:
        tmp.write_bytes(source.read_bytes())
    return target
