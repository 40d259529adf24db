"""`gradlab attribute RUN_DIR`: the table and figures land where `gradlab report` finds them; user errors are
one line and exit status 2."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from gradlab.attribution import COLUMNS
from gradlab.cli import main


@pytest.fixture
def run(runs, tmp_path):
    """A private copy of the tiny HEM run (with its checkpoint)."""
    return shutil.copytree(runs["hem"], tmp_path / "hem", ignore=shutil.ignore_patterns("report"))


def test_attribute_writes_the_table_and_figures_and_the_report_shows_them(run, capsys):
    assert main(["attribute", str(run), "--images", "2"]) == 0
    printed = capsys.readouterr().out.split()
    expected = [run / "attribution.parquet", run / "report" / "attribution_profile.png",
                run / "report" / "attribution_inputs.png"]
    assert printed == [str(p) for p in expected] and all(p.stat().st_size > 0 for p in expected)
    table = pd.read_parquet(expected[0])
    assert list(table.columns) == COLUMNS and set(table["image"]) == {0, 1} and set(table["run"]) == {"hem"}
    assert main(["report", str(run)]) == 0
    html = (run / "report" / "report.html").read_text()
    assert "Attribution" in html and "attribution.parquet (first 18 rows)" in html
    assert (run / "report" / "figures" / "attribution-hem-attribution_profile.png").is_file()


def test_one_method_and_an_out_folder(run, tmp_path, capsys):
    out = tmp_path / "elsewhere"
    assert main(["attribute", str(run), "--images", "1", "--method", "saliency", "--out", str(out)]) == 0
    assert capsys.readouterr().out.split() == [str(out / "attribution_inputs.png")]
    assert sorted(p.name for p in out.iterdir()) == ["attribution_inputs.png"]
    assert not (run / "attribution.parquet").exists()


def none_run(run):
    config = run / "config.toml"
    config.write_text(config.read_text().replace('kind = "hem"', 'kind = "none"'))
    return run


@pytest.mark.parametrize("args,message", [
    (lambda run, tmp: [str(tmp / "missing")], "is not a run directory (no config.toml)"),
    (lambda run, tmp: [str(run), "--method", "lrp"], "unknown attribution method(s) ['lrp']"),
    (lambda run, tmp: [str(run), "--images", "0"], "images=0 is invalid"),
    (lambda run, tmp: [str(run), "--images", "999"], "but the validation split has 8 images"),
    (lambda run, tmp: [str(none_run(run))], "has no EM layer (model.kind = none)"),
])
def test_user_errors_are_one_line_with_exit_status_2(run, tmp_path, capsys, args, message):
    code = main(["attribute", *args(run, tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("gradlab: error: ") and message in err and "\n" not in err


def test_a_run_without_checkpoint_is_an_error(run, capsys):
    shutil.rmtree(run / "checkpoints")
    assert main(["attribute", str(run)]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
