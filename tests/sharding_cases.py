"""Sharded runs of the library's batched entry points, compared with one device.

Run as a script (by `tests/test_sharding.py`, in a subprocess of its own): it asks XLA for four
host CPU devices before JAX starts, and prints one JSON line per (case, mesh):

    {"case": ..., "mesh": "explicit" | "auto", "error": max |sharded - single device|,
     "scale": max |single device|, "spec": the output's PartitionSpec, "exception": ...}

Usage: `python tests/sharding_cases.py [case[:explicit|:auto] ...]` (default: the cases in
`DEFAULT`, on both meshes).

Each case builds a batch, places it on the mesh with `NamedSharding(mesh, P("d"))` (the batch, or
for `graph_nodes` the nodes, split over the four devices), runs the same jitted function on the
sharded batch (inside `jax.set_mesh(mesh)`) and on the unsharded batch (one device), and reports
the largest difference. The output's sharding is reported so the test can check that the batch
axis stays split over the mesh (no gather onto one device).
"""

import json
import os
import re
import sys
import traceback


os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P  # noqa: E402


jax.config.update("jax_enable_x64", True)

BATCH = 8  # two per device


def _pde_setup():
    import jaxstat.pde as pde

    grid = pde.UniformGrid(0.0, 2 * jnp.pi, 16)
    equation = pde.Burgers(grid)
    ts = jnp.linspace(0.0, 0.3, 3)
    amplitudes = jnp.linspace(0.5, 1.5, BATCH)
    y0 = amplitudes[:, None] * grid.cell_averages(jnp.sin)[None, :]
    return pde, equation, ts, y0


def case_pde_y0():
    """An ensemble of viscous Burgers solves over a batch of initial data."""
    pde, equation, ts, y0 = _pde_setup()
    fn = jax.jit(jax.vmap(lambda y: pde.solve(equation, y, ts, 0.05).ys[-1]))
    return fn, (y0,)


def case_pde_nu():
    """An ensemble of Burgers solves over a batch of viscosities."""
    pde, equation, ts, y0 = _pde_setup()
    nus = jnp.linspace(0.02, 0.2, BATCH)
    fn = jax.jit(jax.vmap(lambda nu: pde.solve(equation, y0[-1], ts, nu).ys[-1]))
    return fn, (nus,)


def case_stationary_layer():
    """A stationary (Kerr) layer applied to a batch of inputs: one nonlinear solve per input."""
    import jaxstat.graphs as jg
    import jaxstat.stationary as js

    n, e, m = 12, 30, 3
    k1, k2, k3, k4 = jr.split(jr.key(0), 4)
    graph = jg.random_graph(k1, n, e)
    source = js.NodeSource(0.3 * jr.normal(k2, (n, m)), 0.1 * jr.normal(k3, (n, 1)))
    # No stability certificate (the default AutoStability takes the dense spectrum on the host
    # for so small a state: `jax.pure_callback`, which gathers the batch onto one device).
    model = js.DrivenDampedModel(gamma=0.6, kappa=0.4)
    layer = js.StationaryLayer(graph, model, source, js.ReIm(), stability=None)
    xs = jr.normal(k4, (BATCH, m, 2))
    fn = jax.jit(jax.vmap(layer))
    return fn, (xs,)


def case_graphon_samples():
    """Edge densities of a batch of W-random graphs, one PRNG key per sample."""
    import jaxstat.graphons as jgr

    W = jgr.StepGraphon(jnp.array([[0.8, 0.2], [0.2, 0.6]]))
    keys = jr.key_data(jr.split(jr.key(1), BATCH))

    def one(k):
        A = jgr.sample_graph(jr.wrap_key_data(k), W, 24)
        return jnp.stack(
            [
                jgr.homomorphism_density([(0, 1)], A),
                jgr.homomorphism_density([(0, 1), (1, 2), (2, 0)], A),
            ]
        )

    fn = jax.jit(jax.vmap(one))
    return fn, (keys,)


def case_critical_points():
    """Critical points of `x0^3 - 3 x0 + x1^2` from a batch of starts split over the mesh."""
    import jaxstat.morse as jm

    def f(x):
        return x[0] ** 3 - 3 * x[0] + x[1] ** 2

    lo, hi = -3.0 * jnp.ones(2), 3.0 * jnp.ones(2)
    starts = jm.uniform_starts(jr.key(2), lo, hi, 64)

    def run(s):
        cps = jm.find_critical_points(f, s, lower=lo, upper=hi, max_points=8, fallback=None)
        # Sorted, so that the comparison does not depend on the order points were found in.
        order = jnp.argsort(jnp.where(jnp.arange(8) < cps.count, cps.points[:, 0], jnp.inf))
        return jnp.concatenate([cps.points[order][:2].ravel(), cps.count[None].astype(float)])

    return jax.jit(run), (starts,)


def case_graph_nodes():
    """One graph with its nodes (and edges) split over the mesh: a stationary solve and the
    gradient of a loss through its implicit adjoint."""
    import jaxstat.graphs as jg
    import jaxstat.stationary as js

    n = 1024
    i = np.arange(n)
    # A ring with chords: most neighbours on the same device, the chords reach across devices.
    senders = np.concatenate([i, i])
    receivers = np.concatenate([(i + 1) % n, (i + 37) % n])
    weights = jnp.asarray(0.5 + 0.5 * np.cos(np.arange(2 * n)))
    graph = jg.Graph(senders, receivers, weights, n)
    model = js.DrivenDampedModel(gamma=0.6, kappa=0.4)
    source = jnp.sin(jnp.arange(n, dtype=float))[:, None] * (0.2 + 0.1j)

    # No stability certificate: it calls LAPACK on the host (`jax.pure_callback`), which XLA
    # places on one device; with the state split over host CPU devices that can deadlock the
    # in-process collectives (see docs/multi-device.md).
    def state(graph, s):
        return js.solve(model, graph, s, stability=None).value

    def run(graph, s):
        # The state and the gradient of a loss through the implicit adjoint (one linear solve
        # with the adjoint of the stationarity equation's Jacobian).
        loss = lambda s: jnp.sum(jnp.abs(state(graph, s)) ** 2)  # noqa: E731
        return state(graph, s), jax.grad(loss)(s)

    # Memory per device of the solve (temporaries, from XLA's own figures), against one device.
    run.memory = jax.jit(state)
    return jax.jit(run), (graph, source)


# The default-suite cases (about a minute on a laptop CPU); the others are slow.
DEFAULT = ("pde_y0", "stationary_layer", "graphon_samples", "critical_points")
CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}


def _spec(x):
    spec = getattr(getattr(x, "sharding", None), "spec", None)
    return None if spec is None else [None if p is None else str(p) for p in spec]


def _place(tree, mesh):
    """Split each array whose leading axis the mesh divides; replicate the rest."""

    def place(a):
        split = a.ndim > 0 and a.shape[0] % mesh.size == 0
        return jax.device_put(a, NamedSharding(mesh, P("d") if split else P()))

    return jax.tree.map(place, tree)


def _temp_bytes(fn, *args):
    return fn.lower(*args).compile().memory_analysis().temp_size_in_bytes


def run_case(name, axis_types):
    """The case on one device, then on each mesh, compared."""
    fn, args = CASES[name]()
    reference = [np.asarray(r) for r in jax.tree.leaves(fn(*args))]
    memory = getattr(fn, "memory", None)
    single = None if memory is None else _temp_bytes(memory, *args)
    for label, axis_type in axis_types:
        record = {"case": name, "mesh": label}
        try:
            mesh = jax.make_mesh((4,), ("d",), axis_types=(axis_type,))
            placed = _place(args, mesh)
            with jax.set_mesh(mesh):
                out = jax.tree.leaves(fn(*placed))
                # The shapes the compiled program gathers across devices (none, for a batch).
                hlo = fn.lower(*placed).compile().as_text()
                record["all_gathers"] = sorted(set(re.findall(r"= (\S+) all-gather\(", hlo)))
                if memory is not None:
                    record["temp_ratio"] = _temp_bytes(memory, *placed) / single
            record.update(
                error=max(float(np.max(np.abs(np.asarray(o) - r))) for o, r in zip(out, reference)),
                scale=max(float(np.max(np.abs(r))) for r in reference),
                spec=[_spec(o) for o in out],
                shape=[list(o.shape) for o in out],
                finite=all(bool(np.all(np.isfinite(np.asarray(o)))) for o in out),
            )
        except Exception as exc:  # reported to the test, which fails with the message
            record["exception"] = f"{type(exc).__name__}: {exc}"[:2000]
            record["traceback"] = traceback.format_exc()[-3000:]
        print(json.dumps(record), flush=True)


MESHES = (("explicit", AxisType.Explicit), ("auto", AxisType.Auto))


def main(names):
    assert jax.device_count() == 4, jax.devices()
    for name in names:
        case, _, only = name.partition(":")
        run_case(case, [m for m in MESHES if not only or m[0] == only])


if __name__ == "__main__":
    main(sys.argv[1:] or DEFAULT)
