"""Run the benchmarks and regenerate `benchmarks/README.md`.

python benchmarks/run.py                 # every benchmark
python benchmarks/run.py graphs pde      # these benchmarks (names from --list)
python benchmarks/run.py --quick         # small sizes (results not written to the README)
python benchmarks/run.py --list          # the benchmark names
python benchmarks/run.py --table         # only regenerate the README from results/

Each benchmark runs in a process of its own: some switch on float64 at import, and a shared process
would make one benchmark's results depend on which ran before it.
"""

import os
import pathlib
import subprocess
import sys
import time


HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))

from _common import write_readme  # noqa: E402


def available() -> dict[str, pathlib.Path]:
    """Benchmark name (`graphs` for `bench_graphs.py`) -> script."""
    return {s.stem.removeprefix("bench_"): s for s in sorted(HERE.glob("bench_*.py"))}


def main(argv: list[str]) -> int:
    scripts = available()
    flags = {a for a in argv if a.startswith("--")}
    unknown_flags = flags - {"--quick", "--table", "--list"}
    if unknown_flags:
        print(f"unknown option(s) {sorted(unknown_flags)}; use --quick, --list or --table")
        return 2
    if "--list" in flags:
        print("\n".join(scripts))
        return 0
    if "--table" in flags:
        print(write_readme())
        return 0
    names = [a for a in argv if not a.startswith("--")]
    unknown = [n for n in names if n not in scripts]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from: {', '.join(scripts)}")
        return 2
    quick = "--quick" in flags
    chosen = names or list(scripts)
    failed = []
    for i, name in enumerate(chosen, 1):
        load = os.getloadavg()[0]
        print(f"== [{i}/{len(chosen)}] {name} (load average {load:.2f})", flush=True)
        t0 = time.perf_counter()
        cmd = [sys.executable, str(scripts[name])] + (["--quick"] if quick else [])
        if subprocess.run(cmd, cwd=HERE.parent).returncode != 0:
            failed.append(name)
        print(f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
    if not quick:
        print(write_readme())
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
