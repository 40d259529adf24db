"""The regime legend: one line per regime of the analysis engine, in its order, with the thresholds it uses."""

from __future__ import annotations

from gradlab.analysis import thresholds as th
from gradlab.analysis.regime import REGIMES
from gradlab.report.diagnosis import regime_legend


def test_legend_names_every_regime_in_the_engines_order():
    assert tuple(regime_legend()) == REGIMES


def test_legend_is_generated_from_the_thresholds(monkeypatch):
    monkeypatch.setattr(th, "MISDIRECTED_TURN", 12.5)
    monkeypatch.setattr(th, "ATTENUATED_GAIN", 0.0042)
    legend = regime_legend()
    assert "12.5°" in legend["misdirected"] and "0.0042" in legend["attenuated"]
