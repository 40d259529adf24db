"""The report's tables: numbers read the same way everywhere (dead and undefined values say so instead of
crashing), the no-gradient reason, which config keys group runs, the colour of the figures, and the terminal
table of `gradlab compare`."""

from __future__ import annotations

import math

import pandas as pd
import pytest

import gradlab
from gradlab.report import compare_runs, comparison_keys, format_comparison
from gradlab.report import tables as fmt
from gradlab.report.tables import flag_summary, hue_column, no_gradient_reason


def test_decades_show_sign_and_say_dead_or_undefined():
    assert fmt.decades(-1.234) == "-1.23" and fmt.decades(0.5) == "+0.50"
    assert fmt.decades(-math.inf) == "-inf (dead)" and fmt.decades(math.nan) == "n/a"


def test_every_measured_number_has_three_significant_digits_with_its_zeros():
    assert [fmt.number(v) for v in (0.5921, 0.571, 0.5, 12.345, 1234.5, 0.00123)] == [
        "0.592", "0.571", "0.500", "12.3", "1234", "0.00123"]
    assert fmt.number(1.2e-5) == "1.20e-05" and fmt.number(99999.0) == "1.00e+05" and fmt.number(0.9996) == "1.00"
    assert fmt.number(0) == "0" and fmt.number(-math.inf) == "-inf" and fmt.number(math.nan) == "n/a"
    assert fmt.number(None) == "n/a"
    assert fmt.score is fmt.number and fmt.loss is fmt.number and fmt.factor is fmt.number  # one formatter
    assert fmt.interval(0.25, 0.5) == "[0.250, 0.500]"


def test_half_depth_says_when_the_gradient_never_halves():
    assert fmt.half_depth(2.0, 1.0) == "2"
    assert fmt.half_depth(1.0, 0.25) == "1 (25% of steps)"
    assert fmt.half_depth(math.nan, 0.0) == "not reached"


def test_step_windows_read_as_words():
    assert fmt.step_window(5, 5, 1) == "5 (1 step)" and fmt.step_window(54, 59, 6) == "54–59 (6 steps)"


def testno_gradient_reason_says_why():
    assert no_gradient_reason("1", {"no_grad"}, "all") == "iteration 1 receives no gradient: run under no_grad"
    assert no_gradient_reason("1-3", {"no_grad"}, 2) == (
        "iterations 1–3 receive no gradient: run under no_grad (model.grad_iterations = 2: only the last 2 "
        "iterations carry gradient)")
    assert "status unused" in no_gradient_reason("2", {"unused"}, None)


def configs(*rows: dict) -> pd.DataFrame:
    base = {"run_dir": "x", "seed": 0, "model.kind": "hem", "model.iterations": 3, "model.step_size": 0.5}
    return pd.DataFrame([{**base, "run": f"r{i}", **row} for i, row in enumerate(rows)])


def test_runs_are_grouped_by_the_config_keys_that_differ_seeds_being_replicates():
    assert comparison_keys(configs({"model.kind": "em"}, {})) == ["model.kind"]
    assert comparison_keys(configs({"model.iterations": 1}, {"model.kind": "em"})) == ["model.kind",
                                                                                     "model.iterations"]
    assert comparison_keys(configs({"seed": 0}, {"seed": 1})) == ["model.kind"]  # seeds only: one group


def test_figures_colour_by_the_one_key_that_differs_else_by_run():
    assert hue_column(configs({"model.kind": "em"}, {"seed": 1})) == "model.kind"
    assert hue_column(configs({"model.step_size": 0.1}, {})) == "model.step_size"
    assert hue_column(configs({"model.kind": "em"}, {"model.iterations": 6})) == "run"
    assert hue_column(configs({})) == "run"


def test_terminal_table_has_one_row_per_group_with_estimate_ci_runs_and_miou():
    table = pd.DataFrame({
        "model.kind": ["em", "hem"], "layer": "head.ema.em", "quantity": "grad/x", "metric": "decades",
        "window": "last", "estimate": [-2.345, -0.5], "ci_low": [-2.5, math.nan], "ci_high": [-2.1, math.nan],
        "runs": [3, 1], "measured": [3, 1], "miou": [0.41, 0.45], "miou_ci_low": [0.4, math.nan],
        "miou_ci_high": [0.42, math.nan]})
    lines = format_comparison(table).splitlines()
    assert lines[0].startswith("decades of grad/x over the last 10%")
    header, rows = lines[2].split(), [line.split() for line in lines[3:]]
    assert header[:4] == ["model.kind", "layer", "runs", "decades"]
    assert rows == [["em", "head.ema.em", "3", "-2.35", "[-2.50,", "-2.10]", "0.410", "[0.400,", "0.420]"],
                    ["hem", "head.ema.em", "1", "-0.50", "n/a", "0.450", "n/a"]]


def test_compare_runs_names_the_valid_keys_when_a_key_is_unknown(runs):
    with pytest.raises(gradlab.GradlabError, match=r"unknown --by key 'model.bogus'; valid keys: seed, .*model\.kind"):
        compare_runs(list(runs.values()), by=["model.bogus"])


def test_compare_runs_groups_real_runs(runs):
    table = compare_runs([runs["em"], runs["hem"]], by=["model.kind"])
    assert list(table["model.kind"]) == ["em", "hem"] and list(table["runs"]) == [1, 1]
    assert table["estimate"].notna().all() and table["miou"].between(0, 1).all()


def test_decades_never_read_minus_zero():
    assert fmt.decades(-0.001) == "+0.00" and fmt.decades(-0.0) == "+0.00" and fmt.decades(-0.006) == "-0.01"


def exploding(run: str, quantity: str, step: int, rho: float) -> dict:
    return {"run": run, "rank": 0, "step": step, "layer": "head.ema.em", "quantity": quantity, "flag": "exploding",
            "value": rho, "threshold": 1.0, "evidence": f"{quantity}: ρ = {rho} > 1 per iteration"}


def test_a_flag_the_layers_regime_does_not_show_is_transient_with_its_steps_and_latest_evidence():
    raised = pd.DataFrame([exploding("em", "grad/mu", 40, 1.02), exploding("em", "grad/mu", 0, 1.1),
                           exploding("hot", "grad/x", 7, 3.0)])
    regimes = pd.DataFrame({"run": ["em", "hot"], "rank": 0, "layer": "head.ema.em",
                            "regime": ["healthy", "exploding"]})
    table = flag_summary(raised, records=pd.DataFrame(), configs=pd.DataFrame(), regimes=regimes)
    assert table[["run", "steps", "first_step", "last_step", "transient"]].values.tolist() == [
        ["em", 2, 0, 40, True], ["hot", 1, 7, 7, False]]
    assert table["reason"].iloc[0] == "latest: ρ = 1.02 > 1 per iteration"  # the latest step's, quantity dropped


@pytest.mark.parametrize("dropped", ["model.kind", "model.temperature", "seed"])
def test_a_run_whose_config_lacks_a_key_is_compared_not_dropped(runs, tmp_path, dropped):
    """A run written by another gradlab version (or a hand-edited config) lacks a key: it stays in the table,
    its group shows the key as missing."""
    from gradlab.report.build import build_report
    from tests.report.runs import copy_run

    old = copy_run(runs["hem"], tmp_path / "old-hem")
    table, key = dropped.rsplit(".", 1) if "." in dropped else ("", dropped)
    lines, section = [], ""
    for line in (old / "config.toml").read_text().splitlines():
        section = line.strip("[]") if line.startswith("[") else section
        if not (section == table and line.split(" = ")[0] == key):
            lines.append(line)
    (old / "config.toml").write_text("\n".join(lines) + "\n")
    given = [runs["em"], runs["hem"], old]
    shown = compare_runs(given, by=[dropped])
    assert shown["runs"].sum() == 3 and fmt.MISSING_KEY_NOTE in format_comparison(shown)
    assert compare_runs(given)["runs"].sum() == 3  # grouped by the keys that differ
    html = build_report(given, tmp_path / "report", dpi=20).markdown.read_text()
    assert "old-hem" in html and fmt.MISSING_KEY in html
