"""The HTML writer: a wide table scrolls inside its own box instead of widening the page."""

from __future__ import annotations

from gradlab.report.render import Report, Section, Table, to_html, to_markdown


def test_every_table_scrolls_sideways_in_its_own_box():
    wide = Table([f"column {i}" for i in range(30)], [[str(i) for i in range(30)]], caption="wide")
    report = Report("t", [], [Section("s", "S", [wide])])
    assert '<div class="scroll">\n<table>' in to_html(report) and ".scroll { overflow-x: auto;" in to_html(report)
    assert "| column 0 | column 1 |" in to_markdown(report)  # the Markdown is unchanged by it
