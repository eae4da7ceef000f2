"""Every notebook in `notebooks/` runs top to bottom without error (small sizes)."""

import os
import pathlib

import pytest


NOTEBOOKS = sorted((pathlib.Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    env = {"MPLBACKEND": "Agg", "JAXSTAT_NOTEBOOK_TEST": "1"}
    os.environ.update(env)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    # Keep the executed copy for the documentation site (docs/_hooks.py reuses it instead of
    # executing the notebook again).
    examples = path.parents[1] / "docs" / "examples"
    examples.mkdir(exist_ok=True)
    nbformat.write(nb, examples / path.name)
