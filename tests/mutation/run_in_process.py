"""Run the mutants that `run_mutmut.sh` generated in one Python process per shard.

    python tests/mutation/run_in_process.py WORKDIR SOURCE OUT.json PATTERN...

`mutmut run` starts a fresh interpreter for every mutant: importing JAX and the package costs
about 3 s of CPU (20 s of wall time on a loaded two-core machine), more than most mutants' tests.
This driver reuses what mutmut prepared in WORKDIR (a `run_mutmut.sh` directory after its "Running
stats" step: `mutants/` and `mutants/mutmut-stats.json`) and runs the mutants of SOURCE (e.g.
`jaxstat/pde/_exact.py`) whose names match a PATTERN (fnmatch) in one process: for each, it sets
`MUTANT_UNDER_TEST` (mutmut's trampolines read it at every call) and runs `pytest -x` over the
tests that mutmut recorded as reaching the mutated function, shortest first, as `mutmut run`
does. The tests' conftest clears JAX's compilation caches after each module, so every mutant is
traced and compiled afresh. A mutant is killed when pytest fails (exit code 1), survives when it
passes (0); `-1` is a timeout (the tests did not pass).

Environment:

- `SHARD=i/n`: run every n-th mutant from the i-th (one process per core).
- `REVERSE=1`: take the mutants from the end of the list (a second machine working from the
  other end).
- `SKIP_DONE=results.json`: skip the mutants with a result there.
- `FAST_MAX=seconds`: a first pass over the tests recorded as at most this long (a mutant they
  kill is killed by the suite), then the survivors of that pass against all their tests.
- `STATS=file`: another stats file (e.g. one with some tests removed, to score an older suite).
- `CLEAN_ONLY=1`: run the tests unmutated once and write `{"clean_rc": ...}` to OUT.json.
- `MUTANT_LIMIT`: seconds per mutant (default 240).

Each result records the first failing test (`by`). Results are written after every mutant, so a
run can be stopped and resumed.
"""

import fnmatch
import json
import os
import signal
import sys
import time


work, source, out_path, *patterns = sys.argv[1:]
out_path = os.path.abspath(out_path)
os.chdir(work)
os.environ.setdefault(
    "XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
)
from mutmut.utils.file_utils import setup_source_paths  # noqa: E402
from mutmut.utils.format_utils import mangled_name_from_mutant_name  # noqa: E402


setup_source_paths()
stats = json.load(open(os.environ.get("STATS", "mutants/mutmut-stats.json")))
tests_by_fn, duration = stats["tests_by_mangled_function_name"], stats["duration_by_test"]
meta = json.load(open(os.path.join("mutants", source + ".meta")))
names = [k for k in meta["exit_code_by_key"] if any(fnmatch.fnmatch(k, p) for p in patterns)]
os.chdir("mutants")
import pytest  # noqa: E402


results = json.load(open(out_path)) if os.path.exists(out_path) else {}
limit = int(os.environ.get("MUTANT_LIMIT", "240"))


class Timeout(Exception):
    pass


def _on_alarm(*_):
    raise Timeout()


signal.signal(signal.SIGALRM, _on_alarm)


class _Failures:
    def __init__(self):
        self.failed = []

    def pytest_runtest_logreport(self, report):
        if report.failed:
            self.failed.append(report.nodeid.split("::", 1)[-1])


def run(name, tests, seconds):
    """Exit code of `pytest -x tests` with `name` active, seconds taken, failing tests."""
    os.environ["MUTANT_UNDER_TEST"] = name
    failures = _Failures()
    signal.alarm(seconds)
    start = time.time()
    try:
        args = ["--rootdir=.", "--tb=line", "-x", "-q", "-p", "no:randomly"]
        args += ["-p", "no:cacheprovider", "-m", "not slow", *tests]
        rc = int(pytest.main(args, plugins=[failures]))
    except Timeout:
        rc = -1
    finally:
        signal.alarm(0)
    return rc, time.time() - start, failures.failed


def tests_of(name):
    fn = mangled_name_from_mutant_name(name)
    return sorted(tests_by_fn.get(fn, []), key=duration.get)


import jaxstat  # noqa: E402


assert "/mutants/" in jaxstat.__file__, jaxstat.__file__  # the mutated copy, not the checkout

if os.environ.get("CLEAN_ONLY"):
    everything = sorted({t for n in names for t in tests_of(n)}, key=duration.get)
    rc, seconds, failed = run("", everything, 100_000)
    record = {"clean_rc": rc, "s": seconds, "failed": failed, "tests": len(everything)}
    json.dump(record, open(out_path, "w"))
    sys.exit(0)

names.sort(
    key=lambda n: (
        min(i for i, p in enumerate(patterns) if fnmatch.fnmatch(n, p)),
        sum(duration[t] for t in tests_of(n)),
    )
)
skip = json.load(open(os.environ["SKIP_DONE"])) if os.environ.get("SKIP_DONE") else {}
names = [n for n in names if n not in skip or skip[n]["rc"] == "fast-survived"]
if os.environ.get("REVERSE"):
    names = names[::-1]
shard, num_shards = (int(k) for k in os.environ.get("SHARD", "0/1").split("/"))
names = names[shard::num_shards]
fast_max = float(os.environ.get("FAST_MAX", "inf"))
todo = ([(1, n) for n in names] if fast_max < float("inf") else []) + [(2, n) for n in names]
for i, (phase, name) in enumerate(todo):
    done = results.get(name)
    if done is not None and (done["rc"] != "fast-survived" or phase == 1):
        continue
    tests = tests_of(name)
    if phase == 1:
        tests = [t for t in tests if duration[t] <= fast_max]
    if not tests:
        results[name] = {"rc": "fast-survived" if phase == 1 else "no tests", "s": 0}
    else:
        rc, seconds, failed = run(name, tests, limit)
        rc = "fast-survived" if (phase == 1 and rc == 0) else rc
        results[name] = {"rc": rc, "s": round(seconds, 1), "by": failed[:1]}
    print(f"[{i + 1}/{len(todo)}] {name} -> {results[name]}", flush=True)
    json.dump(results, open(out_path + ".tmp", "w"), indent=0)
    os.replace(out_path + ".tmp", out_path)

counts = {}
for name in names:
    rc = results[name]["rc"]
    key = {0: "survived", 1: "killed", -1: "timeout"}.get(rc, str(rc))
    counts[key] = counts.get(key, 0) + 1
print("COUNTS", counts, flush=True)
print("SURVIVORS", [n for n in names if results[n]["rc"] == 0], flush=True)
