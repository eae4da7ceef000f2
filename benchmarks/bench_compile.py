"""First-call cost: compilation of each tour part and each main entry point, and the warm tour.

Each row runs in a fresh Python process with JAX's persistent compilation cache off (the
process's in-memory caches empty), after the modules it needs are imported: the first call
traces, compiles and runs; a second call with the same shapes only runs (a tour part's own
`jax.jit` of a function it defines inside compiles again: the second call of such a part is not
warm). The compilation of the first call is read off `jax.monitoring`: "programs" counts the XLA
compilations, "compile (s)" sums their XLA compilation times (not tracing and lowering: nested
`jit`s are traced inside their caller, so those events overlap), "host callbacks" counts the
programs that call back to Python (`eqx.error_if`, `jax.pure_callback`): JAX's persistent
compilation cache does not store those, so a second process compiles them again.

The last rows time the README's main command, `python -m jaxstat tour`, twice in fresh
processes sharing a new, empty persistent compilation cache (`~/.cache/jaxstat/jax`, with `HOME`
pointed at a temporary folder): the second tour reads the programs the first one wrote.
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

from _common import main, Table

import jaxstat._tour as tour


ROOT = pathlib.Path(__file__).resolve().parents[1]

# Each entry: set-up code (imports, data; not timed) and one call (timed twice).
ENTRY_POINTS = {
    "stationary.solve (Quartic, n = 2,000, default certificate)": (
        """
import jax.numpy as jnp, jax.random as jr
import jaxstat.graphs as jg, jaxstat.stationary as js
g = jg.knn_graph(jr.normal(jr.key(0), (2000, 2)), k=8)
model = js.GradientModel(js.Quartic(mu=1.0, beta=0.5))
s = jr.normal(jr.key(1), (2000, 4))
""",
        "js.solve(model, g, s).value",
    ),
    "StationaryLayer gradient (feature layer, n = 2,000)": (
        """
import equinox as eqx, jax.numpy as jnp, jax.random as jr
import jaxstat.graphs as jg, jaxstat.stationary as js
g = jg.knn_graph(jr.normal(jr.key(0), (2000, 2)), k=8)
layer = js.feature_layer(g, js.GradientModel(js.Quartic(mu=1.0, beta=0.5)), 3, 4, key=jr.key(1))
x = jr.normal(jr.key(2), (2000, 3))
grad = eqx.filter_jit(eqx.filter_grad(lambda l: jnp.mean(l(x) ** 2)))
""",
        "grad(layer).graph.weights",
    ),
    "pde.solve (Burgers, MUSCL, N = 512, t = 1)": (
        """
import jax.numpy as jnp
import jaxstat.pde as jp
grid = jp.UniformGrid(0.0, 2 * jnp.pi, 512)
eq = jp.Burgers(grid)
y0 = jnp.sin(grid.centres()) + 0.5
ts = jnp.array([0.0, 1.0])
""",
        "jp.solve(eq, y0, ts).ys",
    ),
    "morse.find_critical_points (tanh MLP 2-16-16-1, 1,024 starts)": (
        """
import jax.numpy as jnp, jax.random as jr
import jaxstat.morse as jm
net = jm.random_mlp(jr.key(3), [2, 16, 16, 1], weight_scale=3.0)
starts = jm.uniform_starts(jr.key(1), -3 * jnp.ones(2), 3 * jnp.ones(2), 1024)
""",
        "jm.find_critical_points(net, starts, fallback=None, throw=False).points",
    ),
    "graphons.gradient_flow (triangle density, n = 100)": (
        """
import jax.numpy as jnp, jax.random as jr
import jaxstat.graphons as gr
F = gr.HomomorphismDensity(gr.Pattern.cycle(3)) - 0.5 * gr.HomomorphismDensity([(0, 1)])
W0 = gr.sample_weighted_graph(jr.key(0), gr.FunctionGraphon(lambda x, y: x * y), 100)
""",
        "gr.gradient_flow(F, W0, 0.5).ys",
    ),
    "strata.fit (feature layer, 50 steps)": (
        """
import jax.numpy as jnp, jax.random as jr, optax
import jaxstat.graphs as jg, jaxstat.stationary as js, jaxstat.strata as st
points = jr.normal(jr.key(0), (500, 2))
g = jg.knn_graph(points, k=8)
layer = js.feature_layer(g, js.GradientModel(js.Quadratic(1.0)), 2, 1, key=jr.key(1))
y = jnp.sin(points[:, :1])
tx = st.partition(st.natural_gradient(0.1), optax.adam(1e-2))
loss = lambda m: jnp.mean((m(points) - y) ** 2)
""",
        "st.fit(loss, layer, tx, 50).losses",
    ),
    "quotient.local_entropy_gradient (MALA, 32 chains x 2,000 steps)": (
        """
import jax.numpy as jnp, jax.random as jr
import jaxstat.quotient as jq
loss = lambda y: jnp.sum((y**2 - 1) ** 2)
x = jnp.array([0.3, -0.2])
""",
        "jq.local_entropy_gradient(loss, x, gamma=1.5, beta=4.0, key=jr.key(0), step_size=0.1, "
        "num_steps=2000, num_chains=32, sampler=jq.MetropolisAdjustedLangevin()).grad",
    ),
}

# Compilation of everything run between `start()` and `stop()`, from jax.monitoring's events, and
# the programs with host callbacks (which JAX's persistent cache does not store), counted where
# XLA compiles (`jax._src.compiler.compile_or_get_cached`, a private name: 0 if it moves).
PROBE = """
import jax, jax.monitoring
from jax._src import compiler as _compiler
_on, _stats = [False], dict(programs=0, seconds=0.0, callbacks=0)
def _listen(event, duration, **kwargs):
    if _on[0] and event == "/jax/core/compile/backend_compile_duration":
        _stats["seconds"] += duration
        _stats["programs"] += 1
jax.monitoring.register_event_duration_secs_listener(_listen)
_original = getattr(_compiler, "compile_or_get_cached", None)
def _counting(backend, computation, devices, options, host_callbacks, *args, **kwargs):
    _stats["callbacks"] += bool(_on[0] and host_callbacks)
    return _original(backend, computation, devices, options, host_callbacks, *args, **kwargs)
if _original is not None:
    _compiler.compile_or_get_cached = _counting
"""

TIMER = (
    PROBE
    + """
import time
{setup}
def call():
    return jax.block_until_ready({call})
_on[0] = True
t0 = time.perf_counter(); call(); t1 = time.perf_counter()
_on[0] = False
call(); t2 = time.perf_counter()
import json; print("RESULT", json.dumps([t1 - t0, t2 - t1, _stats]))
"""
)

PART = (
    PROBE
    + """
import pathlib, time, matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot
import jaxstat._tour as tour
import jaxstat.{name}
out = pathlib.Path({out!r})
_on[0] = True
t0 = time.perf_counter(); tour.PARTS[{name!r}][1](out); t1 = time.perf_counter()
_on[0] = False
tour.PARTS[{name!r}][1](out); t2 = time.perf_counter()
import json; print("RESULT", json.dumps([t1 - t0, t2 - t1, _stats]))
"""
)


def _fresh(code: str, env=None) -> tuple[float, float, dict]:
    env = {**os.environ, "JAX_ENABLE_COMPILATION_CACHE": "false", **(env or {})}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT"))
    return tuple(json.loads(line.split(" ", 1)[1]))


def run(quick: bool = False) -> Table:
    table = Table(
        name="compile",
        title="First-call cost: compilation per tour part and entry point, and the warm tour",
        description=__doc__,
        columns=[
            "program",
            "first call (s)",
            "second call (s)",
            "programs",
            "compile (s)",
            "host callbacks",
            "first / second",
        ],
    )
    parts = ["pde", "graphons"] if quick else list(tour.PARTS)
    entries = list(ENTRY_POINTS)[:2] if quick else list(ENTRY_POINTS)
    with tempfile.TemporaryDirectory() as tmp:
        for name in parts:
            first, second, c = _fresh(PART.format(name=name, out=tmp))
            table.add(
                f"tour part `{name}`",
                first,
                second,
                c["programs"],
                c["seconds"],
                c["callbacks"],
                first / second,
            )
        for label in entries:
            setup, call = ENTRY_POINTS[label]
            first, second, c = _fresh(TIMER.format(setup=setup, call=call))
            table.add(
                label, first, second, c["programs"], c["seconds"], c["callbacks"], first / second
            )
        if not quick:
            home = pathlib.Path(tmp) / "home"
            home.mkdir()
            times, command = [], ["-m", "jaxstat", "tour", "--out", str(pathlib.Path(tmp) / "t")]
            for _ in range(2):
                t0 = time.perf_counter()
                subprocess.run(
                    [sys.executable, *command],
                    check=True,
                    capture_output=True,
                    env={**os.environ, "HOME": str(home)},
                    cwd=ROOT,
                )
                times.append(time.perf_counter() - t0)
            table.add(
                "`python -m jaxstat tour`, cold / warm cache",
                times[0],
                times[1],
                "",
                "",
                "",
                times[0] / times[1],
            )
    table.notes.append(
        "Goals (issue): every tour part under 5 s of compilation on the 2-core CPU, the second "
        "tour under half the first (first / second > 2)."
    )
    table.notes.append(
        "A program with host callbacks compiles again in every process: the persistent cache "
        "skips it (JAX does not serialise Python callbacks)."
    )
    return table


if __name__ == "__main__":
    main(run)
