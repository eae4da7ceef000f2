#!/usr/bin/env bash
# Mutation testing of one formula module against its own test files, with mutmut 3.
#
#   tests/mutation/run_mutmut.sh MODULE [WORKDIR [PATTERN...]]
#
# PATTERNs (fnmatch, e.g. 'jaxstat.pde._reconstruction.xǁMinModǁ*') restrict the run to some
# mutants; without them every mutant of the module is run.
#
# MODULE is one of: pde-flux, pde-reconstruction, pde-exact, graphons-density, graphons-objective,
# strata-potential, stationary-potential, stationary-model
# (see the table below). The repository is copied (tracked files plus this working tree's
# changes) into WORKDIR (default /tmp/jaxstat-mutmut-MODULE); the mutmut configuration is
# appended to the *copy's* pyproject.toml, so the checkout is never touched. mutmut runs one
# mutant at a time (--max-children 1: the tests are compile-bound and the machine is shared),
# each against the default-suite tests of the module's test files that reach the mutated
# function. At the end the script prints `mutmut results` (the survivors) and the counts.
#
# Requires: pip install mutmut (3.x). Slow: minutes per mutant-bearing function.
set -euo pipefail

module="${1:?usage: run_mutmut.sh MODULE [WORKDIR [PATTERN...]]}"
case "$module" in
  pde-flux)           source="jaxstat/pde/_flux.py";          tests="tests/pde/test_flux.py" ;;
  pde-reconstruction) source="jaxstat/pde/_reconstruction.py"; tests="tests/pde/test_flux.py" ;;
  pde-exact)          source="jaxstat/pde/_exact.py";         tests="tests/pde/test_exact.py" ;;
  graphons-density)   source="jaxstat/graphons/_density.py";  tests="tests/graphons/test_density.py" ;;
  graphons-objective) source="jaxstat/graphons/_objective.py"; tests="tests/graphons/test_objective.py" ;;
  strata-potential)   source="jaxstat/strata/_potential.py";  tests="tests/strata/test_potential.py" ;;
  stationary-potential) source="jaxstat/stationary/_potential.py"; tests="tests/stationary/test_closed_forms.py" ;;
  stationary-model)   source="jaxstat/stationary/_model.py";
                      tests="tests/stationary/test_closed_forms.py tests/stationary/test_model_closed_forms.py" ;;
  *) echo "unknown module '$module'; valid: pde-flux pde-reconstruction pde-exact graphons-density graphons-objective strata-potential stationary-potential stationary-model" >&2; exit 2 ;;
esac

# The test files as a TOML list: "a", "b".
test_list="$(printf '"%s", ' $tests)"
test_list="${test_list%, }"

repo="$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
work="${2:-/tmp/jaxstat-mutmut-$module}"
patterns=("${@:3}")
rm -rf "$work"
mkdir -p "$work"
# Tracked files as they are in the working tree (so uncommitted fixes are measured too).
(cd "$repo" && git ls-files -z --cached --others --exclude-standard \
  | grep -zv '^notebooks/\|^benchmarks/results/' \
  | xargs -0 tar -cf - 2>/dev/null) | tar -xf - -C "$work"

# mutmut 3 does not mutate decorated functions: in the copy, the `jit` decorators of the module's
# top-level functions are moved below the module (`f = jit(...)(f)`, the same wrapped function).
python "$work/tests/mutation/move_decorators.py" "$work/$source"

# mutmut calls pytest.main several times in one process: jaxtyping's import hook
# (--jaxtyping-packages) can only be installed before jaxstat is first imported, so it is dropped
# from the copy's addopts, together with the xdist workers (mutmut runs one test process).
sed -i -e 's/ --jaxtyping-packages=[^ "]*//' -e 's/ -n 2 --dist worksteal//' "$work/pyproject.toml"
cat >> "$work/pyproject.toml" <<CONFIG

[tool.mutmut]
source_paths = ["jaxstat"]
only_mutate = ["$source"]
also_copy = ["tests"]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-m", "not slow"]
pytest_add_cli_args_test_selection = [$test_list]
# A mutant's tests recompile their JAX programs in a fresh process: seconds per test that the
# clean run (one process, compiled once) does not pay. Generous limits, so that a slow compile is
# not counted as a timeout.
timeout_multiplier = 30.0
timeout_constant = 300.0
# Forking from a process in which JAX has started its thread pools deadlocks (seen: a mutant
# asleep on a futex for minutes): fork each mutant from a server that has imported nothing.
process_isolation = "forkserver"
forkserver_warmup = "none"
CONFIG

cd "$work"
export XLA_FLAGS="--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
mutmut run --max-children 1 "${patterns[@]}" || true
echo "== survivors (mutmut results) =="
mutmut results || true
mutmut export-cicd-stats >/dev/null 2>&1 || true
if [ -f mutants/mutmut-cicd-stats.json ]; then
  echo "== counts =="
  cat mutants/mutmut-cicd-stats.json
fi
