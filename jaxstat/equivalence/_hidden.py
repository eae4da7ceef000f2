"""Sparse lifts with hidden nodes: a dense operator as the Kron reduction of a larger graph.

Eliminating hidden nodes `B` from `M = H + c I` (Kron reduction, `jaxstat.graphs.kron_reduction`)
leaves on the visible nodes `S`

    K = M_SS - M_SB M_BB^{-1} M_BS.

Hidden nodes `k = 1..r` joined only to visible nodes, with `M_kk = tau_k > 0` and
`M_{S,k} = x_k`, contribute `-sum_k x_k x_k^H / tau_k`. So a target `A` with

    A = H_base - R R^H        (H_base a sparse graph Hamiltonian on S, R of shape (m, r))

is the Kron reduction of the graph on `m + r` nodes with the base edges, one hub per column of
`R` joined to the visible nodes where `R` is non-zero (`x_k = sqrt(tau_k) R_k`), and potentials
that make the diagonal of `M` equal `diag(H_base) + c` on `S` and `tau` on `B`:
`kron_reduction(lift, range(m), shift=c) == A + c I`. Sparse when `A` is "sparse minus low rank";
any Hermitian `A` has such a form with a diagonal base (`hidden_node_lift`).

Hypothesis: `H_base - A` positive semidefinite (a PSD hidden block can only subtract a PSD term).
Then `H_lift + c` is positive definite exactly when `A + c` is (Schur complement), which is the
strong monotonicity of a gradient-model layer on the lift.

No hidden-node lift represents a driven-damped layer `(gamma + i H)^{-1}`: eliminating hidden
nodes at damping `gamma` gives `gamma + i H_SS + sum_k x_k x_k^H / (gamma + i tau_k)`, whose
Hermitian part exceeds `gamma` by the PSD term `sum_k gamma x_k x_k^H / (gamma^2 + tau_k^2)`
(dissipation through the hidden nodes), so it is never `gamma + i A` with `A` Hermitian.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float, Inexact

from .._checks import is_concrete
from ..graphs import Graph
from ._lift import _diagonal, _entries, _from_blocks, check_hermitian, default_rtol


def _base_entries(base, m: int | None):
    """`(senders, receivers, values, diagonal, m)` of the base operator (a Graph or a diagonal)."""
    if isinstance(base, Graph):
        if base.fiber != 1:
            raise ValueError("hidden-node lifts need a scalar base graph; use sheaf_to_scalar")
        s, r, blocks = _entries(base)
        return np.asarray(s), np.asarray(r), blocks[:, 0, 0], _diagonal(base), base.num_nodes
    d = jnp.asarray(base)
    if d.ndim != 1:
        raise ValueError(f"base must be a Graph or a diagonal of shape (m,), got shape {d.shape}")
    if not jnp.issubdtype(d.dtype, jnp.floating):
        raise TypeError(f"a diagonal base must be real, got dtype {d.dtype}")
    empty = np.zeros(0, np.int64)
    return empty, empty, jnp.zeros(0, d.dtype), d, d.shape[0]


def low_rank_lift(
    base: Graph | Float[ArrayLike, " m"],
    R: Inexact[ArrayLike, "rows r"],
    *,
    shift: float = 0.0,
    hidden_diagonal: Float[ArrayLike, "*hidden"] | None = None,
) -> Graph:
    """The graph on `m + r` nodes (visible `0..m-1`, hidden hubs `m..m+r-1`) whose Kron reduction
    at shift `c` is `H_base - R R^H + c I`.

    `kron_reduction(lift, jnp.arange(m), shift=c) == H_base - R R^H + c I` exactly (module
    docstring). Edges: the base's, plus `(i, m + k)` for every non-zero `R_ik` (all entries when `R`
    is traced), `E_base + nnz(R)` in all. Differentiable with respect to the base graph's parameters
    and `R`.

    **Arguments:**

    - `base`: the visible part, a scalar `Graph` on `m` nodes or a real diagonal `(m,)`.
    - `R`: the low-rank factor, shape `(m, r)`, real or complex.
    - `shift`: `c`, the uniform shift at which the reduction is exact (a gradient-model layer
      with `Quadratic(mu)` needs `c = mu`).
    - `hidden_diagonal`: `tau > 0`, the diagonal of `M = H + c I` on the hidden nodes (default
      `|R_k|^2`, which makes the lift scale with `A`).

    **Returns:** a `jaxstat.graphs.Graph` on `m + r` nodes.
    """
    s0, r0, v0, diag0, m = _base_entries(base, None)
    R = jnp.asarray(R)
    if R.ndim != 2 or R.shape[0] != m:
        raise ValueError(f"R must have shape ({m}, r) to match the base, got {R.shape}")
    r = R.shape[1]
    if hidden_diagonal is None:
        tau = jnp.sum(jnp.abs(R) ** 2, axis=0)
        tau = jnp.where(tau > 0, tau, 1.0)
    else:
        tau = jnp.broadcast_to(jnp.asarray(hidden_diagonal), (r,))
        if is_concrete(tau) and not bool(jnp.all(tau > 0)):
            raise ValueError("hidden_diagonal must be positive")
    x = R * jnp.sqrt(tau)
    if is_concrete(x):
        i, k = np.nonzero(np.asarray(x))
    else:
        i, k = (a.reshape(-1) for a in np.meshgrid(np.arange(m), np.arange(r), indexing="ij"))
    senders = np.concatenate([s0, i])
    receivers = np.concatenate([r0, m + k])
    dtype = jnp.result_type(v0, x)
    vals = jnp.concatenate([v0.astype(dtype), x[i, k].astype(dtype)])
    diag = jnp.concatenate([diag0, tau - shift]).astype(dtype)
    return _from_blocks(
        senders, receivers, vals[:, None, None], diag[:, None, None], m + r, rtol=0.0, project=False
    )


def hidden_node_lift(
    A: Inexact[ArrayLike, "rows cols"],
    *,
    base: Graph | Float[ArrayLike, " d"] | None = None,
    shift: float = 0.0,
    rtol: float | None = None,
) -> Graph:
    """A sparse graph with hidden nodes whose Kron reduction onto its first `m` nodes is `A`.

    Factorises `H_base - A = R R^H` (eigendecomposition, dropping eigenvalues below
    `rtol * |H_base - A|`) and returns [`jaxstat.equivalence.low_rank_lift`][]`(base, R)`, so
    `kron_reduction(lift, jnp.arange(m), shift=c) == A + c I`. The number of hidden nodes is
    `rank(H_base - A)`. With the default diagonal base
    `D_i = A_ii + sum_{j != i} |A_ij|` (Gershgorin: `D - A` is diagonally dominant, hence PSD)
    every Hermitian `A` is lifted, by up to `m` hubs with `m r` edges; with a sparse `base` such
    that `base - A` has low rank `r`, the lift has `E_base + m r` edges.

    **Arguments:**

    - `A`: Hermitian, shape `(m, m)`, concrete.
    - `base`: `None` (Gershgorin diagonal), a real diagonal `(m,)` (e.g. `lambda_max(A)` for a
      lift of rank `< m`), or a scalar `Graph` on `m` nodes.
    - `shift`: the shift `c` at which the reduction is exact.
    - `rtol`: rank cut-off and tolerance of the checks (default `sqrt(eps)`).

    **Returns:** a `jaxstat.graphs.Graph` on `m + rank` nodes, the visible ones first.

    **Raises:** `ValueError` if `A` is not Hermitian or `H_base - A` is not positive
    semidefinite (no hidden-node lift over that base exists: see the module docstring).

    **Example:**

    ```python
    import jax.numpy as jnp
    import jaxstat
    from jaxstat.equivalence import hidden_node_lift

    A = jnp.array([[2.0, -1.0, 0.5], [-1.0, 1.0, 0.3], [0.5, 0.3, 3.0]])  # Hermitian
    lift = hidden_node_lift(A)
    jaxstat.graphs.kron_reduction(lift, jnp.arange(A.shape[0]))   # == A
    ```
    """
    A = check_hermitian(A, rtol, name="A")
    if not is_concrete(A):
        raise ValueError(
            "hidden_node_lift needs a concrete A (its rank sets the graph); use "
            "low_rank_lift with a fixed factor R inside jit"
        )
    rtol = default_rtol(A.dtype) if rtol is None else rtol
    m = A.shape[0]
    if base is None:
        off = jnp.sum(jnp.abs(A), axis=1) - jnp.abs(jnp.diagonal(A))
        base = jnp.real(jnp.diagonal(A)) + off
    if isinstance(base, Graph):
        if base.num_nodes != m or base.fiber != 1:
            raise ValueError(f"the base graph must be scalar on {m} nodes")
        P = base.as_dense() - A
    else:
        d = jnp.asarray(base)
        if d.shape != (m,):
            raise ValueError(f"a diagonal base must have shape ({m},), got {d.shape}")
        P = jnp.diag(d).astype(jnp.result_type(d, A)) - A
    P = (P + jnp.conj(P.T)) / 2
    lam, Q = jnp.linalg.eigh(P)
    scale = max(float(jnp.max(jnp.abs(lam))), float(jnp.finfo(lam.dtype).tiny))
    if float(lam[0]) < -rtol * scale:
        raise ValueError(
            f"H_base - A is not positive semidefinite (lambda_min = {float(lam[0]):.3e}): hidden "
            "nodes with a positive diagonal only subtract a PSD term in a Kron reduction, so no "
            "hidden-node lift over this base reproduces A; raise the base diagonal (the default "
            "Gershgorin diagonal always works)"
        )
    keep = np.flatnonzero(np.asarray(lam) > rtol * scale)
    R = Q[:, keep] * jnp.sqrt(lam[keep])
    return low_rank_lift(base, R, shift=shift)
