"""Every Python code block of the README runs as written (a fresh process, default float32)."""

import pathlib
import re
import subprocess
import sys

import pytest


README = pathlib.Path(__file__).parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_an_example():
    assert BLOCKS, "the README shows no Python example"


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index, tmp_path):
    # A subprocess: the README's reader has float32 (the suite enables float64) and a fresh JAX.
    script = tmp_path / "block.py"
    script.write_text(BLOCKS[index])
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert out.returncode == 0, f"README block {index} failed:\n{out.stdout}\n{out.stderr}"
