"""Every notebook in notebooks/ runs top to bottom with nbclient, and is stored without outputs.

The kernel is the interpreter running the tests: a kernel spec manager with no kernel folders falls back to
ipykernel's built-in spec, whose command is `sys.executable -m ipykernel_launcher`. So nothing has to be installed
with `jupyter kernelspec`, and a `python3` kernel spec in the user's or the system's Jupyter folders (which may
point at another Python) is never picked up: on a fresh CI machine the venv alone is enough.

Each notebook runs in its own temporary folder (its working directory, TMPDIR, where notebooks put the runs they
train, and IPYTHONDIR) with one torch thread, since `make test` runs two pytest workers on two cores. Outputs
are checked for at least one PNG figure: with no widget front end attached (as here), the notebooks must fall
back to static figures.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# Code run after a notebook, moving its widget controls as a user would. Observers run synchronously, so an
# error while redrawing fails the cell; the figures must be redrawn in place (the cell itself shows nothing).
EXERCISES = {
    "02_explore_run.ipynb": "step.value = steps[0]\nquantity.value = quantities[0]\nimage.value = image.max\n"
                            "layer.value = layers[-1]",
}
CELL_TIMEOUT_S = 120  # a notebook runs in under a minute; this is for a slow CI machine
STARTUP_TIMEOUT_S = 60


def kernel_manager() -> AsyncKernelManager:
    """A kernel manager for ipykernel in this interpreter (see the module docstring)."""
    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[]))


def figures(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in output.get("data", {}) for cell in nb.cells for output in cell.get("outputs", []))


def test_kernel_runs_this_interpreter():
    argv = kernel_manager().kernel_spec.argv
    assert argv[:3] == [sys.executable, "-m", "ipykernel_launcher"], argv


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, cell in enumerate(nb.cells)
             if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)]
    assert not dirty, (f"{path.name}: code cells {dirty} hold outputs or execution counts; clear them with "
                       f"`jupyter nbconvert --clear-output --inplace {path.relative_to(ROOT)}`")
    code = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    assert "import gradlab" in code or "from gradlab" in code, f"{path.name} does not use gradlab"
    assert "widgets" not in nb.metadata, (f"{path.name} stores widget state in its metadata; clear it with "
                                          "`jupyter nbconvert --clear-output --ClearMetadataPreprocessor.enabled=True "
                                          f"--inplace {path.relative_to(ROOT)}`")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / ".ipython"))  # no startup files from the user's profile
    nb = nbformat.read(path, as_version=4)
    if path.name in EXERCISES:
        nb.cells.append(nbformat.v4.new_code_cell(EXERCISES[path.name]))
    client = NotebookClient(nb, km=kernel_manager(), timeout=CELL_TIMEOUT_S, startup_timeout=STARTUP_TIMEOUT_S,
                            shutdown_kernel="immediate", resources={"metadata": {"path": str(tmp_path)}})
    # raises nbclient.exceptions.CellExecutionError at the first failing cell; cleanup_kc: we own the kernel
    # manager, so nbclient would otherwise leave the kernel running
    client.execute(cleanup_kc=True)
    assert figures(nb) > 0, (f"{path.name} displayed no figure as image/png: without a widget front end it must "
                             "fall back to static figures (and `%matplotlib inline` must be on)")
    if path.name in EXERCISES:
        assert nb.cells[-1].outputs == [], f"moving the controls of {path.name} printed or appended output"


def test_readme_links_every_notebook():
    readme = (ROOT / "README.md").read_text()
    missing = [p.name for p in NOTEBOOKS if f"notebooks/{p.name}" not in readme]
    assert not missing, f"README.md has no line for {missing}: add one to its Notebooks section"
