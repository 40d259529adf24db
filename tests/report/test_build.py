"""build_report on real tiny runs: a self-contained, escaped HTML file and a Markdown summary that hold the
numbers, regimes, flags and figures the analysis computes."""

from __future__ import annotations

import base64
import json
from html import escape

import pandas as pd
import pyarrow as pa
import pytest

import gradlab
from gradlab.analysis import decay, load_runs, regime, window
from gradlab.records import SCHEMA, load_records, write_part
from gradlab.report import build_report
from tests.report.conftest import DPI
from tests.report.parse import MD_IMAGE, column, parse_html, section, table_rows, text_of
from tests.report.runs import copy_run

SECTIONS = ("summary", "diagnosis", "numbers", "flags", "comparison", "figures", "configs")
PNG = b"\x89PNG\r\n\x1a\n"


def test_html_is_well_formed_self_contained_and_has_every_section(report):
    text = report.html.read_text()
    root = parse_html(report.html)
    assert "http://" not in text and "https://" not in text and "<script" not in text and "<link" not in text
    images = root.findall(".//img")
    assert len(images) == 6  # decay curves, heatmap, retention, σ_t and ρ_t, objective, training curves
    for img in images:
        src = img.get("src")
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    for section_id in SECTIONS:
        section(root, section_id)
    assert root.find(".//style") is not None


def test_report_names_every_run_and_gives_the_regime_sentence_of_each_layer(report, runs):
    html, markdown = report.html.read_text(), report.markdown.read_text()
    verdicts = regime(load_runs(list(runs.values())))
    assert set(verdicts["run"]) == set(runs)
    for row in verdicts.itertuples():
        assert escape(row.reason) in html
        assert row.reason in markdown  # a sentence without markup characters reads as it is
    header, rows = table_rows(section(parse_html(report.html), "diagnosis"))
    assert dict(zip(column(header, rows, "run"), column(header, rows, "regime"))) == {
        "em": "healthy", "hem": "healthy", "hem-one-step": "one_step"}


def test_headline_decades_and_miou_match_the_analysis_computed_independently(report, runs):
    d = decay(load_runs(list(runs.values())))
    last = window(d[d["quantity"] == "grad/x"], "last", 0.1)
    expected = last.groupby("run", observed=True)["decades"].mean()
    header, rows = table_rows(section(parse_html(report.html), "numbers"))
    shown = {(r[0], r[2]): r[header.index("decades log10 R")] for r in rows}
    markdown = report.markdown.read_text()
    for run in ("em", "hem"):
        assert shown[run, "grad/x"] == f"{expected[run]:+.2f}"
        assert f"| {run} | head.ema.em | grad/x | 5 (1 step) | {expected[run]:+.2f} |" in markdown
    assert shown["hem-one-step", "grad/x"] == "n/a"  # one differentiable iteration: no decay to measure

    header, rows = table_rows(section(parse_html(report.html), "summary"))
    for run, path in runs.items():
        metrics = pd.read_parquet(path / "metrics.parquet")
        miou = metrics[metrics["name"] == "miou"].sort_values("step")["value"].iloc[-1]
        assert column(header, rows, "val mIoU")[column(header, rows, "run").index(run)] == f"{miou:#.3g}"


def test_one_step_run_says_its_early_iterations_run_under_no_grad(report):
    header, rows = table_rows(section(parse_html(report.html), "flags"))
    reasons = {(r[0], r[2]): r[header.index("reason")] for r in rows if r[header.index("flag")] == "no_grad"}
    assert set(reasons) == {("hem-one-step", q) for q in ("grad/x", "grad/z", "grad/mu")}
    assert reasons["hem-one-step", "grad/x"] == (
        "iterations 1–2 receive no gradient: run under no_grad (model.grad_iterations = 1: only the last "
        "iteration carries gradient)")
    assert "iterations 0–2 receive no gradient" in reasons["hem-one-step", "grad/mu"]


def test_comparison_has_one_row_per_group_of_differing_config_keys(report):
    header, rows = table_rows(section(parse_html(report.html), "comparison"))
    assert header[:3] == ["model.kind", "model.step_size", "model.grad_iterations"]  # EM's η resolves to 1
    assert sorted((r[0], r[2]) for r in rows) == [("em", "all"), ("hem", "1"), ("hem", "all")]


def test_config_differences_list_only_the_keys_that_differ(report):
    header, rows = table_rows(section(parse_html(report.html), "configs"))
    assert header == ["key", "em", "hem", "hem-one-step"]
    assert rows == [["model.kind", "em", "hem", "hem"], ["model.step_size", "1.0", "0.5", "0.5"],
                    ["model.grad_iterations", "all", "all", "1"]]


def test_markdown_links_png_figures_that_exist_beside_it(report):
    links = MD_IMAGE.findall(report.markdown.read_text())
    assert len(links) == 6 and links[0] == "figures/decay_curves.png"
    assert "figures/jacobians.png" in links
    for link in links:
        path = report.markdown.parent / link
        assert not link.startswith("/") and path.read_bytes().startswith(PNG)
    assert sorted(report.figures) == sorted(report.markdown.parent / link for link in links)
    assert not list(report.folder.rglob(".*.tmp"))  # atomic writes leave no temp file


def test_hostile_run_names_titles_and_config_values_are_escaped(runs, tmp_path):
    hostile = "<img src=x onerror=alert(1)>"
    run = copy_run(runs["em"], tmp_path / "runs" / hostile)
    config = run / "config.toml"
    config.write_text(config.read_text().replace('root = ""', 'root = "</script><script>alert(1)</script>"'))
    paths = build_report([run], tmp_path / "out", title="<script>alert(1)</script>", dpi=DPI)
    html, markdown = paths.html.read_text(), paths.markdown.read_text()
    assert "<script" not in html and "<img src=x" not in html
    assert "<script" not in markdown and "<img" not in markdown and "</" not in markdown
    assert escape(hostile) in html and "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)>" in markdown
    header, rows = table_rows(section(parse_html(paths.html), "summary"))
    assert column(header, rows, "run") == [hostile]  # the parsed text is the name itself


def test_partial_runs_are_reported_with_what_is_missing(runs, tmp_path):
    no_records = copy_run(runs["hem"], tmp_path / "runs" / "no-records")
    for part in (no_records / "records").iterdir():
        part.unlink()
    killed = copy_run(runs["em"], tmp_path / "runs" / "killed")
    (killed / "metrics.parquet").unlink()
    meta = json.loads((killed / "meta.json").read_text())
    (killed / "meta.json").write_text(json.dumps({**meta, "status": "running"}))
    (killed / "records" / "part-r000-000099.parquet").write_bytes(b"not parquet")
    with pytest.warns(UserWarning) as caught:
        paths = build_report(tmp_path / "runs", tmp_path / "out", dpi=DPI)
    warned = " ".join(str(w.message) for w in caught)
    assert "no readable records" in warned and "did not finish" in warned and "no metrics in run" in warned
    root = parse_html(paths.html)
    missing = text_of(section(root, "missing"))
    for words in ("no readable records in", "no metrics in run", "did not finish (meta.json status: running)",
                  "skipping unreadable records part", "part-r000-000099.parquet"):
        assert words in missing
    header, rows = table_rows(section(root, "summary"))
    status = dict(zip(column(header, rows, "run"), column(header, rows, "status")))
    assert status == {"killed": "running, 6 steps recorded", "no-records": "no records"}
    assert "no records: nothing to diagnose" in text_of(section(root, "diagnosis"))


def test_a_missing_run_directory_raises_records_error(tmp_path):
    with pytest.raises(gradlab.RecordsError, match="no run directory at"):
        build_report([tmp_path / "nowhere"], tmp_path / "out")


def test_default_folder_is_the_run_directory_for_one_run_and_report_for_several(runs, tmp_path, monkeypatch):
    one = copy_run(runs["em"], tmp_path / "em")
    assert build_report(one, dpi=DPI).html == one / "report" / "report.html"
    monkeypatch.chdir(tmp_path)
    paths = build_report([one, runs["hem"]], dpi=DPI)
    assert paths.html.resolve() == (tmp_path / "report" / "report.html").resolve() and paths.html.is_file()


def test_attribution_figures_and_table_of_a_run_are_included(runs, tmp_path, report):
    run = copy_run(runs["hem"], tmp_path / "hem")
    (run / "report").mkdir()
    (run / "report" / "attribution-iterations.png").write_bytes(report.figures[0].read_bytes())
    pd.DataFrame({"iteration": [1, 2, 3], "attribution": [0.1, 0.3, 0.6]}).to_parquet(run / "attribution.parquet")
    paths = build_report([run], tmp_path / "out", dpi=DPI)
    part = section(parse_html(paths.html), "attribution")
    assert len(part.findall(".//img")) == 1
    assert table_rows(part)[1] == [["1", "0.100"], ["2", "0.300"], ["3", "0.600"]]
    assert "figures/attribution-hem-attribution-iterations.png" in paths.markdown.read_text()
    assert (paths.folder / "figures" / "attribution-hem-attribution-iterations.png").is_file()


def test_a_run_without_an_em_layer_is_reported_as_such(runs, tmp_path):
    run = copy_run(runs["em"], tmp_path / "baseline")
    config = run / "config.toml"
    config.write_text(config.read_text().replace('kind = "em"', 'kind = "none"'))
    records = load_records(run)
    for part in (run / "records").iterdir():
        part.unlink()
    per_step = records[records["quantity"].isin(["loss", "lr", "step_time", "grad/params"])]
    write_part(pa.Table.from_pandas(per_step, schema=SCHEMA, preserve_index=False),
               run / "records" / "part-r000-000000.parquet")
    with pytest.warns(UserWarning, match="no EM layer"):
        paths = build_report([run], tmp_path / "out", dpi=DPI)
    root = parse_html(paths.html)
    assert "run baseline has no EM layer (model.kind = none)" in text_of(section(root, "missing"))
    assert "no grad/x or grad/in records: the decay curves" in text_of(section(root, "figures"))
    header, rows = table_rows(section(root, "diagnosis"))
    assert column(header, rows, "regime") == ["none"]
    assert [img.get("alt") for img in root.findall(".//img")] == ["Training curves"]


def test_diagnosis_shows_the_mechanism_per_run_and_layer(report):
    header, rows = table_rows(section(parse_html(report.html), "diagnosis"), 1)
    assert header[:4] == ["run", "layer", "gain G", "EM-branch share"] and "alignment α" in header
    assert sorted(r[0] for r in rows) == ["em", "hem", "hem-one-step"]
    gains = [float(r[2]) for r in rows]
    assert all(0 < g < 10 for g in gains)  # a real ratio of two recorded norms, never a placeholder
    shares = [float(r[3]) for r in rows]
    assert all(0 < s < 1 for s in shares)
