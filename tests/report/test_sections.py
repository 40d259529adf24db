"""The sections: the regime legend (one line per regime of the analysis engine, in its order, with the
thresholds it uses), captions that quote the thresholds, and flags the regime does not show marked transient."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from gradlab.analysis import thresholds as th
from gradlab.analysis.regime import REGIMES
from gradlab.report.sections import figure_specs, flags_section, regime_legend
from gradlab.report.tables import FLAG_SUMMARY_COLUMNS, RunInfo


def test_legend_names_every_regime_in_the_engines_order():
    assert tuple(regime_legend()) == REGIMES


def test_legend_is_generated_from_the_thresholds(monkeypatch):
    monkeypatch.setattr(th, "MISDIRECTED_TURN", 12.5)
    monkeypatch.setattr(th, "ATTENUATED_GAIN", 0.0042)
    legend = regime_legend()
    assert "12.5°" in legend["misdirected"] and "0.0042" in legend["attenuated"]


def test_retention_caption_quotes_the_thresholds(monkeypatch):
    monkeypatch.setattr(th, "VANISHING_RETENTION", 1e-4)
    records = pd.DataFrame({"run": ["r"], "step": [0], "layer": ["l"], "iteration": [1], "quantity": ["grad/x"],
                            "value": [1.0], "status": ["ok"], "rank": [0]})
    specs, _ = figure_specs(records, decay_frame=pd.DataFrame(), metrics=pd.DataFrame({"name": []}), hue="run")
    caption = next(s.caption for s in specs if s.name == "retention")
    assert "dashed lines at −4 and +3 decades" in caption


def test_a_transient_flag_is_marked_so_beside_its_step_count():
    flag_table = pd.DataFrame([["em", "head.ema.em", "grad/mu", "exploding", 2, 0, 40, "latest: ρ = 1.02 > 1", True]],
                              columns=FLAG_SUMMARY_COLUMNS)
    run = RunInfo("em", Path("em"), "complete", 300, 0, 299, True, True)
    table = flags_section(flag_table, runs=[run], fraction=0.1).blocks[0]
    assert table.rows == [["em", "head.ema.em", "grad/mu", "exploding (transient)", "2 of 300 (0–40)",
                           "latest: ρ = 1.02 > 1"]]
    assert "Transient: raised at some steps, but not the layer's regime over the last 10%" in table.caption
