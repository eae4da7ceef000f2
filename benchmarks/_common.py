"""Shared benchmark utilities: timing, compiled-memory figures, machine description, results I/O.

Every benchmark script exposes `run(quick: bool = False) -> Table` and can be run on its own
(`python benchmarks/bench_X.py [--quick]`) or through `python benchmarks/run.py`. Results are JSON
files in `benchmarks/results/` (one per benchmark and platform); `benchmarks/README.md` is
regenerated from them, so the table is always what was last measured.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pathlib
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import jax


RESULTS = pathlib.Path(__file__).parent / "results"
# The 1-minute load average when the benchmark process started (before it loaded the machine
# itself): figures are only comparable on a quiet machine, load well below the core count.
LOAD_AT_START = round(os.getloadavg()[0], 2)


def timeit_interleaved(calls: dict, rounds: int = 61) -> dict:
    """Median wall time in seconds of each `fn(*args)` in `calls` (name -> `(fn, args)`), timed in
    interleaved rounds (every call once per round, in an order rotated between rounds) after a
    warm-up call of each: a slow spell of the machine then slows every call alike, and the ratios
    of the medians stay put where separate blocks of repeats would each see a different spell."""
    for fn, args in calls.values():
        jax.block_until_ready(fn(*args))
    names = list(calls)
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn, args = calls[name]
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def timeit(fn: Callable, *args, repeat: int = 7, warmup: int = 1, number: int = 1) -> float:
    """Median wall time in seconds of `fn(*args)` (results blocked until ready), after `warmup`
    calls that absorb compilation."""
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            out = fn(*args)
        jax.block_until_ready(out)
        times.append((time.perf_counter() - t0) / number)
    return statistics.median(times)


def compiled_memory(fn: Callable, *args) -> dict[str, int]:
    """XLA's own memory figures (bytes) for `jax.jit(fn)(*args)`: temporaries, arguments, outputs.

    `temp` is the scratch memory the compiled program needs beyond its inputs and outputs: the
    figure that grows when a solver stores its iterations for backpropagation.
    """
    compiled = jax.jit(fn).lower(*args).compile()
    m = compiled.memory_analysis()
    if m is None:  # some backends report nothing
        return {"temp": -1, "argument": -1, "output": -1}
    return {
        "temp": int(m.temp_size_in_bytes),
        "argument": int(m.argument_size_in_bytes),
        "output": int(m.output_size_in_bytes),
    }


def machine() -> dict[str, Any]:
    """A short description of where the benchmark ran."""
    dev = jax.devices()[0]
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "platform": dev.platform,
        "device": getattr(dev, "device_kind", str(dev)),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "jax": jax.__version__,
        "python": sys.version.split()[0],
        "load": LOAD_AT_START,
    }


@dataclasses.dataclass
class Table:
    """One benchmark's results: a title, what was compared, and rows of figures."""

    name: str
    title: str
    description: str
    columns: list[str]
    rows: list[list[Any]] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def add(self, *row: Any) -> None:
        if len(row) != len(self.columns):
            raise ValueError(f"row has {len(row)} entries, table has {len(self.columns)} columns")
        self.rows.append(list(row))
        print("  " + " | ".join(_fmt(v) for v in row), flush=True)

    def save(self, quick: bool = False) -> pathlib.Path:
        """Write `results/<name>-<platform>[-quick].json` and regenerate the README table."""
        RESULTS.mkdir(exist_ok=True)
        info = machine()
        suffix = "-quick" if quick else ""
        path = RESULTS / f"{self.name}-{info['platform']}{suffix}.json"
        data = dataclasses.asdict(self) | {
            "machine": info,
            "date": datetime.date.today().isoformat(),
            "quick": quick,
        }
        path.write_text(json.dumps(data, indent=1, default=_jsonable) + "\n")
        if not quick:
            write_readme()
        return path


def _jsonable(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v == 0 or 1e-3 <= abs(v) < 1e5:
            return f"{v:.4g}"
        return f"{v:.3e}"
    return str(v)


HEADER = """# Benchmarks

Generated by `python benchmarks/run.py` from the JSON files in `benchmarks/results/`; do not edit by
hand. Each table compares jaxstat with a peer **in the same run on the same machine**: quote the
ratios, not the absolute times. Timings are medians of repeated calls after a warm-up call that
absorbs compilation. `ratio < 1` means jaxstat is faster unless a column says otherwise.

Install the peers with `pip install -e ".[bench]"` and `bash benchmarks/setup_peers.sh` (clawpack
needs gfortran), then `python benchmarks/run.py` (everything) or `python benchmarks/run.py graphs`
(one capability). `--quick` runs small sizes and writes `*-quick.json` files that this page ignores.
"""


def write_readme() -> pathlib.Path:
    out = [HEADER]
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        if data.get("quick"):
            continue
        m = data["machine"]
        where = f"{m['platform']}: {m['device']}" if m["platform"] != "cpu" else "cpu"
        out.append(f"## {data['title']} ({where})\n")
        out.append(
            f"_Ran {data['date']} on {m['cpu']} ({m['cores']} cores), "
            f"{m['device']}, jax {m['jax']}, load average {m.get('load', 'not recorded')}._\n"
        )
        out.append(data["description"].strip() + "\n")
        out.append("| " + " | ".join(data["columns"]) + " |")
        out.append("|" + "---|" * len(data["columns"]))
        for row in data["rows"]:
            out.append("| " + " | ".join(_fmt(v) for v in row) + " |")
        out.append("")
        for note in data.get("notes", []):
            out.append(f"- {note}")
        out.append("")
    readme = pathlib.Path(__file__).parent / "README.md"
    readme.write_text("\n".join(out).rstrip() + "\n")
    return readme


def main(run: Callable[[bool], Table]) -> None:
    """Command-line entry point of one benchmark script."""
    quick = "--quick" in sys.argv[1:]
    table = run(quick)
    print(table.save(quick=quick))
