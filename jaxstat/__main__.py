"""Command line: `python -m jaxstat tour` (a tour of every capability at small sizes) and
`python -m jaxstat bench [names] [--quick]` (the benchmarks, from a source checkout)."""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys

from . import _tour


TOUR = {name: title for name, (title, _) in _tour.PARTS.items()}


def tour(names: list[str], out: pathlib.Path | str = "jaxstat-tour") -> list[_tour.Check]:
    """Run the tour parts `names` (all when empty): a progress display, the results table (each
    check: what was computed, its value, the reference, pass/fail) and figures saved in `out`."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table

    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    console = Console()
    checks = []
    chosen = [n for n in _tour.PARTS if not names or n in names]
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as progress:
        for name in chosen:
            title, fn = _tour.PARTS[name]
            task = progress.add_task(f"== {name}: {title}", total=1)
            checks += fn(out)
            progress.update(task, completed=1)
    table = Table(title="jaxstat tour: every number against its reference")
    for column in ("part", "what was computed", "value", "reference", "check"):
        table.add_column(column, overflow="fold")
    for c in checks:
        mark = "[green]pass[/green]" if c.ok else "[red]FAILS[/red]"
        table.add_row(c.part, c.what, c.value, c.reference, mark)
    console.print(table)
    passed = sum(c.ok for c in checks)
    console.print(
        f"{passed} of {len(checks)} checks pass; figures in {out.resolve()}: "
        + ", ".join(sorted(f.name for f in out.glob("*.png")))
    )
    return checks


def _checkout_runner() -> pathlib.Path | None:
    """`benchmarks/run.py` of the source checkout this package was imported from, if any."""
    script = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"
    return script if script.exists() else None


def bench(args: list[str]) -> int:
    """Run `benchmarks/run.py` (one process per benchmark) with `args`; it validates the names."""
    script = _checkout_runner()
    if script is None:
        sys.exit(
            "`jaxstat bench` needs a source checkout of jaxstat: the benchmarks, their peers and "
            "their results table live in the repository's benchmarks/ folder, not in the installed "
            'package. Clone the repository, `pip install -e ".[bench]"` there, and run '
            "`jaxstat bench` (or `python benchmarks/run.py`) from it."
        )
    return subprocess.run([sys.executable, str(script), *args]).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jaxstat", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("tour", help="run a short demonstration of every capability")
    t.add_argument("names", nargs="*", help=f"parts to run (default all): {', '.join(TOUR)}")
    t.add_argument("--out", default="jaxstat-tour", help="folder for the figures (PNG)")
    b = sub.add_parser(
        "bench", help="run the benchmarks (source checkout): [names] [--quick] [--list]"
    )
    b.add_argument("args", nargs="*", help="benchmark names (default all)")
    ns, extra = parser.parse_known_args(argv)
    if ns.command == "tour":
        # The command's own process: compiled programs go to JAX's persistent compilation cache,
        # so a second tour starts warm. (Not set by `tour()` itself, which may run inside a user's
        # process, whose JAX configuration is theirs.)
        unknown = [n for n in ns.names if n not in TOUR]
        if unknown or extra:
            parser.error(f"unknown tour part(s) {unknown + extra}; choose from: {', '.join(TOUR)}")
        import jax

        cache = pathlib.Path.home() / ".cache" / "jaxstat" / "jax"
        jax.config.update("jax_compilation_cache_dir", str(cache))
        # Every program, however small: the tour's many small eager operations each compile in
        # a fraction of a second, and together they are a large part of a cold start.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        checks = tour(ns.names, ns.out)
        return 0 if all(c.ok for c in checks) else 1
    return bench(ns.args + extra)


if __name__ == "__main__":
    sys.exit(main())
