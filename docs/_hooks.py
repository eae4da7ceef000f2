"""mkdocs hook: put executed copies of `notebooks/*.ipynb` in `docs/examples/`, so the examples
show their figures.

A copy newer than its source is reused (the test suite writes one when it executes a notebook);
otherwise the notebook is executed here with nbclient, at the small sizes the notebooks use.
`JAXSTAT_DOCS_EXECUTE=0` copies unexecuted notebooks instead (a quick check of the site's text).
"""

import os
import pathlib

import nbclient
import nbformat


ROOT = pathlib.Path(__file__).parents[1]
SOURCE = ROOT / "notebooks"
TARGET = ROOT / "docs" / "examples"


def on_pre_build(config, **kwargs):
    TARGET.mkdir(exist_ok=True)
    for path in sorted(SOURCE.glob("*.ipynb")):
        out = TARGET / path.name
        if out.exists() and out.stat().st_mtime >= path.stat().st_mtime:
            continue
        nb = nbformat.read(path, as_version=4)
        if os.environ.get("JAXSTAT_DOCS_EXECUTE", "1") == "0":
            nbformat.write(nb, out)
            continue
        os.environ.setdefault("MPLBACKEND", "Agg")
        nbclient.NotebookClient(
            nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(SOURCE)}}
        ).execute()
        nbformat.write(nb, out)
