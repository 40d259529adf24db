"""The house style, the checks shared by every plot, saving, and the public names and signatures."""

from __future__ import annotations

import inspect
import subprocess
import sys

import matplotlib as mpl
import pytest
from matplotlib.figure import Figure

import gradlab.plots
from gradlab.plots import decay_curves, palette, save
from gradlab.plots.common import (
    CATEGORICAL,
    KIND_COLORS,
    THEME,
    figure_title,
    hue_label,
    new_figure,
    quantity_label,
    styled,
)
from tests.plots.synthetic import make_records, render, suptitle

PLOTS = ["ablation_panel", "attention_maps", "decay_curves", "objective_per_iteration", "retention_over_training",
         "sigma_and_rho", "step_iteration_heatmap", "training_curves"]
#: keywords several plots take, in the one order they take them in
SHARED_KEYWORDS = ["names", "metrics", "quantity", "layer", "run", "hue", "steps", "x", "band", "level"]


def test_em_and_hem_keep_their_colours_whatever_else_is_plotted():
    two, three = palette(["em", "hem"], "model.kind"), palette(["hem", "em", "none"], "model.kind")
    assert two == {k: three[k] for k in two} and two["em"] != two["hem"]
    assert palette(["hem"])["hem"] == KIND_COLORS["hem"]
    assert palette(["EM"])["EM"] == KIND_COLORS["em"]


def test_step_sizes_have_fixed_distinct_colours_and_eta_one_is_em():
    few, many = palette([0.5, 1.0], "model.step_size"), palette([0.1, 0.5, 1.0, 1.5], "model.step_size")
    assert few[0.5] == many[0.5] and mpl.colors.to_hex(many[1.0]) == KIND_COLORS["em"]
    assert len({mpl.colors.to_hex(c) for c in many.values()}) == 4


def test_runs_never_take_em_or_hem_colours_and_numbers_get_a_ramp():
    runs = palette([f"run{i}" for i in range(len(CATEGORICAL))], "run")
    assert not set(runs.values()) & {KIND_COLORS["em"], KIND_COLORS["hem"]}
    assert len(set(runs.values())) == len(runs)
    assert len(palette(list(range(20)), "run")) == 20
    ramp = palette([8, 1, 3], "model.iterations")
    assert list(ramp) == [1, 3, 8]


def test_labels():
    assert hue_label("model.kind", "hem") == "HEM" and hue_label("model.step_size", 0.5) == "η = 0.5"
    assert hue_label("run", "a") == "a" and quantity_label("grad/slots") == "‖∂L/∂slots‖"
    assert "partial" in quantity_label("grad/x")


def test_the_theme_applies_while_building_and_never_leaks():
    before = dict(mpl.rcParams)

    @styled
    def build() -> Figure:
        assert mpl.rcParams["axes.spines.top"] is THEME["axes.spines.top"]
        return new_figure()[0]

    assert isinstance(build(), Figure)
    assert dict(mpl.rcParams) == before


def test_importing_the_plots_without_a_display_uses_a_non_gui_backend():
    code = "import gradlab.plots, matplotlib; print(matplotlib.get_backend())"
    env = {"PATH": "", "HOME": "/tmp"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().lower() == "agg"


def test_public_names():
    assert set(gradlab.plots.__all__) == {
        "PlotInputError", "ablation_panel", "attention_maps", "decay_curves", "house_style",
        "objective_per_iteration", "palette", "retention_over_training", "save", "sigma_and_rho",
        "step_iteration_heatmap", "training_curves",
    }
    assert issubclass(gradlab.plots.PlotInputError, ValueError)

@pytest.mark.parametrize("name", PLOTS)
def test_every_plot_takes_its_frame_positionally_and_the_rest_by_keyword_in_one_order(name):
    first, *rest = inspect.signature(getattr(gradlab.plots, name)).parameters.values()
    assert first.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and first.default is inspect.Parameter.empty
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in rest)
    shared = [p.name for p in rest if p.name in SHARED_KEYWORDS]
    assert shared == sorted(shared, key=SHARED_KEYWORDS.index)


def test_a_figure_title_wraps_to_the_figure_and_never_inside_a_formula():
    text = r"A long title about $\|\partial L / \partial X\|$ (and a remark in brackets) that never ends, really"
    with gradlab.plots.house_style():
        narrow, wide = new_figure(width=2.5)[0], new_figure(width=12)[0]
        figure_title(narrow, text)
        figure_title(wide, text)
    assert wide.get_suptitle() == text
    lines = narrow.get_suptitle().split("\n")
    assert len(lines) > 2 and " ".join(lines) == text
    assert any(r"$\|\partial L / \partial X\|$" in line for line in lines)
    assert any("(and a remark in brackets)" in line for line in lines)
    box = suptitle(narrow).get_window_extent(render(narrow))
    assert 0 <= box.x0 and box.x1 <= narrow.bbox.width


# --- save

MAGIC = {".png": b"\x89PNG", ".svg": b"<?xml", ".pdf": b"%PDF"}


@pytest.fixture(scope="module")
def fig():
    return decay_curves(make_records(kinds=("em",), steps=range(3)))


@pytest.mark.parametrize("suffix", sorted(MAGIC))
def test_save_writes_the_format_of_the_suffix_and_leaves_no_temp_file(fig, tmp_path, suffix):
    path = save(fig, tmp_path / "sub" / f"decay{suffix}")
    assert path.read_bytes().startswith(MAGIC[suffix]) and path.stat().st_size > 1000
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_svg_and_pdf_are_reproducible(fig, tmp_path):
    for suffix in (".svg", ".pdf"):
        first = save(fig, tmp_path / f"a{suffix}").read_bytes()
        assert save(fig, tmp_path / f"b{suffix}").read_bytes() == first


def test_a_failed_save_keeps_the_old_file_and_leaves_no_temp_file(fig, tmp_path, monkeypatch):
    path = save(fig, tmp_path / "decay.png")
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        save(fig, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["decay.png"]


def test_unknown_suffix_raises(fig, tmp_path):
    with pytest.raises(ValueError, match=r"\.jpg.*\.pdf"):
        save(fig, tmp_path / "decay.jpg")
    assert list(tmp_path.iterdir()) == []
