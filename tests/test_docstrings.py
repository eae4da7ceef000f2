"""Every example in a docstring runs as written.

An example is a fenced ```python block in a module, class or function docstring of `jaxstat`.
Each example imports what it uses (a reader copies it into a fresh interpreter); the blocks of
one docstring run in order in one namespace, as a reader would run them one after the other.
"""

import ast
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest


PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "jaxstat"
FENCE = re.compile(r"```python[ \t]*\n(.*?)```", re.S)


def _examples():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        nodes = [tree] + [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        ]
        for node in nodes:
            doc = ast.get_docstring(node, clean=True)
            blocks = FENCE.findall(doc or "")
            if blocks:
                name = getattr(node, "name", "<module>")
                where = f"{path.relative_to(PACKAGE.parent)}:{name}"
                yield pytest.param(where, [textwrap.dedent(b) for b in blocks], id=where)


# Examples that take about 10 s or more here (many Newton starts, training loops): run with
# `pytest -m slow tests/test_docstrings.py`, so the default suite stays within its time budget.
SLOW = {
    "jaxstat/morse/_critical.py:find_critical_points",
    "jaxstat/morse/_critical.py:find_all_critical_points",
    "jaxstat/morse/_node.py:NeuralODE",
    "jaxstat/quotient/_derive.py:symmetry",
    "jaxstat/strata/_fit.py:Validation",
    "jaxstat/strata/_fit.py:fit",
    "jaxstat/strata/_transform.py:partition",
    "jaxstat/supragraph/_adjoint.py:gradient",
    "jaxstat/supragraph/_network.py:StationaryNetwork",
    "jaxstat/supragraph/_penalty.py:penalized_solve",
}
EXAMPLES = [
    pytest.param(*p.values, id=p.id, marks=[pytest.mark.slow] if p.id in SLOW else [])
    for p in _examples()
]


def test_examples_were_found():
    """The collector sees the examples (a broken pattern would silently test nothing), and every
    name marked slow is one of them."""
    assert len(EXAMPLES) > 80
    assert SLOW <= {p.id for p in EXAMPLES}


@pytest.mark.parametrize("where, blocks", EXAMPLES)
def test_docstring_example_runs(where, blocks):
    namespace = {"__name__": "__main__"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{where}[{i}]", "exec"), namespace)


def test_subpackages_are_attributes_of_a_bare_import():
    """`import jaxstat; jaxstat.graphs.Graph` works in a fresh interpreter (examples rely on it),
    and a misspelt name is still an AttributeError."""
    code = (
        "import jaxstat, sys\n"
        "assert 'jaxstat.quotient' not in sys.modules\n"
        "assert jaxstat.graphs.Graph.__name__ == 'Graph'\n"
        "assert sorted(p for p in jaxstat._SUBPACKAGES if hasattr(jaxstat, p)) == "
        "sorted(jaxstat._SUBPACKAGES)\n"
        "assert not hasattr(jaxstat, 'graph')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
