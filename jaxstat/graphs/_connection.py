"""Connections on the edges of a graph: how a neighbour's state is transported before comparison.

For an edge `e = (i, j)` stored once, a connection gives the transport `U_e = U_ij` from `j` to `i`;
the reverse direction uses `U_ji = U_ij^H`. The Laplacian is
`(L psi)_i = sum_{j ~ i} w_ij (psi_i - U_ij psi_j)`: `U = 1` gives the combinatorial Laplacian,
a U(1) phase `exp(i theta_e)` the magnetic Laplacian, a `k x k` unitary block the connection (sheaf)
Laplacian on fibres of dimension `k`.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, Inexact

from .._checks import is_concrete


class AbstractConnection(eqx.Module):
    """A transport `U_e` per edge. Subclasses give the fibre dimension and the blocks."""

    @property
    @abc.abstractmethod
    def fiber(self) -> int:
        """The fibre dimension `k`: node states have shape `(n, k, ...)` when `k > 1`."""

    @abc.abstractmethod
    def transports(self) -> tuple[Inexact[Array, " E ..."], Inexact[Array, " E ..."]]:
        """`(U_ij, U_ji)` per edge: shape `(E,)` for `k = 1`, `(E, k, k)` otherwise."""

    @property
    @abc.abstractmethod
    def is_complex(self) -> bool:
        """`True` when the transports are complex (the Hamiltonian is then complex Hermitian)."""

    @property
    @abc.abstractmethod
    def dof_per_edge(self) -> int:
        """Real degrees of freedom of one transport `U_e` (the dimension of its group)."""

    @property
    def transport_lipschitz(self) -> float | None:
        """`L` with `|U_e(theta') - U_e(theta)|_2 <= L |theta' - theta|_inf` in the connection's
        own parameters (`dof_per_edge` per edge), or `None` when they are not free coordinates
        (then parameter-space bounds hold the connection fixed)."""
        return None


class PhaseConnection(AbstractConnection):
    """A U(1) connection `U_ij = exp(i theta_e)`: the magnetic Laplacian.

    **Arguments:**

    - `theta`: the phase of each edge, shape `(E,)`, differentiable.
    """

    theta: Float[Array, " E"]

    def __init__(self, theta):
        theta = jnp.asarray(theta)
        if not jnp.issubdtype(theta.dtype, jnp.floating):
            raise TypeError(f"phases must be real floating point, got dtype {theta.dtype}")
        if theta.ndim != 1:
            raise ValueError(f"phases must have shape (E,), got {theta.shape}")
        self.theta = theta

    @property
    def fiber(self) -> int:
        return 1

    def transports(self):
        u = jnp.exp(1j * self.theta)
        return u, jnp.conj(u)

    @property
    def is_complex(self) -> bool:
        return True

    @property
    def dof_per_edge(self) -> int:
        return 1

    @property
    def transport_lipschitz(self) -> float:
        # |exp(i a) - exp(i b)| <= |a - b|.
        return 1.0


class BlockConnection(AbstractConnection):
    """A U(k) (or O(k)) connection: one `k x k` unitary block `U_ij` per edge.

    The sheaf (connection) Laplacian acts on node states of shape `(n, k, ...)`. Blocks are
    checked to be unitary when concrete (`|U^H U - I| <= tol`); use
    [`jaxstat.graphs.random_unitary_blocks`][] or your own parametrisation to build them.

    **Arguments:**

    - `blocks`: shape `(E, k, k)`, real (orthogonal) or complex (unitary).
    - `tol`: tolerance of the unitarity check; `None` skips it.
    """

    blocks: Inexact[Array, "E k k"]

    def __init__(self, blocks, tol: float | None = 1e-5):
        blocks = jnp.asarray(blocks)
        if blocks.ndim != 3 or blocks.shape[1] != blocks.shape[2]:
            raise ValueError(f"blocks must have shape (E, k, k), got {blocks.shape}")
        if not jnp.issubdtype(blocks.dtype, jnp.inexact):
            raise TypeError(f"blocks must be floating or complex, got dtype {blocks.dtype}")
        if tol is not None and is_concrete(blocks):
            k = blocks.shape[-1]
            err = jnp.max(jnp.abs(jnp.conj(blocks).swapaxes(-1, -2) @ blocks - jnp.eye(k)))
            if not bool(err <= tol * max(1, k)):
                raise ValueError(f"connection blocks are not unitary: max |U^H U - I| = {err:.2e}")
        self.blocks = blocks

    @property
    def fiber(self) -> int:
        return self.blocks.shape[-1]

    def transports(self):
        return self.blocks, jnp.conj(self.blocks).swapaxes(-1, -2)

    @property
    def is_complex(self) -> bool:
        return jnp.iscomplexobj(self.blocks)

    @property
    def dof_per_edge(self) -> int:
        # dim U(k) = k^2, dim O(k) = k (k - 1) / 2.
        k = self.fiber
        return k * k if self.is_complex else k * (k - 1) // 2
