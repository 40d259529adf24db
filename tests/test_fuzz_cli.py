"""The command line under random input: argv, `--set` keys and values, TOML documents and run folders for every
command. Each example ends with exit 0, or with exit 2 and exactly one `gradlab: error:` line; never a
traceback (an exception escaping `main` fails the test), and no file appears outside the given --out.

Training and ablations are replaced by stubs that check what they were given (a validated Config, a grid that
expands): the parsing is what is fuzzed here; tests/test_bad_input_matrix.py and the data tests cover what a
run reads while it trains. Bounded by `hypothesis` settings to well under a minute.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gradlab.ablate
import gradlab.demo
import gradlab.train
from gradlab.cli import main
from gradlab.run_dir import flat_keys
from gradlab.train.config import INT64, Config, key_fields, load_config

KEYS = list(key_fields())
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

keys = st.one_of(st.sampled_from(KEYS), st.text(min_size=0, max_size=20),
                 st.sampled_from(KEYS).map(lambda k: k.upper()), st.sampled_from(KEYS).map(lambda k: k + ".x"))
numbers = st.one_of(st.integers(), st.integers(min_value=2**62, max_value=2**80), st.integers(max_value=-1),
                    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e308, 1e-320, -0.0]))
values = st.one_of(numbers.map(str), st.text(max_size=30), st.sampled_from([
    "true", "false", '"x"', "[1, 2]", "{a = 1}", "'single'", '"\\ud800"', "1_000", "0x10", "inf", "nan", "",
    "all", '"all"', "em", "hem", "none", "voc", "1e999", "9" * 40]))
overrides = st.lists(st.tuples(keys, values).map(lambda kv: f"{kv[0]}={kv[1]}") | st.text(max_size=15), max_size=4)
toml_documents = st.one_of(
    st.text(max_size=200),
    st.lists(st.tuples(keys, values), max_size=6).map(lambda kvs: "\n".join(f"{k} = {v}" for k, v in kvs)),
    st.lists(st.tuples(st.sampled_from(["data", "model", "train", "record", "x", ""]), keys, values),
             max_size=6).map(lambda rows: "\n".join(f"[{t}]\n{k.split('.')[-1]} = {v}" for t, k, v in rows)),
)
paths = st.one_of(st.sampled_from(["runs/none", ".", "", "a/../b", "/dev/null", "\x00x", "r" * 300, "f.txt",
                                   "f.txt/sub"]), st.text(max_size=20))


@pytest.fixture
def stubs(monkeypatch):
    """Training and ablations that only check their inputs (a real run is not what is fuzzed)."""
    def train(config, run_dir, **_):
        assert isinstance(config, Config)
        ints = [v for v in flat_keys(asdict(config)).values() if isinstance(v, int)]
        assert all(INT64[0] <= v <= INT64[1] for v in ints)  # numpy and torch can hold every number
        return gradlab.train.RunDirectory(run_dir)

    def run_ablation(config, axes, seeds=1, out="runs/ablation", *, overrides=(), quick=False, **_):
        gradlab.ablate.expand(config, axes, seeds, overrides, quick=quick)
        raise gradlab.GradlabError("stub: the grid expanded")  # not a real ablation: stop with one line

    def run_demo(out="runs/demo", steps=None):
        load_config("demo", [f"train.steps={steps}"] if steps is not None else [])

    monkeypatch.setattr(gradlab.train, "train", train)
    monkeypatch.setattr(gradlab.ablate, "run_ablation", run_ablation)
    monkeypatch.setattr(gradlab.demo, "run_demo", run_demo)


def run_cli(argv: list[str], files: dict[str, str] | None = None) -> tuple[int, list[str], set[Path]]:
    """(exit status, stderr lines, files created) of `gradlab ARGV` in a fresh folder holding `files`."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for name, text in (files or {}).items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text, encoding="utf-8", errors="surrogatepass")
        before = set(root.rglob("*"))
        err, cwd = io.StringIO(), os.getcwd()
        os.chdir(root)
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                try:
                    status = main(argv)
                except SystemExit as stop:  # argparse's usage errors
                    status = stop.code
        finally:
            os.chdir(cwd)
        created = {p.relative_to(root) for p in set(root.rglob("*")) - before}
    return status, err.getvalue().splitlines(), created


def check(status: int, err: list[str], created: set[Path], out: str | None = None) -> None:
    assert status in (0, 2), (status, err)
    assert all(line.startswith(("gradlab: error: ", "gradlab: warning: ")) for line in err), err
    if status == 2:
        assert [line for line in err if line.startswith("gradlab: error: ")] == err[-1:], err
    if out:  # the folder, what is inside it, and the folders its path names on the way ("a" of "a/../b")
        parts = Path(out).parts
        leading = {Path(os.path.normpath(os.path.join(*parts[:i]))) for i in range(1, len(parts) + 1)}
        folder = Path(os.path.normpath(out))
        assert all(p in leading or folder in p.parents for p in created), created
    else:
        assert not created, created


@FUZZ
@given(config=st.one_of(st.none(), st.sampled_from(["demo", "ablation", "voc", "cfg.toml", "nope"])),
       sets=overrides, document=toml_documents, resume=st.booleans(), out=st.one_of(st.none(), paths))
def test_train(stubs, config, sets, document, resume, out):
    argv = ["train", *([config] if config else []), *(a for s in sets for a in ("--set", s))]
    argv += ["--resume"] * resume + (["--out", out] if out is not None else [])
    check(*run_cli(argv, {"cfg.toml": document}), out=out)


@FUZZ
@given(grid=st.lists(st.tuples(keys, st.lists(values, max_size=3)).map(lambda kv: f"{kv[0]}={','.join(kv[1])}"),
                     max_size=3), seeds=st.integers(-3, 2**70).map(str) | st.text(max_size=5),
       workers=st.integers(-2, 2**70).map(str), sets=overrides, out=paths)
def test_ablate(stubs, grid, seeds, workers, sets, out):
    argv = ["ablate", "ablation", *(a for g in grid for a in ("--grid", g)), "--seeds", seeds, "--workers", workers,
            *(a for s in sets for a in ("--set", s)), "--out", out]
    check(*run_cli(argv), out=out)


@FUZZ
@given(command=st.sampled_from(["report", "compare", "attribute"]), runs=st.lists(paths, min_size=1, max_size=3),
       options=st.lists(st.sampled_from(["--by", "--metric", "--quantity", "--fraction", "--images", "--method",
                                         "--title"]).flatmap(lambda o: st.tuples(st.just(o), values)), max_size=3),
       out=paths, meta=st.one_of(st.text(max_size=40), st.sampled_from(
           ["{}", "[]", '{"status": 3}', '{"status": "complete"', "null", '"x"'])), config=toml_documents)
def test_readers_of_run_folders(command, runs, options, out, meta, config):
    """report / compare / attribute over missing paths and over a folder whose config.toml and meta.json are
    random (truncated, of the wrong JSON type, from a future version)."""
    files = {"run/config.toml": config, "run/meta.json": meta}
    argv = [command, "run", *(runs[1:] if command != "attribute" else [])] + [a for o in options for a in o]
    if command != "compare":
        argv += ["--out", out]
    check(*run_cli(argv, files), out=out if command != "compare" else None)


@FUZZ
@given(steps=st.one_of(st.integers(-5, 2**70).map(str), st.text(max_size=6)), out=paths)
def test_demo(stubs, steps, out):
    check(*run_cli(["demo", "--steps", steps, "--out", out]), out=out)
