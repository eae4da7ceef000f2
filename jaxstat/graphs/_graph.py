"""Weighted graphs with connections, and their Laplacian / Hamiltonian as sparse operators.

A graph on `n` nodes has undirected edges `e = (i, j)`, stored once, with weights `w_e >= 0` and
optionally a connection `U_e` (see `_connection.py`) and a node potential `V`. Its Hamiltonian is

    (H psi)_i = sum_{j ~ i} w_ij (psi_i - U_ij psi_j) + V_i psi_i,      H = L + diag(V),

Hermitian, and positive semidefinite when `V >= 0`. It is applied to node features of shape
`(n, ...)` (`(n, k, ...)` for a connection with fibre `k > 1`) as a sparse product of cost
`O(E k^2 x features)`; a dense `n x n` matrix is built only by `as_dense`, for small problems.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Inexact, Int

from .._checks import is_concrete
from ._connection import AbstractConnection
from ._sparse import csr_matmul, csr_structure, permute


class SparseHamiltonian(eqx.Module):
    """The assembled operator `H = diag(deg + V) + A`, `A` the off-diagonal part in CSR form.

    Build it once with `Graph.assemble()` and apply it many times: assembling costs one gather of
    the `2 E k^2` stored entries, each product one sparse pass. Differentiable with respect to
    `data` and `diagonal` (hence the graph's weights, connection and potential) and to the vector.
    """

    data: Inexact[Array, " nnz"]
    diagonal: Inexact[Array, " nk"]
    indices: Int[Array, " nnz"]
    indptr: Int[Array, " nk1"]
    rows: Int[Array, " nnz"]
    tperm: Int[Array, " nnz"]
    num_nodes: int = eqx.field(static=True)
    fiber: int = eqx.field(static=True)

    @property
    def dtype(self):
        return jnp.result_type(self.data, self.diagonal)

    def mv(self, x: Inexact[ArrayLike, "n ..."]) -> Inexact[Array, "n ..."]:
        """`H x` for node features `x` of shape `(n, ...)` (`(n, k, ...)` when `k > 1`)."""
        x = jnp.asarray(x)
        n, k = self.num_nodes, self.fiber
        if x.ndim == 0 or x.shape[0] != n or (k > 1 and (x.ndim < 2 or x.shape[1] != k)):
            want = f"({n}, ...)" if k == 1 else f"({n}, {k}, ...)"
            raise ValueError(f"node features must have shape {want}, got {x.shape}")
        flat = x.reshape(n * k, -1)
        dtype = jnp.result_type(self.dtype, flat)
        flat = flat.astype(dtype)
        y = self.diagonal[:, None].astype(dtype) * flat + csr_matmul(
            self.data, flat, self.indices, self.indptr, self.rows, self.tperm
        )
        return y.reshape(x.shape)

    __call__ = mv

    def gershgorin_bound(self) -> Float[Array, ""]:
        """An upper bound on the spectral radius of `H`: `max_i sum_j |H_ij|` (Gershgorin's
        theorem; for a graph Hamiltonian with `V >= 0` it is at most `2 max deg + max V`).
        `O(E)`, no eigenvalue computation."""
        rows = jax.ops.segment_sum(
            jnp.abs(self.data), self.rows, self.num_nodes * self.fiber, indices_are_sorted=True
        )
        return jnp.max(jnp.abs(self.diagonal) + rows, initial=0.0)


class _Structure(eqx.Module):
    """Integer structure of the CSR form (non-differentiable)."""

    order: Int[Array, " nnz"]
    inverse: Int[Array, " nnz"]
    indices: Int[Array, " nnz"]
    indptr: Int[Array, " nk1"]
    rows: Int[Array, " nnz"]
    tperm: Int[Array, " nnz"]


class Graph(eqx.Module):
    """An undirected weighted graph with an optional connection and node potential.

    Edges are stored once, `e = (senders[e], receivers[e])`; the connection transports from the
    receiver to the sender, `U_e = U_{s r}`, and `U_{r s} = U_e^H`. Weights, phases, blocks and the
    potential are differentiable leaves; the index arrays are not.

    Operators (see the module docstring for the equation):
    `laplacian(x)` is `L x`, `hamiltonian(x)` is `H x = L x + V x`, `assemble()` builds the sparse
    operator once for repeated products, `operator(x)` wraps it as a `lineax` operator.

    **Arguments:**

    - `senders`, `receivers`: integer arrays of shape `(E,)`, node indices in `[0, num_nodes)`,
      no self-loops (parallel edges are allowed and add up).
    - `weights`: shape `(E,)`, non-negative; defaults to ones.
    - `num_nodes`: `n`; defaults to `1 + max index`.
    - `connection`: `None` (combinatorial), a `PhaseConnection` or a `BlockConnection`.
    - `potential`: node potential `V`, shape `(n,)`, real.

    **Example:**

    ```python
    import jax.numpy as jnp
    import jaxstat

    g = jaxstat.graphs.Graph([0, 1], [1, 2], weights=[1.0, 2.0])
    g.laplacian(jnp.ones((3, 4)))  # zeros: constants are in the kernel of L
    ```
    """

    senders: Int[Array, " E"]
    receivers: Int[Array, " E"]
    weights: Float[Array, " E"]
    connection: AbstractConnection | None
    potential: Float[Array, " n"] | None
    num_nodes: int = eqx.field(static=True)
    structure: _Structure

    def __init__(
        self,
        senders,
        receivers,
        weights=None,
        num_nodes: int | None = None,
        *,
        connection: AbstractConnection | None = None,
        potential=None,
    ):
        s = np.asarray(senders)
        r = np.asarray(receivers)
        if s.ndim != 1 or s.shape != r.shape:
            raise ValueError(
                f"senders and receivers must be 1-D of equal length, got {s.shape} and {r.shape}"
            )
        if s.size and not (
            np.issubdtype(s.dtype, np.integer) and np.issubdtype(r.dtype, np.integer)
        ):
            raise TypeError("senders and receivers must be integer arrays")
        s, r = s.astype(np.int64), r.astype(np.int64)
        if num_nodes is None:
            num_nodes = int(max(s.max(initial=-1), r.max(initial=-1))) + 1
        num_nodes = int(num_nodes)
        if s.size and (min(s.min(), r.min()) < 0 or max(s.max(), r.max()) >= num_nodes):
            raise ValueError(f"edge endpoints must lie in [0, {num_nodes})")
        if np.any(s == r):
            e = int(np.argmax(s == r))
            raise ValueError(
                f"self-loops are not allowed: edge {e} is ({s[e]}, {s[e]}) "
                f"({int(np.sum(s == r))} in all). A loop adds nothing to the Laplacian "
                "(w_ii (psi_i - psi_i) = 0); drop them, e.g. `keep = senders != receivers`, or "
                "put a node term in `potential`"
            )
        num_edges = s.shape[0]
        if weights is None:
            weights = jnp.ones(num_edges)
        weights = jnp.asarray(weights)
        if not jnp.issubdtype(weights.dtype, jnp.floating):
            raise TypeError(f"weights must be real floating point, got dtype {weights.dtype}")
        if weights.shape != (num_edges,):
            raise ValueError(f"weights must have shape ({num_edges},), got {weights.shape}")
        if is_concrete(weights):
            nonfinite, negative = _flags(weights)
            if nonfinite:
                raise ValueError("weights must be finite")
            if negative:
                raise ValueError("weights must be non-negative")
        if potential is not None:
            potential = jnp.asarray(potential)
            if potential.shape != (num_nodes,):
                raise ValueError(f"potential must have shape ({num_nodes},), got {potential.shape}")
            if not jnp.issubdtype(potential.dtype, jnp.floating):
                raise TypeError(f"potential must be real floating point, got {potential.dtype}")
            if is_concrete(potential) and _flags(potential)[0]:
                raise ValueError("potential must be finite (it has NaN or inf entries)")
        k = 1 if connection is None else connection.fiber
        if connection is not None:
            u, _ = connection.transports()
            if u.shape[0] != num_edges:
                raise ValueError(f"connection has {u.shape[0]} edges, graph has {num_edges}")
        self.senders = jnp.asarray(s, dtype=jnp.int32)
        self.receivers = jnp.asarray(r, dtype=jnp.int32)
        self.weights = weights
        self.connection = connection
        self.potential = potential
        self.num_nodes = num_nodes
        self.structure = _build_structure(s, r, num_nodes, k)

    @classmethod
    def from_edges(
        cls,
        edges,
        weights=None,
        num_nodes: int | None = None,
        *,
        connection: AbstractConnection | None = None,
        potential=None,
    ) -> Graph:
        """A graph from a list of undirected edges `(i, j)`: an `(E, 2)` integer array, a list
        of pairs (`[(0, 1), (1, 2)]`) or any iterable of pairs (e.g. `networkx`'s `G.edges`).

        Each edge is stored once as given; parallel edges add up. Self-loops are refused (a
        loop adds nothing to the Laplacian), with a message saying how to drop them: the
        graph is never changed silently. The other arguments are those of `Graph`.
        Also available as `jaxstat.graphs.from_edges`.

        **Example:**

        ```python
        from jaxstat.graphs import Graph

        g = Graph.from_edges([(0, 1), (1, 2)], weights=[1.0, 2.0])
        ```
        """
        if not (hasattr(edges, "__array__") or isinstance(edges, (list, tuple))):
            edges = list(edges)
        e = np.asarray(edges)
        if e.size == 0:
            e = e.reshape(0, 2).astype(np.int64)
        if e.ndim != 2 or e.shape[1] != 2:
            raise ValueError(f"edges must be pairs (i, j), i.e. shape (E, 2); got shape {e.shape}")
        return cls(e[:, 0], e[:, 1], weights, num_nodes, connection=connection, potential=potential)

    @property
    def num_edges(self) -> int:
        return self.senders.shape[0]

    @property
    def fiber(self) -> int:
        """Fibre dimension `k` of the connection (1 without one)."""
        return 1 if self.connection is None else self.connection.fiber

    def check(self) -> list[tuple[Bool[Array, ""], str]]:
        """Conditions on the graph's values, as `(bad, message)` pairs, for a solve to check
        (inside `jit` with `eqx.error_if`): the weights must be non-negative, so that
        `L = sum_e w_e (...)` is positive semidefinite. (Non-finite weights, connection or
        potential are reported by the solve's result code.)

        The constructor checks concrete weights once, but they can change afterwards (an
        optimiser step, `eqx.tree_at`). When the weights are concrete the message names the
        number of negative weights and the first of them.
        """
        w = self.weights
        where = "some edge weights are negative"
        if is_concrete(w):  # the values are known (even while tracing): name them
            idx = np.flatnonzero(np.asarray(w) < 0)
            if idx.size:
                e = idx[0]
                where = (
                    f"{idx.size} edge weight{'s are' if idx.size > 1 else ' is'} negative (the "
                    f"first is edge {e}, ({np.asarray(self.senders)[e]}, "
                    f"{np.asarray(self.receivers)[e]}), w = {float(np.asarray(w)[e]):.4g})"
                )
        message = (
            f"{where}: edge weights must be non-negative, else the Laplacian is indefinite and "
            "a stationary state may be unstable or not exist. An unconstrained optimiser step "
            "can make weights negative; train them with `jaxstat.strata` (natural gradient "
            "or mirror descent, which keep them in the non-negative orthant), or project, "
            "e.g. `eqx.tree_at(lambda g: g.weights, graph, jnp.maximum(graph.weights, 0))`."
        )
        return [(_flags(w)[1], message)]

    def degree(self) -> Float[Array, " n"]:
        """Weighted degree `deg_i = sum_{j ~ i} w_ij`."""
        n = self.num_nodes
        return jax.ops.segment_sum(self.weights, self.senders, n) + jax.ops.segment_sum(
            self.weights, self.receivers, n
        )

    def assemble(self, potential: bool = True) -> SparseHamiltonian:
        """The sparse operator `H = L + diag(V)` (`L` alone with `potential=False`)."""
        k, w = self.fiber, self.weights
        if self.connection is None:
            vals = jnp.concatenate([-w, -w])
        else:
            fwd, bwd = self.connection.transports()
            shape = (-1,) + (1,) * (fwd.ndim - 1)
            vals = jnp.concatenate([-w.reshape(shape) * fwd, -w.reshape(shape) * bwd]).reshape(-1)
        diag = self.degree()
        if potential and self.potential is not None:
            diag = diag + self.potential
        diag = jnp.repeat(diag, k)
        st = self.structure
        return SparseHamiltonian(
            data=permute(vals, st.order, st.inverse),
            diagonal=diag,
            indices=st.indices,
            indptr=st.indptr,
            rows=st.rows,
            tperm=st.tperm,
            num_nodes=self.num_nodes,
            fiber=k,
        )

    def laplacian(self, x: Inexact[ArrayLike, "n ..."]) -> Inexact[Array, "n ..."]:
        """`(L x)_i = sum_{j ~ i} w_ij (x_i - U_ij x_j)`."""
        return self.assemble(potential=False).mv(x)

    def hamiltonian(self, x: Inexact[ArrayLike, "n ..."]) -> Inexact[Array, "n ..."]:
        """`H x = L x + V x`."""
        return self.assemble().mv(x)

    def operator(self, x, potential: bool = True) -> lx.FunctionLinearOperator:
        """`H` (or `L`) as a matrix-free `lineax` operator on arrays shaped like `x`.

        Tagged symmetric when real, positive semidefinite when it is a Laplacian (no potential), so
        `lx.linear_solve` and `optimistix` can pick solvers that use the structure.
        """
        op = self.assemble(potential)
        structure = jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(op.dtype, x))
        tags = []
        if not jnp.issubdtype(structure.dtype, jnp.complexfloating):
            tags.append(lx.symmetric_tag)
        if not potential or self.potential is None:
            tags.append(lx.positive_semidefinite_tag)
        return lx.FunctionLinearOperator(op.mv, structure, tags=frozenset(tags))

    def as_dense(self, potential: bool = True) -> Inexact[Array, "nk nk"]:
        """The dense `(n k) x (n k)` matrix of `H` (or `L`). For tests and small graphs only."""
        op = self.assemble(potential)
        nk = self.num_nodes * self.fiber
        m = jnp.zeros((nk, nk), op.dtype).at[op.rows, op.indices].add(op.data)
        return m + jnp.diag(op.diagonal.astype(op.dtype))


@jax.jit
def _flags(x):
    """Whether any entry of `x` is not finite, and whether any is negative: one program (the
    checks of concrete values, eagerly, would compile four)."""
    return jnp.any(~jnp.isfinite(x)), jnp.any(x < 0)


def _build_structure(s: np.ndarray, r: np.ndarray, n: int, k: int) -> _Structure:
    """CSR structure of the off-diagonal part for fibre `k`.

    Stored values are the blocks of the `2E` half-edges `h` (first `(s_e, r_e)`, then
    `(r_e, s_e)`), flattened as `(h, a, b)`: the entry at row `row(h) k + a`, column `col(h) k + b`.
    """
    hr = np.concatenate([s, r])
    hc = np.concatenate([r, s])
    a, b = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    rows = (hr[:, None, None] * k + a[None]).reshape(-1)
    cols = (hc[:, None, None] * k + b[None]).reshape(-1)
    order, indices, indptr, rows_sorted, tperm = csr_structure(rows, cols, n * k)
    return _Structure(
        order=jnp.asarray(order, dtype=jnp.int32),
        inverse=jnp.asarray(np.argsort(order), dtype=jnp.int32),
        indices=jnp.asarray(indices),
        indptr=jnp.asarray(indptr),
        rows=jnp.asarray(rows_sorted),
        tperm=jnp.asarray(tperm),
    )
