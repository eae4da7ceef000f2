"""Run the benchmarks and regenerate `benchmarks/README.md`.

python benchmarks/run.py                 # every benchmark
python benchmarks/run.py graphs pde      # the ones whose file name contains these words
python benchmarks/run.py --quick         # small sizes (results not written to the README)
python benchmarks/run.py --table         # only regenerate the README from results/
"""

import importlib.util
import pathlib
import sys
import traceback


HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))

from _common import write_readme  # noqa: E402


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    if "--table" in argv:
        print(write_readme())
        return 0
    words = [a for a in argv if not a.startswith("--")]
    scripts = sorted(HERE.glob("bench_*.py"))
    if words:
        scripts = [s for s in scripts if any(w in s.stem for w in words)]
    failed = []
    for script in scripts:
        print(f"== {script.stem}", flush=True)
        spec = importlib.util.spec_from_file_location(script.stem, script)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
            print(module.run(quick).save(quick=quick))
        except Exception:
            traceback.print_exc()
            failed.append(script.stem)
    if not quick:
        print(write_readme())
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
