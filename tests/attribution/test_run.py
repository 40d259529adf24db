"""A run attributed: its figures, and `gradlab attribute RUN_DIR`, whose table and figures land where
`gradlab report` finds them (user errors are one line and exit status 2)."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from matplotlib.figure import Figure

from gradlab.attribution import (
    COLUMNS,
    AttributionError,
    depth_profile_figure,
    input_attribution_figure,
    input_attributions,
)
from gradlab.cli import main
from gradlab.plots.common import KIND_COLORS

# --- figures

def test_profile_figure_has_a_panel_per_method_and_em_hem_in_their_colours(profiles):
    frame = pd.concat([profiles["em"], profiles["hem"]])
    fig = depth_profile_figure(frame)
    assert isinstance(fig, Figure)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["integrated-gradients", "gradient-x-activation", "conductance"]
    assert all(ax.get_yscale() == "log" for ax in panels)
    widths = {line.get_color() for ax in panels for line in ax.get_lines() if line.get_linewidth() >= 2}
    assert widths == {KIND_COLORS["em"], KIND_COLORS["hem"]}


def test_profile_figure_refuses_a_frame_that_is_not_a_profile():
    with pytest.raises(AttributionError, match="lacks columns"):
        depth_profile_figure(pd.DataFrame({"run": ["x"]}))


def test_input_figure_has_a_row_per_image_and_a_column_per_method(loaded, batch):
    maps = input_attributions(loaded["em"].net, batch.images, batch.classes, batch.regions, n_steps=4)
    fig = input_attribution_figure(maps, images=batch.images, regions=batch.regions, classes=batch.classes.tolist())
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [f"image 0, class {int(batch.classes[0])}", "saliency", "integrated-gradients",
                      f"image 1, class {int(batch.classes[1])}", "saliency", "integrated-gradients"]


# --- gradlab attribute

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
