"""The package as a user installs it: build the wheel, install it into a fresh venv outside the repository (the
pinned torch first, then the wheel with its dependencies from the package index), and from a folder that is not
the repository train the `demo` preset briefly, list the presets and write a report. Nothing of the source tree
is importable there, so this fails if a preset, a data file or a dependency is missing from the wheel.

Marked `wheel`: about a minute on two CPU cores with a warm pip cache (`-m "not wheel"` deselects it). CI runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import gradlab

pytestmark = pytest.mark.wheel

REPO = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"  # the pin of the Makefile
#: what the wheel is built from; anything else in the repository stays out of the build
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "gradlab")
TINY = ["data.size=32", "data.train_length=32", "data.val_length=8", "train.batch_size=4", "train.steps=5",
        "model.bases=4", "model.iterations=2", "train.eval_every=5", "train.checkpoint_every=5", "record.every=1"]


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@dataclass
class Installed:
    wheel: Path
    bin: Path  # the fresh venv's bin/
    env: dict[str, str]  # the environment to run it in (no PYTHONPATH, no VIRTUAL_ENV)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    """The wheel, built and installed into a fresh venv the ordinary way."""
    root = tmp_path_factory.mktemp("wheel")
    assert REPO not in root.parents
    # no PYTHONDONTWRITEBYTECODE either: installed with --no-compile (pip would spend ~50 s compiling torch), the
    # first command compiles what it imports and the later ones reuse it, as on a user's machine
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE")}
    env |= {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}

    source = root / "src"  # a copy, so the build leaves no build/ or *.egg-info in the working tree
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    build = run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", root / "dist",
                 source], root, env)
    assert "warning" not in (build.stdout + build.stderr).lower(), build.stdout + build.stderr  # e.g. the license
    wheel = next((root / "dist").glob("gradlab-*.whl"))

    venv = root / "venv"
    run([sys._base_executable, "-m", "venv", venv], root, env)
    python = venv / "bin" / "python"
    # the pinned torch first (as the Makefile and README do), then the wheel; pip's cache is the user's own
    run([python, "-m", "pip", "install", "-qq", "--no-compile", TORCH], root, env)
    run([python, "-m", "pip", "install", "-qq", "--no-compile", wheel], root, env)
    return Installed(wheel, venv / "bin", env)


def test_the_wheel_holds_the_presets_the_license_and_the_type_marker(installed, tmp_path):
    bin_dir, env = installed.bin, installed.env
    probe = ("import gradlab, importlib.metadata as m; d = m.distribution('gradlab'); "
             "print(gradlab.__file__); print(gradlab.__version__); print(d.metadata['License-Expression']); "
             "print(sorted(str(f) for f in d.files if 'configs' in str(f) or 'py.typed' in str(f) "
             "or 'LICENSE' in str(f)))")
    lines = run([bin_dir / "python", "-c", probe], tmp_path, env).stdout.splitlines()
    assert Path(lines[0]).is_relative_to(bin_dir.parent) and REPO not in Path(lines[0]).parents
    assert lines[1] == gradlab.__version__ and lines[2] == "MIT"
    assert lines[3] == str(sorted([f"gradlab-{gradlab.__version__}.dist-info/licenses/LICENSE",
                                   "gradlab/configs/ablation.toml", "gradlab/configs/demo.toml",
                                   "gradlab/configs/voc.toml", "gradlab/py.typed"]))
    presets = run([bin_dir / "gradlab", "train", "--list-presets"], tmp_path, env).stdout.split("\n")
    assert [line.split()[0] for line in presets if line] == ["ablation", "demo", "voc"]


def test_train_demo_and_report_from_the_installed_wheel(installed, tmp_path):
    bin_dir, env = installed.bin, installed.env
    sets = [a for s in TINY for a in ("--set", s)]
    outside_git = env | {"GIT_CEILING_DIRECTORIES": str(tmp_path)}  # however the temporary folder is placed
    out = run([bin_dir / "gradlab", "train", "demo", *sets, "--out", "run", "--quiet"], tmp_path, outside_git)
    assert out.stdout.strip() == "run directory: run"
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["status"] == "complete" and meta["gradlab_version"] == gradlab.__version__
    assert meta["git_revision"] is None  # the user's folder is no git repository (gradlab's source tree is one)
    report = run([bin_dir / "gradlab", "report", "run"], tmp_path, env)
    html = Path(report.stdout.strip())
    assert html == Path("run/report/report.html") and (tmp_path / html).is_file()
    assert (tmp_path / "run" / "report" / "report.md").read_text().startswith("# gradlab report: run")
    bad = subprocess.run([bin_dir / "gradlab", "train", "demoo"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr == ("gradlab: error: no config file 'demoo': give a TOML path or a "
                                                  "preset (ablation, demo, voc)\n")


def test_the_wheel_file_holds_the_package_and_its_data_only(installed):
    names = zipfile.ZipFile(installed.wheel).namelist()
    assert {"gradlab/configs/demo.toml", "gradlab/py.typed"} <= set(names)
    assert not any(n.startswith(("tests/", "analyses/", "benchmarks/", "notebooks/")) for n in names)
