"""Kron reduction: the Schur complement of `H + diag(c)` onto a subset of nodes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array, Float, Inexact

from .._krylov import GMRES
from ._graph import Graph


def kron_reduction(
    graph: Graph,
    keep,
    shift: Float[Array, " n"] | float | None = None,
    *,
    solver: lx.AbstractLinearSolver | None = None,
) -> Inexact[Array, "m m"]:
    """Kron reduction of `M = H + diag(c)` onto the nodes `S = keep`, eliminating `B` (the rest):

        K = M_SS - M_SB M_BB^{-1} M_BS.

    `K` is again Hermitian; for a Laplacian (`V = 0`, `c = 0`) it is the Laplacian of the reduced
    network on `S` (series/parallel rules, effective conductances). `M_BB` must be invertible, e.g.
    every component of `B` touches `S` or `c > 0`.

    Matrix-free: one `lineax` solve with `M_BB` per kept coordinate (vmapped, so the sparse product
    runs once per iteration for all of them); the output is dense of size `|S| k`.

    **Arguments:**

    - `graph`: the graph (its connection and potential are included).
    - `keep`: integer indices of the kept nodes (concrete).
    - `shift`: `c`, a scalar or shape `(n,)`; default 0.
    - `solver`: a lineax solver for `M_BB` (default `jaxstat.GMRES`, relative tolerance set by
      the dtype);
      pass `lx.LU()` to solve densely for small graphs.

    **Returns:** `K`, shape `(|S| k, |S| k)`.
    """
    n, k = graph.num_nodes, graph.fiber
    keep = np.asarray(keep)
    if keep.size == 0:
        raise ValueError("keep must be non-empty")
    if keep.ndim != 1 or not np.issubdtype(keep.dtype, np.integer):
        raise ValueError("keep must be a 1-D integer array of node indices")
    if len(np.unique(keep)) != keep.size:
        raise ValueError("keep must not repeat nodes")
    if keep.min() < 0 or keep.max() >= n:
        raise ValueError(f"keep must index nodes in [0, {n})")
    mask = np.zeros(n, dtype=bool)
    mask[keep] = True
    elim = np.flatnonzero(~mask)
    op = graph.assemble()
    c = jnp.zeros(n) if shift is None else jnp.broadcast_to(jnp.asarray(shift), (n,))
    dtype = jnp.result_type(op.dtype, c)
    node_shape = (n, k) if k > 1 else (n,)
    diag_c = jnp.repeat(c, k)
    kept = (keep[:, None] * k + np.arange(k)).reshape(-1)
    elim = (np.flatnonzero(~mask)[:, None] * k + np.arange(k)).reshape(-1)

    def block(rows_in, rows_out):
        """`y -> M[rows_out, rows_in] y`, matrix-free: embed, apply `M`, restrict."""

        def fn(y):
            full = jnp.zeros((n * k,), dtype).at[rows_in].set(y, unique_indices=True)
            mx = op.mv(full.reshape(node_shape)).reshape(-1) + diag_c * full
            return mx[rows_out]

        return fn

    def columns(fn, m):  # the dense matrix of fn, column by column (vmapped)
        return jax.vmap(fn, in_axes=1, out_axes=1)(jnp.eye(m, dtype=dtype))

    k_ss = columns(block(kept, kept), kept.size)
    if elim.size == 0:
        return k_ss
    m_bs = columns(block(kept, elim), kept.size)
    op_bb = lx.FunctionLinearOperator(block(elim, elim), jax.ShapeDtypeStruct(elim.shape, dtype))
    if solver is None:
        tol = 10 * float(jnp.finfo(dtype).eps) ** 0.75
        solver = GMRES(rtol=tol, atol=0.0, restart=50, max_steps=10 * elim.size)
    z = jax.vmap(lambda b: lx.linear_solve(op_bb, b, solver).value, 1, 1)(m_bs)
    return k_ss - jax.vmap(block(elim, kept), 1, 1)(z)
