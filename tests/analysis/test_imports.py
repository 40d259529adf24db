from __future__ import annotations

import subprocess
import sys

import pytest


def _modules_after(statement: str, prefixes: tuple[str, ...]) -> list[str]:
    """The modules starting with one of `prefixes` loaded by `statement` in a fresh interpreter (torch's as one)."""
    code = (f"import sys; {statement}; print(sorted({{m.split('.')[0] if m.startswith('torch') else m "
            f"for m in sys.modules if m.startswith({prefixes!r})}}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return eval(out)


def test_analysis_imports_no_torch_no_layers_no_models_and_no_training_code():
    assert _modules_after("import gradlab.analysis", ("torch", "gradlab.layers", "gradlab.instrument",
                                                      "gradlab.models", "gradlab.train")) == []


@pytest.mark.parametrize("package", ["gradlab.layers", "gradlab.instrument", "gradlab.taps", "gradlab.records"])
def test_each_package_imports_first_in_a_fresh_interpreter(package):
    """No import cycle: each imports on its own, whatever was imported before (gradlab's root loads lazily)."""
    assert package in _modules_after(f"import {package}", ("gradlab",))


def test_the_layers_know_nothing_of_the_recorder():
    assert _modules_after("import gradlab.layers", ("gradlab.instrument",)) == []
