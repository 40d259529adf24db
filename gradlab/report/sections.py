"""The sections of a report, each built from the frames of gradlab.analysis and formatted once for both the
HTML and the Markdown writer."""

from __future__ import annotations

import pandas as pd

from gradlab.analysis import thresholds as th
from gradlab.report import formatting as fmt
from gradlab.report.comparison import config_keys, differing_keys
from gradlab.report.diagnosis import regime_legend
from gradlab.report.document import Section, Table, Text, table_from
from gradlab.report.runs import RunInfo

KEY_SETTINGS = ("model.kind", "model.iterations", "model.step_size", "model.bases", "model.grad_iterations",
                "model.kernel", "model.temperature", "model.backbone", "data.source", "data.size", "train.steps",
                "train.batch_size", "train.lr", "seed")


def summary_section(runs: list[RunInfo], configs: pd.DataFrame, regimes: pd.DataFrame, decay: pd.DataFrame,
                    scores: pd.DataFrame, flag_table: pd.DataFrame, fraction: float) -> Section:
    """One row per run and EM layer: what it is, its regime, the flags raised at any step, the decay of grad/x
    and its final scores."""
    config = configs.set_index("run")
    raised = _flags_in_short(flag_table)
    grad_x = decay[decay["quantity"] == "grad/x"].set_index(["run", "layer"])
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
               f"decades (grad/x, last {fraction:.0%})", "ρ (grad/x)", "val mIoU", "pixel acc."]
    return Section("summary", "Summary", [Table(columns, rows, badge="regime")])


def _flags_in_short(flag_table: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(run, layer) → "collapse (34), no_grad (60)": each flag with the most steps any quantity raised it at."""
    if flag_table.empty:
        return {}
    steps = flag_table.groupby(["run", "layer", "flag"], sort=False)["steps"].max().reset_index()
    return {key: ", ".join(f"{f} ({n})" for f, n in zip(g["flag"], g["steps"]))
            for key, g in steps.groupby(["run", "layer"], sort=False)}


def _status(run: RunInfo) -> str:
    steps = f"{run.recorded_steps} steps recorded" if run.recorded_steps else "no records"
    return f"{run.status}, {steps}" if run.partial else steps


def _setting(config: pd.DataFrame, run: str, key: str) -> str:
    return fmt.value(config.at[run, key]) if key in config.columns else fmt.MISSING


def notes_section(notes: list[str]) -> Section:
    return Section("missing", "What is missing", [Text(n, "warning") for n in notes])


def diagnosis_section(regimes: pd.DataFrame, fraction: float) -> Section:
    """The regime of each run and layer, with the sentence that says why."""
    shown = regimes.assign(
        layer=regimes["layer"].replace("", "—"),
        window=[fmt.window(a, b, n) for a, b, n in zip(regimes["from_step"], regimes["to_step"], regimes["steps"])])
    columns = {"run": "run", "layer": "layer", "regime": "regime", "window": "steps", "reason": "why"}
    if regimes["rank"].nunique() > 1:
        columns = {"run": "run", "rank": "rank", **{k: v for k, v in columns.items() if k != "run"}}
    intro = Text(f"Each EM layer's regime over the last {fraction:.0%} of its recorded steps, from the gradient "
                 "norms and the forward diagnostics beside them (entropy of the attention, similarity of the "
                 "bases). A regime holds when most of the window's steps show it.", "note")
    legend = Table(["regime", "meaning"], [[k, v] for k, v in regime_legend().items()], badge="regime",
                   collapsed="How to read the regimes")
    blocks = [intro, table_from(shown, columns, badge="regime")]
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


def numbers_section(decay: pd.DataFrame, scores: pd.DataFrame, fraction: float) -> Section:
    """Decay of every per-iteration gradient over the last part of training, and the final scores."""
    shown = decay.assign(
        layer=decay["layer"].replace("", "—"),
        window=[fmt.window(a, b, n) for a, b, n in zip(decay["from_step"], decay["to_step"], decay["steps"])],
        decades_text=decay["decades"].map(fmt.decades), rho_text=decay["rho"].map(fmt.factor),
        half=[fmt.half_depth(d, r) for d, r in zip(decay["half_depth"], decay["half_reached"])],
        no_grad=decay["no_grad_iterations"].astype(str).replace("", "—"))
    decay_table = table_from(shown, {
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
    score_table = table_from(score_shown, {"run": "run", "miou": "val mIoU", "acc": "pixel accuracy",
                                           "at": "at step", "loss": "last training loss"},
                             caption="The last validation in metrics.parquet.")
    blocks = [decay_table] if len(decay) else [Text("No per-iteration gradients were recorded.", "warning")]
    return Section("numbers", "Headline numbers", [*blocks, score_table])


def flags_section(flag_table: pd.DataFrame, runs: list[RunInfo]) -> Section:
    if flag_table.empty:
        return Section("flags", "Flags", [Text(
            f"No flag raised: no missing or dead gradient, no NaN/Inf, no decay beyond R < "
            f"{th.VANISHING_RETENTION:g} or growth beyond R > {th.EXPLODING_RETENTION:g}, no spike, no collapse "
            "and no saturation at any recorded step.")])
    recorded = {r.name: r.recorded_steps for r in runs}
    shown = flag_table.assign(
        layer=flag_table["layer"].replace("", "—"),
        when=[f"{n} of {recorded.get(run, 0)} ({fmt.step_range(a, b)})" for run, n, a, b in
              zip(flag_table["run"], flag_table["steps"], flag_table["first_step"], flag_table["last_step"])])
    table = table_from(shown, {"run": "run", "layer": "layer", "quantity": "quantity", "flag": "flag",
                               "when": "steps flagged (first–last)", "reason": "reason"},
                       caption="Thresholds: gradlab.analysis.thresholds (docs/analysis.md, Flags).")
    return Section("flags", "Flags", [table])


def comparison_section(table: pd.DataFrame, by: list[str], fraction: float) -> Section:
    if table.empty:
        return Section("comparison", "Comparison", [Text("No run recorded grad/x: nothing to compare.", "warning")])
    shown = table.assign(**{k: table[k].map(fmt.value) for k in by},
                         estimate_text=table["estimate"].map(fmt.decades),
                         ci=[fmt.interval(lo, hi, fmt.decades) for lo, hi in zip(table["ci_low"], table["ci_high"])])
    columns = {**{k: k for k in by}, "layer": "layer", "runs": "runs", "estimate_text": "decades (grad/x)",
               "ci": "95% CI"}
    if "miou" in table.columns:
        shown["miou_text"] = table["miou"].map(fmt.score)
        shown["miou_ci"] = [fmt.interval(lo, hi, fmt.score)
                            for lo, hi in zip(table["miou_ci_low"], table["miou_ci_high"])]
        columns |= {"miou_text": "val mIoU", "miou_ci": "mIoU 95% CI"}
    caption = (f"Runs grouped by {', '.join(by)}: each run's mean decades of grad/x over its last {fraction:.0%} "
               "of steps, averaged over the group's runs, with a percentile bootstrap 95% CI over runs (seeds); "
               "n/a with a single run per group. `gradlab compare` prints the same table.")
    return Section("comparison", "Comparison", [table_from(shown, columns, caption=caption)])


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
