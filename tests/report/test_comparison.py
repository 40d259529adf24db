"""Which config keys group runs, the colour of the figures, and the terminal table of `gradlab compare`."""

from __future__ import annotations

import math

import pandas as pd
import pytest

import gradlab
from gradlab.report import compare_runs, comparison_keys, format_comparison
from gradlab.report.comparison import hue_column


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
        "runs": [3, 1], "miou": [0.41, 0.45], "miou_ci_low": [0.4, math.nan], "miou_ci_high": [0.42, math.nan]})
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
