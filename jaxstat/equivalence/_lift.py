"""Admissible lifts: a Hermitian matrix as the Hamiltonian of a graph with a unitary connection.

A graph Hamiltonian has the dense form

    H_ii = (deg_i + V_i) I_k,      H_ij = -w_ij U_ij   (j ~ i),      H_ij = 0 otherwise,

with `k x k` blocks (`k = 1`: scalars). Conversely, a Hermitian `H` with scalar diagonal
blocks and *conformal* off-diagonal blocks (`H_ij^H H_ij = w_ij^2 I`) is the Hamiltonian of the
graph

    edges  = the non-zero off-diagonal blocks (i < j),
    w_ij   = the common singular value of H_ij = |H_ij|_F / sqrt(k)   (= |H_ij| for k = 1),
    U_ij   = -H_ij / w_ij   (the unitary polar factor of -H_ij = U_ij (w_ij I)),
    V_i    = tr(H_ii) / k - sum_{j ~ i} w_ij.

For `k = 1` every Hermitian matrix is admissible: complex entries give a U(1) (magnetic) connection
`exp(i theta_ij) = -H_ij / |H_ij|`; real entries give a signed graph (`U_ij = -sign(H_ij)`, so a
positive off-diagonal entry needs the phase `pi`, i.e. `U = -1`), stored as a real `1 x 1`
orthogonal `BlockConnection` so that everything stays real; real non-positive off-diagonals give the
combinatorial graph (no connection). The inverse map is `Graph.as_dense()`.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Inexact

from .._checks import is_concrete
from ..graphs import BlockConnection, Graph, PhaseConnection


def default_rtol(dtype) -> float:
    """Relative tolerance of the structural checks (Hermitian, conformal blocks): `sqrt(eps)`,
    i.e. 1.5e-8 in double and 3.5e-4 in single precision: well above the rounding of matrices
    assembled in that precision, well below any genuine violation."""
    return float(jnp.finfo(dtype).eps) ** 0.5


def _scale(x) -> Array:
    return jnp.maximum(jnp.max(jnp.abs(x), initial=0.0), jnp.finfo(jnp.result_type(x)).tiny)


def check_hermitian(H, rtol: float | None = None, name: str = "H") -> Array:
    """Raise (`ValueError` when concrete, `eqx.error_if` when traced) unless `H` is square and
    `max |H - H^H| <= rtol max |H|`. Returns `H`."""
    H = jnp.asarray(H)
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {H.shape}")
    if not jnp.issubdtype(H.dtype, jnp.inexact):
        raise TypeError(f"{name} must be floating point or complex, got dtype {H.dtype}")
    rtol = default_rtol(H.dtype) if rtol is None else rtol
    err = jnp.max(jnp.abs(H - jnp.conj(H.T)), initial=0.0)
    bad = ~(err <= rtol * _scale(H))  # also catches NaN
    if is_concrete(H):
        if bool(bad):
            raise ValueError(
                f"{name} is not Hermitian: max |{name} - {name}^H| = {float(err):.3e} exceeds "
                f"rtol * max |{name}| = {rtol * float(_scale(H)):.3e} (or {name} is not finite)"
            )
        return H
    return eqx.error_if(H, bad, f"{name} is not Hermitian (or not finite)")


@functools.partial(jax.jit, static_argnames=("num_nodes", "project"))
def _lift_values(senders, receivers, blocks, diag, num_nodes: int, project: bool):
    """The numbers of the lift (one compiled program): `(w, transport, V, conformal error,
    diagonal error, scale)`; `transport` is `theta` (complex, k = 1), `U` (k = 1 real: signs;
    k > 1: blocks)."""
    k = blocks.shape[-1]
    real = jnp.finfo(jnp.result_type(blocks, diag)).dtype
    scale = jnp.maximum(_scale(blocks), _scale(diag))
    m = -blocks
    conformal_err = jnp.zeros((), real)
    if k == 1:
        h = m[:, 0, 0]
        w = jnp.abs(h).astype(real)
        if jnp.iscomplexobj(h):
            transport = jnp.angle(h).astype(real)
        else:
            transport = jnp.where(h < 0, -1.0, 1.0).astype(real)[:, None, None]
        v = jnp.real(diag[:, 0, 0])
        diag_err = jnp.max(jnp.abs(jnp.imag(diag[:, 0, 0])), initial=0.0)
    elif project:
        # Frobenius-nearest `w U`: U the polar factor of m, w its mean singular value.
        left, sigma, right = jnp.linalg.svd(m)
        w = jnp.mean(sigma, axis=-1).astype(real)
        transport = left @ right
        v = jnp.real(jnp.trace(diag, axis1=-2, axis2=-1)) / k
        diag_err = jnp.zeros((), real)
    else:
        # Exact: m = w U with U unitary, so w = |m|_F / sqrt(k) and U = m / w (differentiable,
        # unlike an SVD at the repeated singular values of a conformal block).
        w = jnp.sqrt(jnp.sum(jnp.abs(m) ** 2, axis=(-2, -1)) / k).astype(real)
        safe = jnp.where(w > 0, w, 1.0)
        u = m / safe[:, None, None]
        eye = jnp.eye(k, dtype=m.dtype)
        gram = jnp.conj(u).swapaxes(-1, -2) @ u
        conformal_err = jnp.max(jnp.abs(gram - eye) * (w > 0)[:, None, None], initial=0.0)
        transport = jnp.where(w[:, None, None] > 0, u, eye)
        v = jnp.real(jnp.trace(diag, axis1=-2, axis2=-1)) / k
        diag_err = jnp.max(jnp.abs(diag - v[:, None, None] * jnp.eye(k)), initial=0.0)
    deg = jax.ops.segment_sum(w, senders, num_nodes) + jax.ops.segment_sum(w, receivers, num_nodes)
    return w, transport, (v - deg).astype(real), conformal_err, diag_err, scale


def _from_blocks(senders, receivers, blocks, diag, num_nodes, *, rtol, project) -> Graph:
    """The graph with `H[s_e, r_e] = blocks[e]` (shape `(E, k, k)`) and diagonal blocks `diag`
    (shape `(n, k, k)`), following the module docstring."""
    senders, receivers = np.asarray(senders), np.asarray(receivers)
    k = blocks.shape[-1]
    project = bool(project) and k > 1
    w, transport, V, conformal_err, diag_err, scale = _lift_values(
        senders, receivers, blocks, diag, num_nodes, project
    )
    if not project:
        w = _require(
            w,
            conformal_err <= rtol,
            "an off-diagonal block is not a multiple of a unitary (H_ij^H H_ij != w^2 I): the "
            f"admissible lift needs conformal blocks (max |U^H U - I| = {{err:.3e}} > rtol = "
            f"{rtol:.1e}); pass project=True for the nearest admissible lift",
            conformal_err,
        )
        V = _require(
            V,
            diag_err <= rtol * scale,
            "a diagonal block is not a real multiple of the identity (max deviation "
            "{err:.3e}): a graph Hamiltonian has diagonal blocks (deg_i + V_i) I; pass "
            "project=True for the nearest admissible lift",
            diag_err,
        )
    if k == 1 and jnp.iscomplexobj(blocks):
        connection = PhaseConnection(transport)
    elif k == 1 and is_concrete(transport) and bool(jnp.all(transport > 0)):
        connection = None  # real, non-positive off-diagonals: the combinatorial graph
    else:
        connection = BlockConnection(transport, tol=None)
    return Graph(senders, receivers, w, num_nodes, connection=connection, potential=V)


def _require(x, ok, message: str, err):
    """`ValueError` when concrete and not `ok`; `eqx.error_if` on `x` when traced."""
    if is_concrete(ok):
        if not bool(ok):
            raise ValueError(message.format(err=float(err)))
        return x
    return eqx.error_if(x, ~ok, message.replace("{err:.3e}", "see the docstring"))


def _edges_from_pattern(norms, atol: float) -> tuple[np.ndarray, np.ndarray]:
    if not is_concrete(norms):
        raise ValueError(
            "the edge set of a traced matrix is unknown: pass `edges` (an (E, 2) array of the "
            "non-zero off-diagonal blocks) to lift inside jit or grad"
        )
    mask = np.triu(np.asarray(norms) > atol, k=1)
    s, r = np.nonzero(mask)
    return s, r


def hermitian_lift(
    H: Inexact[ArrayLike, "rows cols"],
    fiber: int = 1,
    *,
    edges=None,
    atol: float = 0.0,
    rtol: float | None = None,
    project: bool = False,
) -> Graph:
    """The admissible lift: the graph (weights, unitary connection, potential) whose Hamiltonian
    `L_{w,U} + diag(V)` is the Hermitian matrix `H`.

    `w_ij = |H_ij|`, `U_ij = -H_ij / |H_ij|`, `V_i = H_ii - sum_{j ~ i} w_ij`, edges = non-zero
    off-diagonal entries (blocks for `fiber > 1`: `w_ij = |H_ij|_F / sqrt(k)`, the common singular
    value of a conformal block, and `U_ij = -H_ij / w_ij` its polar factor). See the module
    docstring for the connection that each case produces.

    Exact: `hermitian_lift(H).as_dense() == H` up to rounding. Differentiable with respect to `H`
    when `edges` is given (the edge set is then static and jit-compatible).

    **Arguments:**

    - `H`: Hermitian, shape `(n k, n k)`, real or complex.
    - `fiber`: the block size `k` (`k > 1` gives a sheaf / `BlockConnection` graph).
    - `edges`: optional `(E, 2)` integer array of the block pairs `(i, j)`, `i != j`, that carry an
      edge; by default the non-zero off-diagonal blocks of a concrete `H` (one edge per pair).
    - `atol`: blocks with `|H_ij|_F <= atol` are no edge (default 0: exact zeros only).
    - `rtol`: relative tolerance of the Hermitian and admissibility checks (default `sqrt(eps)`).
    - `project`: for `k > 1`, instead of requiring admissible blocks, return the Frobenius-nearest
      admissible lift (`U` the polar factor of `-H_ij`, `w` its mean singular value, diagonal
      blocks replaced by the mean of their eigenvalues).

    **Returns:** a `jaxstat.graphs.Graph` on `n` nodes. Its connection is one of three types
    (none, `PhaseConnection` or a `BlockConnection`, see the module docstring), but there is one
    way back to the matrix for every type: `graph.as_dense()` (shape `(n k, n k)`, node-major
    like `H`) is its Hamiltonian `L_{w,U} + diag(V)`, and `graph.hamiltonian(v)` applies it.

    **Raises:** `ValueError` if `H` is not square/Hermitian, if its size is not a multiple of
    `fiber`, or (`k > 1`, `project=False`) if a block is not admissible.

    **Example:**

    ```python
    import jax.numpy as jnp
    from jaxstat.equivalence import hermitian_lift

    H = jnp.array([[2.0, -1.0, 0.5], [-1.0, 1.0, 0.0], [0.5, 0.0, 3.0]])
    g = hermitian_lift(H)        # a signed graph: the +0.5 entry carries U = -1
    g.as_dense()                 # == H
    ```
    """
    H = check_hermitian(H, rtol)
    rtol = default_rtol(H.dtype) if rtol is None else rtol
    N = H.shape[0]
    k = int(fiber)
    if k < 1 or N % k:
        raise ValueError(f"fiber must be a positive divisor of the size {N} of H, got {fiber}")
    n = N // k
    Hb = H.reshape(n, k, n, k).transpose(0, 2, 1, 3)
    if edges is None:
        s, r = _edges_from_pattern(jnp.sqrt(jnp.sum(jnp.abs(Hb) ** 2, axis=(-2, -1))), atol)
    else:
        e = np.asarray(edges)
        if e.size == 0:
            e = e.reshape(0, 2)
        if e.ndim != 2 or e.shape[1] != 2 or not np.issubdtype(e.dtype, np.integer):
            raise ValueError(f"edges must be an (E, 2) integer array, got shape {e.shape}")
        s, r = e[:, 0], e[:, 1]
    idx = np.arange(n)
    return _from_blocks(s, r, Hb[s, r], Hb[idx, idx], n, rtol=rtol, project=project)


def _entries(graph: Graph):
    """`(senders, receivers, blocks)` with `H[s_e, r_e] = blocks[e]` (shape `(E, k, k)`)."""
    k = graph.fiber
    if graph.connection is None:
        u = jnp.ones((graph.num_edges, 1, 1), graph.weights.dtype)
    else:
        u, _ = graph.connection.transports()
        u = u.reshape(graph.num_edges, k, k)
    return graph.senders, graph.receivers, -graph.weights[:, None, None] * u


def _diagonal(graph: Graph) -> Array:
    d = graph.degree()
    return d if graph.potential is None else d + graph.potential


def sheaf_to_scalar(graph: Graph) -> Graph:
    """The sheaf (connection) graph on `n` nodes with fibre `k` as a scalar graph on `n k` nodes
    with the same Hamiltonian: node `(i, a)` is node `i k + a`.

    Each non-zero entry `(U_e)_ab` of a block gives a scalar edge `(s k + a, r k + b)` with
    `H = -w_e (U_e)_ab`, lifted as in [`jaxstat.equivalence.hermitian_lift`][] (`k = 1`): a
    magnetic graph for complex blocks, a signed graph for real (orthogonal) ones. `E k^2` scalar
    edges for dense blocks, fewer for sparse ones (e.g. `E k` for signed permutations). The
    potential is
    `deg_i + V_i - (scalar degree of (i, a))`. Exact: both graphs have the same `as_dense()`.

    Zero entries are dropped when the blocks are concrete; under `jit` every entry is kept.
    """
    k = graph.fiber
    if k == 1:
        return graph
    s, r, blocks = _entries(graph)
    a, b = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    ss = (np.asarray(s)[:, None] * k + a).reshape(-1)
    rr = (np.asarray(r)[:, None] * k + b).reshape(-1)
    vals = blocks.reshape(-1)
    if is_concrete(vals):
        keep = np.asarray(vals != 0)
        ss, rr, vals = ss[keep], rr[keep], vals[keep]
    diag = jnp.repeat(_diagonal(graph), k)
    n = graph.num_nodes * k
    return _from_blocks(
        ss,
        rr,
        vals[:, None, None],
        diag[:, None, None].astype(vals.dtype),
        n,
        rtol=0.0,
        project=False,
    )


def scalar_to_sheaf(
    graph: Graph, fiber: int, *, rtol: float | None = None, project: bool = False
) -> Graph:
    """A scalar graph on `n k` nodes as a sheaf graph on `n` nodes with fibre `k` (node `p` is
    `(p // k, p % k)`), when its Hamiltonian is admissible at block size `k`.

    The entries between groups `i != j` form the block `H_ij`, which must be conformal
    (`H_ij^H H_ij = w^2 I`); the diagonal `deg_p + V_p` must be constant on each group and no edge
    may join two nodes of one group (the diagonal blocks of a sheaf Hamiltonian are `(deg_i + V_i)
    I`). Inverse of [`jaxstat.equivalence.sheaf_to_scalar`][]. `O(E)` without a dense matrix.

    **Raises:** `ValueError` when the grouping is not admissible (with `project=False`).
    """
    k = int(fiber)
    if graph.fiber != 1:
        raise ValueError(f"scalar_to_sheaf needs a scalar graph, got fibre {graph.fiber}")
    if k < 1 or graph.num_nodes % k:
        raise ValueError(f"fiber must divide the number of nodes {graph.num_nodes}, got {fiber}")
    if k == 1:
        return graph
    n = graph.num_nodes // k
    s, r, vals = _entries(graph)
    s, r, vals = np.asarray(s), np.asarray(r), vals[:, 0, 0]
    gs, gr = s // k, r // k
    inside = gs == gr
    if np.any(inside) and not project:
        e = int(np.argmax(inside))
        raise ValueError(
            f"edge {e} joins nodes {s[e]} and {r[e]} of the same group {gs[e]}: the diagonal "
            "blocks of a sheaf Hamiltonian are multiples of the identity; pass project=True to "
            "drop such edges, or regroup the nodes"
        )
    keep = ~inside
    s, r, gs, gr, vals = s[keep], r[keep], gs[keep], gr[keep], vals[keep]
    # Orient every entry from the smaller group to the larger one (conjugating when flipped).
    flip = gs > gr
    lo, hi = np.where(flip, gr, gs), np.where(flip, gs, gr)
    ra, cb = np.where(flip, r % k, s % k), np.where(flip, s % k, r % k)
    vals = jnp.where(jnp.asarray(flip), jnp.conj(vals), vals)
    pairs, inv = np.unique(lo * n + hi, return_inverse=True)
    blocks = jnp.zeros((pairs.size, k, k), vals.dtype).at[inv, ra, cb].add(vals)
    diag = _diagonal(graph).reshape(n, k)
    diag_blocks = diag[:, :, None] * jnp.eye(k, dtype=diag.dtype)
    rtol = default_rtol(vals.dtype) if rtol is None else rtol
    return _from_blocks(
        pairs // n,
        pairs % n,
        blocks,
        diag_blocks.astype(blocks.dtype),
        n,
        rtol=rtol,
        project=project,
    )
