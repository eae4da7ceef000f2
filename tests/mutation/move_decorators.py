"""Move the `jit` decorators of a module's top-level functions below the module, in place.

mutmut 3 does not mutate decorated functions. For a module whose public functions carry
`@jit(...)` / `@eqx.filter_jit` / `@jax.jit`, this rewrites (a copy of) the module so that

    @jit(arrays=("t",))
    def f(...): ...

becomes

    def f(...): ...
    ...
    f = jit(arrays=("t",))(f)   # appended at the end of the module

which defines the same wrapped function (every decorator here is a plain function of the
function), while mutmut now sees an undecorated `def` and puts its trampoline inside. Only
decorators whose text contains `jit` are moved, and only from functions defined at the top
level; anything else (`custom_jvp`, properties, methods) is left alone. Decorator order is
kept: `@a @b def f` becomes `f = a(b(f))`.

Usage: python tests/mutation/move_decorators.py PATH [PATH...]
"""

import ast
import pathlib
import sys


def move(source: str) -> tuple[str, list[str]]:
    """The module's text with its top-level `jit` decorators moved, and the functions moved."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    drop: set[int] = set()
    appended = []
    moved = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or not node.decorator_list:
            continue
        texts = [ast.get_source_segment(source, d) for d in node.decorator_list]
        if not all("jit" in t for t in texts):
            continue
        for d in node.decorator_list:
            # The decorator's lines, and the "@" before it.
            drop.update(range(d.lineno - 1, d.end_lineno))
        wrapped = node.name
        for t in reversed(texts):
            wrapped = f"{t}({wrapped})"
        appended.append(f"{node.name} = {wrapped}\n")
        moved.append(node.name)
    out = "".join(line for i, line in enumerate(lines) if i not in drop)
    if appended:
        out = out.rstrip("\n") + "\n\n\n# Decorators moved here for mutation testing.\n"
        out += "".join(appended)
    return out, moved


if __name__ == "__main__":
    for name in sys.argv[1:]:
        path = pathlib.Path(name)
        text, moved = move(path.read_text())
        path.write_text(text)
        print(f"{path}: moved the decorators of {', '.join(moved) or 'no function'}")
