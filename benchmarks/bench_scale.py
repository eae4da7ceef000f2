"""Scale: one stationary layer, forward and backward, from 10^4 to 3 x 10^5 nodes (10^6 on request).

A `feature_layer` (quartic gradient model `H psi + mu psi + beta psi^3 = s`, `s = x W^T + b`,
16 float32 features per node in and out) on a random graph with `n` nodes and `E = 5n` edges.
Forward: Newton-Krylov solve to the default tolerance; backward: the gradient of a mean-square
loss with respect to the edge weights, `W` and `b` (implicit adjoint: one transposed linear solve).
Each size runs in a fresh process; "peak RSS" is that process's maximum resident memory (graph,
data, compiled programs and all), "temp" XLA's scratch memory of the compiled backward program.
The growth exponents are least-squares slopes of log(time) and log(memory) against log(n): 1 is
linear in the size of the graph. The peer is the dense-free expectation O(n) itself.
"""

import json
import math
import os
import subprocess
import sys

from _common import main, Table


CODE = """
import json, resource, time
import equinox as eqx, jax, jax.numpy as jnp, jax.random as jr
import jaxstat.graphs as jg, jaxstat.stationary as js
from _common import compiled_memory
n = {n}
g = jg.random_graph(jr.key(0), n, 5 * n, dtype=jnp.float32)
layer = js.feature_layer(g, js.GradientModel(js.Quartic(mu=1.0, beta=0.5)), 16, 16, key=jr.key(1))
x = jr.normal(jr.key(2), (n, 16), jnp.float32)
y = jnp.tanh(x)
forward = eqx.filter_jit(lambda l, x: l(x))
loss = lambda l: jnp.mean((l(x) - y) ** 2)
backward = eqx.filter_jit(eqx.filter_grad(loss))
def best(fn, *a, k=3 if n < 300_000 else 1):
    jax.block_until_ready(fn(*a))
    ts = []
    for _ in range(k):
        t0 = time.perf_counter(); jax.block_until_ready(fn(*a)); ts.append(time.perf_counter() - t0)
    return min(ts)
tf = best(forward, layer, x)
tb = best(backward, layer)
grads = backward(layer)
finite = bool(jnp.all(jnp.isfinite(grads.graph.weights)))
temp = compiled_memory(lambda l: eqx.filter_grad(loss)(l), layer)["temp"]
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print("RESULT", json.dumps([tf, tb, rss, temp, finite]))
"""


def _slope(ns, ys):
    lx, ly = [math.log(v) for v in ns], [math.log(v) for v in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def run(quick: bool = False) -> Table:
    # n = 1,000,000 runs (peak RSS above 6 GiB) but one forward + backward takes minutes here:
    # pass --million to include it.
    sizes = [10_000, 30_000, 100_000] if quick else [10_000, 100_000, 300_000]
    if "--million" in sys.argv:
        sizes.append(1_000_000)
    table = Table(
        name="scale",
        title="One stationary layer forward + backward, n = 1e4 to 3e5 nodes, E = 5n, d = 16, f32",
        description=__doc__,
        columns=["n", "forward (s)", "backward (s)", "peak RSS (GiB)", "temp (MiB)", "finite"],
    )
    here = os.path.dirname(os.path.abspath(__file__))
    results = []
    for n in sizes:
        out = subprocess.run(
            [sys.executable, "-c", CODE.format(n=n)], capture_output=True, text=True, cwd=here
        )
        if out.returncode:
            raise RuntimeError(out.stderr[-3000:])
        line = next(ln for ln in out.stdout.splitlines() if ln.startswith("RESULT"))
        tf, tb, rss, temp, finite = json.loads(line.split(" ", 1)[1])
        results.append((n, tf, tb, rss, temp))
        table.add(f"{n:,}", tf, tb, rss / 2**30, temp / 2**20, finite)
    ns = [r[0] for r in results]
    table.notes.append(
        f"growth exponents over n: forward time {_slope(ns, [r[1] for r in results]):.2f}, "
        f"backward time {_slope(ns, [r[2] for r in results]):.2f}, "
        f"peak RSS {_slope(ns, [r[3] for r in results]):.2f}, "
        f"backward temp memory {_slope(ns, [r[4] for r in results]):.2f}"
    )
    print(table.notes[-1])
    return table


if __name__ == "__main__":
    main(run)
