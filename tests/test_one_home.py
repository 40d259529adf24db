"""Each fact of docs/design.md's table has one home: its literal appears in no other module of gradlab/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from gradlab import records, run_dir
from gradlab.layers import EMSpec

PACKAGE = Path(run_dir.__file__).parent

FACTS = [  # (the literal, the one module that may write it): the file names of a run directory (a folder name
    # such as "records" is also a plain word), and the status tuples (a status such as "no_grad" also names a flag)
    *[(name, "run_dir.py") for name in (run_dir.CONFIG, run_dir.META, run_dir.METRICS, run_dir.CHECKPOINT,
                                        run_dir.ATTRIBUTION, run_dir.REPORT_HTML, run_dir.REPORT_MD,
                                        run_dir.ATTRIBUTION_PROFILE, run_dir.ATTRIBUTION_INPUTS, run_dir.PARTS)],
    (tuple(records.NO_GRAD_STATUSES), "records.py"),
    (tuple(records.COLUMNS), "records.py"),
]


def literals() -> dict[str, list[tuple[str, str | tuple]]]:
    """Module path → its string constants and its tuples/lists of string constants (docstrings left out)."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body
                      and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        found = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                found.append(node.value)
            elif isinstance(node, (ast.Tuple, ast.List)) and node.elts and all(
                    isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
                found.append(tuple(e.value for e in node.elts))
        out[str(path.relative_to(PACKAGE))] = found
    return out


LITERALS = literals()


@pytest.mark.parametrize(("literal", "home"), FACTS)
def test_a_file_name_a_status_tuple_or_the_columns_are_written_only_in_their_home(literal, home):
    assert [m for m, found in LITERALS.items() if literal in found] == [home]


def test_the_em_layer_defaults_are_the_specs():
    from gradlab.train.config import Config

    m = Config().model
    assert (m.kind, m.bases, m.iterations, m.step_size, m.kernel, m.temperature, m.normalize) == (
        EMSpec.kind, EMSpec.bases, EMSpec.iterations, EMSpec.step_size, EMSpec.kernel, EMSpec.temperature,
        EMSpec.normalize)
