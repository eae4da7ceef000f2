"""Homomorphism densities and projected flow steps against hand-written closed forms and networkx.

Densities `t(F, G)` of G(n, p = 0.02) graphs (float32 adjacency) for the triangle, the 4- and
5-cycles and K4 minus an edge, n = 200 to 3,000. jaxstat contracts any pattern by variable
elimination (`homomorphism_density`, jitted, input checks included). Peers: the hand-derived
closed form of each pattern (`sum(A^2 * A)`, `sum(A^2 * A^2)`, `sum(A^3 * A^2)`, `sum(A * (A^2)^2)`,
i.e. traces of powers) written in jax.numpy (jitted; same backend, so the ratio is the cost of the
generic contraction) and in numpy (BLAS; float32 too); and networkx counting: `nx.triangles` for the
triangle, subgraph monomorphisms (VF2) summed over the quotients of `F` by independent sets
(`hom(F, G) = sum_P inj(F / P, G)`) for the others. networkx runs only where the last measured
count, scaled by `(n / n_prev)^|V(F)|` (how the number of maps grows), predicts under 30 s; larger n
are skipped (noted in the table). "max rel. diff" compares jaxstat and networkx with a float64 numpy
evaluation of the closed form.

Flow row: one step of the projected Heun scheme for `F = t(K3) - t(K2) / 2` at n = 1,000 (two
kernel evaluations, tangent-cone projection, clipping) through `gradient_flow` (diffrax, 20 steps
per call, time per step), against the same step written by hand with the closed-form kernel
`DF = 3 A A / n - 1/2` in jax.numpy (`lax.fori_loop`) and in numpy. Steps per second in the notes.
"""

import time

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
from _common import main, Table, timeit

import jaxstat.graphons as gn


PATTERNS = {
    "triangle": gn.Pattern.cycle(3),
    "4-cycle": gn.Pattern.cycle(4),
    "5-cycle": gn.Pattern.cycle(5),
    "K4 minus an edge": gn.Pattern.k4_minus_edge(),
}


def closed_form(name, A):
    """The hand-derived closed form, for numpy or jax.numpy arrays."""
    n = float(A.shape[0])
    B = A @ A
    if name == "triangle":
        return (B * A).sum() / n**3
    if name == "4-cycle":
        return (B * B).sum() / n**4
    if name == "5-cycle":
        return ((B @ A) * B).sum() / n**5
    return (A * B * B).sum() / n**4


def _set_partitions(items):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in _set_partitions(rest):
        for i in range(len(part)):
            yield part[:i] + [[first] + part[i]] + part[i + 1 :]
        yield [[first]] + part


def networkx_count(name, G, pattern):
    """`t(F, G)` counted with networkx."""
    n = G.number_of_nodes()
    if name == "triangle":
        return 2 * sum(nx.triangles(G).values()) / n**3  # hom(K3) = 6 #triangles
    F = pattern.to_networkx()
    total = 0
    for part in _set_partitions(list(F.nodes)):
        block = {v: i for i, b in enumerate(part) for v in b}
        if any(block[u] == block[v] for u, v in F.edges):
            continue
        Q = nx.Graph()
        Q.add_nodes_from(range(len(part)))
        Q.add_edges_from((block[u], block[v]) for u, v in F.edges)
        matcher = nx.algorithms.isomorphism.GraphMatcher(G, Q)
        total += sum(1 for _ in matcher.subgraph_monomorphisms_iter())
    return total / n**pattern.num_vertices


def run(quick: bool = False) -> Table:
    sizes = (200, 500) if quick else (200, 500, 1000, 2000, 3000)
    table = Table(
        name="graphons",
        title="Homomorphism densities and projected flow steps",
        description=__doc__,
        columns=[
            "quantity",
            "n",
            "jaxstat (ms)",
            "jnp closed form (ms)",
            "ratio to jnp",
            "numpy (ms)",
            "ratio to numpy",
            "networkx (ms)",
            "ratio to networkx",
            "max rel. diff",
        ],
    )
    nx_last = {}  # pattern -> (n, seconds) of the last networkx count
    density = eqx.filter_jit(gn.homomorphism_density)
    jnp_closed_form = jax.jit(closed_form, static_argnums=0)
    for n in sizes:
        G = nx.gnp_random_graph(n, 0.02, seed=n)
        A64 = nx.to_numpy_array(G, dtype=np.float64)
        A32 = A64.astype(np.float32)
        Aj = jnp.asarray(A32)
        repeat = 5 if n < 2000 else 3  # (keeps the full run within 8 minutes on 2 cores)
        for name, F in PATTERNS.items():
            t_jax = timeit(density, F, Aj, repeat=repeat)
            t_jnp = timeit(jnp_closed_form, name, Aj, repeat=repeat)
            t_np = timeit(closed_form, name, A32, repeat=repeat)
            exact = closed_form(name, A64)
            diff = abs(float(density(F, Aj)) - exact) / exact
            last = nx_last.get(name)
            predicted = 0.0 if last is None else last[1] * (n / last[0]) ** F.num_vertices
            if predicted < 30:
                t0 = time.perf_counter()
                value = networkx_count(name, G, F)
                t_nx = time.perf_counter() - t0
                nx_last[name] = (n, t_nx)
                diff = max(diff, abs(value - exact) / exact)
                nx_ms, nx_ratio = 1e3 * t_nx, t_jax / t_nx
            else:
                nx_ms, nx_ratio = f"skipped (predicted {predicted:.0f} s)", "-"
            table.add(
                name,
                n,
                1e3 * t_jax,
                1e3 * t_jnp,
                t_jax / t_jnp,
                1e3 * t_np,
                t_jax / t_np,
                nx_ms,
                nx_ratio,
                diff,
            )

    # flow steps at n = 1,000
    n = 1000
    steps, dt = 20, 1e-3
    rng = np.random.default_rng(0)
    A0 = rng.random((n, n)).astype(np.float32)
    A0 = (A0 + A0.T) / 2
    objective = gn.HomomorphismDensity(gn.Pattern.cycle(3)) - 0.5 * gn.HomomorphismDensity([(0, 1)])

    @eqx.filter_jit
    def jax_steps(A):
        return gn.gradient_flow(objective, A, steps * dt, solver=dfx.Heun(), dt0=dt).ys[-1]

    def heun_step(xp, A):
        def velocity(A):
            V = -(3 * (A @ A) / n - 0.5)
            return xp.where(((A <= 0) & (V < 0)) | ((A >= 1) & (V > 0)), 0, V)

        V0 = velocity(A)
        V1 = velocity(xp.clip(A + dt * V0, 0, 1))
        return xp.clip(A + dt / 2 * (V0 + V1), 0, 1)

    def numpy_steps(A):
        for _ in range(steps):
            A = heun_step(np, A)
        return A

    @jax.jit
    def jnp_steps(A):
        return jax.lax.fori_loop(0, steps, lambda i, A: heun_step(jnp, A), A)

    Aj = jnp.asarray(A0)
    t_jax = timeit(jax_steps, Aj, repeat=5) / steps
    t_np = timeit(numpy_steps, A0, repeat=3) / steps
    diff = float(np.max(np.abs(np.asarray(jax_steps(Aj)) - numpy_steps(A0))))
    t_jnp = timeit(jnp_steps, Aj, repeat=5) / steps
    table.add(
        "projected Heun step",
        n,
        1e3 * t_jax,
        1e3 * t_jnp,
        t_jax / t_jnp,
        1e3 * t_np,
        t_jax / t_np,
        "-",
        "-",
        diff,
    )
    table.notes.append(
        f"flow steps per second at n = {n}: jaxstat {1 / t_jax:.1f}, numpy {1 / t_np:.1f} "
        "(the flow row's last column is the max absolute difference after 20 steps)"
    )
    table.notes.append(
        "jaxstat densities include the input checks (finite, in [0, 1], symmetric); the 4-cycle "
        "takes two matrix products where the closed form needs one (the elimination order does not "
        "reuse A^2 between the two halves of the cycle); on CPU the jnp/numpy ratio is XLA's "
        "matrix product against the BLAS numpy links to"
    )
    table.notes.append(f"jax {jax.__version__}, float32; networkx {nx.__version__}")
    return table


if __name__ == "__main__":
    main(run)
