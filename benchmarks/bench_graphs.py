"""Sparse Hamiltonian product `H x` and its weight gradient against `scipy.sparse` CSR.

A random graph with n = 100,000 nodes, 500,000 edges and 16 float32 features per node. Rows:
scipy CSR `L @ x` (the peer, single-threaded C++); jaxstat's product through the assembled operator
(jaxlib's CSR kernel behind our own primitive), including assembly from the edge weights (what a
training step pays), the portable gather + `segment_sum` path, and reverse-mode gradients with
respect to the edge weights and the features (`grad of <c, L(w) x>`).
"""

import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import scipy.sparse as sp
from _common import main, Table, timeit_interleaved

import jaxstat.graphs as jg
from jaxstat.graphs._sparse import _portable_matmul


def run(quick: bool = False) -> Table:
    n, m, f = (10_000, 50_000, 16) if quick else (100_000, 500_000, 16)
    table = Table(
        name="graphs",
        title=f"Laplacian product, n = {n:,}, E = {m:,}, {f} float32 features",
        description=__doc__,
        columns=["operation", "time (ms)", "ratio to scipy L @ x"],
    )
    g = jg.random_graph(jr.key(0), n, m, dtype=jnp.float32)
    x = jr.normal(jr.key(1), (n, f), jnp.float32)
    c = jr.normal(jr.key(2), (n, f), jnp.float32)
    s, r, w = np.asarray(g.senders), np.asarray(g.receivers), np.asarray(g.weights)
    A = sp.csr_matrix((np.r_[w, w], (np.r_[s, r], np.r_[r, s])), shape=(n, n))
    L = (sp.diags(np.asarray(A.sum(axis=1)).ravel()) - A).tocsr()
    L.sort_indices()
    xn = np.asarray(x)
    np.testing.assert_allclose(g.laplacian(x), L @ xn, rtol=1e-4, atol=1e-4)

    op = g.assemble(potential=False)
    mv = eqx.filter_jit(lambda op, v: op.mv(v))
    lap = eqx.filter_jit(lambda g, v: g.laplacian(v))

    @eqx.filter_jit
    def portable(op, v):
        return op.diagonal[:, None] * v + _portable_matmul(op.data, v, op.indices, op.rows, n)

    def inner(w, v, g):
        return jnp.vdot(c, eqx.tree_at(lambda t: t.weights, g, w).laplacian(v))

    grad_w = eqx.filter_jit(jax.grad(inner, argnums=0))
    grad_wx = eqx.filter_jit(jax.grad(inner, argnums=(0, 1)))

    peer = "scipy CSR L @ x (peer)"
    calls = {
        peer: (lambda v: L @ v, (xn,)),
        "jaxstat H x (assembled operator)": (mv, (op, x)),
        "jaxstat H x incl. assembly from weights": (lap, (g, x)),
        "portable gather + segment_sum": (portable, (op, x)),
        "grad wrt edge weights": (grad_w, (g.weights, x, g)),
        "grad wrt weights and features": (grad_wx, (g.weights, x, g)),
    }
    times = timeit_interleaved(calls)
    for name, t in times.items():
        table.add(name, 1e3 * t, t / times[peer])
    table.notes.append(
        "medians of 61 interleaved rounds (each call once per round): the host's slow spells "
        "moved separately timed blocks by up to 2x between runs"
    )
    table.notes.append(
        "weight gradient / one assembled product = "
        f"{times['grad wrt edge weights'] / times['jaxstat H x (assembled operator)']:.2f}x; "
        "/ product incl. assembly = "
        f"{times['grad wrt edge weights'] / times['jaxstat H x incl. assembly from weights']:.2f}x"
    )
    return table


if __name__ == "__main__":
    sys.path.insert(0, ".")
    main(run)
