"""Security guarantees (reliability issue #10, item 4).

- Checkpoints and pretrained weights load with `torch.load(weights_only=True)`: a file that holds a pickled
  object is refused with a GradlabError and its payload never runs.
- No pickle anywhere in records, metrics or reports (Parquet with JSON metadata, HTML, Markdown, PNG).
- Hostile run names and config strings are escaped in the HTML (and Markdown) report.
- No path argument makes gradlab write outside the chosen folder: ablation trial names, report and attribution
  `--out`, records part names.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
from html import escape
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gradlab
from gradlab.cli import main
from gradlab.errors import ConfigError, GradlabError
from tests.report.runs import copy_run, tiny_runs

PACKAGE = Path(gradlab.__file__).parent
SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tiny_runs(tmp_path_factory)


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def snapshot(root: Path) -> dict[Path, float]:
    return {p: p.stat().st_mtime_ns for p in files_under(root)}


# -- pickle-free checkpoints ------------------------------------------------------------------------------------
class Payload:
    """Unpickling this object calls open(marker, "w"): a harmless stand-in for arbitrary code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def hostile_checkpoint(path: Path, marker: Path, state: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**(state or {}), "payload": Payload(marker)}, path)
    return path


def torch_load_calls() -> list[tuple[Path, ast.Call]]:
    calls = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                calls.append((path, node))
    return calls


def test_every_torch_load_in_gradlab_passes_weights_only_true():
    calls = torch_load_calls()
    assert calls, "expected the checkpoint and pretrained-weights loaders"
    for path, call in calls:
        kw = {k.arg: k.value for k in call.keywords}
        assert "weights_only" in kw and isinstance(kw["weights_only"], ast.Constant) \
            and kw["weights_only"].value is True, f"{path}:{call.lineno}: torch.load without weights_only=True"


def test_the_payload_is_live_without_weights_only(tmp_path):
    """The hostile file is a real threat: an unrestricted torch.load runs its payload (here: creates a file)."""
    marker = tmp_path / "pwned"
    path = hostile_checkpoint(tmp_path / "evil.pt", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_a_checkpoint_holding_a_pickled_object_is_refused(tmp_path):
    from gradlab.train.checkpoint import load_checkpoint

    marker = tmp_path / "pwned"
    path = hostile_checkpoint(tmp_path / "last.pt", marker, {"step": 3})
    with pytest.raises(GradlabError, match=r"checkpoint .*last\.pt cannot be read \(UnpicklingError\)"):
        load_checkpoint(path)
    assert not marker.exists()


def test_resume_and_attribute_refuse_a_hostile_checkpoint(runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(runs["em"], run)
    marker = tmp_path / "pwned"
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    hostile_checkpoint(run / "checkpoints" / "last.pt", marker, state)
    before = snapshot(run)
    for argv in (["train", "--resume", "--out", str(run), "--quiet"], ["attribute", str(run), "--images", "1"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("gradlab: error: checkpoint ") and "UnpicklingError" in err and "\n" not in err
    assert not marker.exists() and snapshot(run) == before
    with pytest.raises(GradlabError, match="cannot be read"):
        gradlab.train.load_model(run)


def test_pretrained_weights_holding_a_pickled_object_are_refused(tmp_path):
    from gradlab.models.weights import read_state_dict

    marker = tmp_path / "pwned"
    path = hostile_checkpoint(tmp_path / "resnet.pth", marker, {"conv1.weight": torch.zeros(1)})
    with pytest.raises(ConfigError, match="weights_only=True"):
        read_state_dict(path)
    assert not marker.exists()


# -- no pickle in records, metrics or reports ---------------------------------------------------------------------
PICKLE_MODULES = {"pickle", "cPickle", "dill", "joblib", "shelve", "marshal", "cloudpickle", "_pickle"}


def test_gradlab_never_pickles():
    """No pickling module is imported (weights.py names pickle.UnpicklingError only, to catch it), no pandas
    pickle I/O, no DataFrame.attrs (pandas writes attrs into Parquet metadata), no allow_pickle=True."""
    for path in SOURCES:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                bad = {n.split(".")[0] for n in names if n} & PICKLE_MODULES
                if bad == {"pickle"} and path.name == "weights.py":
                    continue
                assert not bad, f"{path}:{node.lineno} imports {bad}"
            if isinstance(node, ast.Attribute):
                if isinstance(node.value, ast.Name) and node.value.id == "pickle":
                    assert node.attr == "UnpicklingError", f"{path}:{node.lineno}: pickle.{node.attr}"
                assert node.attr not in ("read_pickle", "to_pickle", "attrs"), f"{path}:{node.lineno}: .{node.attr}"
            if isinstance(node, ast.keyword) and node.arg == "allow_pickle":
                pytest.fail(f"{path}: allow_pickle")


def test_run_and_report_files_hold_no_pickle(runs, tmp_path):
    from gradlab.report import build_report

    run = runs["hem"]
    parquet = sorted(run.rglob("*.parquet"))
    assert len(parquet) >= 2 and any(p.parent.name == "records" for p in parquet)
    for path in parquet:
        metadata = pq.read_schema(path).metadata or {}
        assert set(metadata) <= {b"pandas", b"ARROW:schema"}, (path, set(metadata))
        if b"pandas" in metadata:
            info = json.loads(metadata[b"pandas"])  # JSON, with no DataFrame.attrs
            assert not info.get("attributes") and "attrs" not in info
        for field in pq.read_schema(path):  # numbers and text only: a pickled object would be a binary column
            assert pa.types.is_integer(field.type) or pa.types.is_floating(field.type) \
                or pa.types.is_string(field.type) or pa.types.is_large_string(field.type) \
                or pa.types.is_boolean(field.type), (path, field)
    paths = build_report([run], tmp_path / "report", dpi=30)
    assert {p.suffix for p in files_under(tmp_path / "report")} == {".html", ".md", ".png"}
    assert paths.html.read_text().count("<script") == 0


# -- hostile names escaped in the report ------------------------------------------------------------------------
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'


def test_hostile_run_names_and_config_strings_are_escaped_in_the_report(runs, tmp_path):
    """A run folder named <script>alert(1)</script> (the '/' makes it two folders: two such runs are told apart
    by their parents, so their names hold the whole string) and a data.root that closes an attribute."""
    from gradlab.report import build_report

    made = []
    for parent in ("a", "b"):
        run = copy_run(runs["em" if parent == "a" else "hem"], tmp_path / parent / SCRIPT)
        config = run / "config.toml"
        root = IMG.replace('"', '\\"')
        config.write_text(config.read_text().replace('root = ""', f'root = "{root}"'))
        made.append(run)
    assert gradlab.analysis.load_configs(made)["run"].tolist() == [f"a/{SCRIPT}", f"b/{SCRIPT}"]
    assert gradlab.analysis.load_configs(made)["data.root"].tolist() == [IMG, IMG]
    paths = build_report(made, tmp_path / "out", title=SCRIPT, dpi=30)
    html = paths.html.read_text()
    assert SCRIPT not in html and "<script" not in html and "<img src=x" not in html
    assert html.count("<img ") == len(paths.figures)  # the only images are the embedded figures
    assert escape(SCRIPT) in html and escape(IMG) in html  # shown as text
    assert f"a/{escape(SCRIPT)}" in html
    markdown = paths.markdown.read_text()
    assert "<script" not in markdown and "<img src=x" not in markdown


# -- nothing written outside the chosen folder ------------------------------------------------------------------
HOSTILE_VALUES = ["../../evil", "/etc/passwd", "..", ".", "a/../../b", "~/x", "..\\..\\win", "x\x00y", "-rf",
                  ".hidden", "évil", "😈", "", "a" * 200]


def assert_safe_name(name: str, out: Path) -> None:
    assert name and name not in (".", "..") and not name.startswith((".", "-"))
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert (out / name).resolve().parent == out.resolve()


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_ablation_trial_names_stay_inside_out(value, tmp_path):
    from gradlab.ablate import Axis, expand

    trials, _ = expand(None, [Axis("data.root", (value, "plain"))])
    assert len(trials) == 2
    for trial in trials:
        assert_safe_name(trial.name, tmp_path)
        assert trial.name.startswith("root-")


def test_long_grid_values_give_trial_names_a_file_system_accepts(tmp_path):
    from gradlab.ablate import Axis, expand

    trials, _ = expand(None, [Axis("data.root", ("a" * 300, "b" * 300))])
    for trial in trials:
        assert len(trial.name.encode()) <= 255
        (tmp_path / trial.name).mkdir()


@pytest.mark.parametrize("value", [
    "../../evil", "évil", 'quote"and\\backslash', "tab\tnewline\n",
    "😈",
])
def test_grid_values_reach_the_trial_config_unchanged(value):
    from gradlab.ablate import Axis, expand

    trials, _ = expand(None, [Axis("data.root", (value, "plain"))])
    assert trials[0].config.data.root == value


@settings(max_examples=50, deadline=None)
@given(values=st.lists(st.text(st.characters(blacklist_characters=","), min_size=1, max_size=40), min_size=1,
                       max_size=3, unique=True),
       key=st.sampled_from(["data.root", "model.backbone", "model.pretrained"]))
def test_ablation_trial_names_from_any_grid_text_stay_inside_out(values, key):
    from gradlab.ablate import parse_axis
    from gradlab.ablate.grid import expand

    out = Path("/tmp/ablation-out")
    try:
        axis = parse_axis(f"{key}={','.join(values)}")
        trials, _ = expand(None, [axis])
    except ConfigError:
        return  # a malformed or repeated value, or two values that make the same name: refused
    for trial in trials:
        assert_safe_name(trial.name, out)


def test_report_out_writes_only_under_out(runs, tmp_path):
    from gradlab.report import build_report

    run = copy_run(runs["em"], tmp_path / "runs" / "em")
    (run / "report").mkdir()
    shutil.copy(next(iter(sorted(run.rglob("*.parquet")))), run / "attribution.parquet")  # any table
    png = build_report([run], tmp_path / "first", dpi=30).figures[0]
    shutil.copy(png, run / "report" / "attribution_profile.png")  # included (copied) by the report
    before = snapshot(tmp_path)
    cwd = os.getcwd()
    os.chdir(tmp_path / "runs")
    try:
        assert main(["report", str(run), "--out", str(tmp_path / "out" / "nested")]) == 0
    finally:
        os.chdir(cwd)
    after = snapshot(tmp_path)
    changed = {p for p in after if before.get(p) != after[p]}
    assert changed and all((tmp_path / "out" / "nested") in p.parents for p in changed), changed


def test_attribute_out_writes_only_under_out(runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(runs["em"], run)
    before = snapshot(tmp_path)
    out = tmp_path / "attr"
    code = main(["attribute", str(run), "--out", str(out), "--images", "1", "--method", "gradient-x-activation"])
    assert code == 0, capsys.readouterr().err
    after = snapshot(tmp_path)
    changed = {p for p in after if before.get(p) != after[p]}
    assert changed and all(out in p.parents for p in changed), changed


@pytest.mark.parametrize("name", ["../../evil", "/abs/evil", "a/../../b", SCRIPT])
def test_record_part_names_cannot_escape_the_run_directory(name, tmp_path):
    from tests.instrument.conftest import make_net

    run_dir = tmp_path / "deep" / "run"
    net = make_net()
    x = torch.randn(1, 3, 4, 4)
    with gradlab.watch(net, run_dir=run_dir, run=name, flush_every=1) as rec:
        for step in range(2):
            net(x).sum().backward()
            rec.step(step)
    written = files_under(tmp_path)
    parts = [p for p in written if p.parent == run_dir / "records" and p.name.startswith("part-r000-")]
    assert parts and set(written) - set(parts) == {run_dir / "config.toml", run_dir / "meta.json"}  # a new run dir
    assert set(gradlab.load_records(run_dir)["run"]) == {name}  # the name is data, never a path
