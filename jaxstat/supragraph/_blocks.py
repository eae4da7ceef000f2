"""The global system solved by its block lower-triangular structure: block forward substitution
(nonlinear: one block Gauss-Seidel sweep) for `F(Psi) = 0`, block back substitution for the
adjoint `J^H lam = -grad l`.

Layer `l`'s residual depends on `psi_l` and `psi_{l-1}` only,
`F_l(Psi) = F_l(psi_l; s_l(psi_{l-1}))`, so the Jacobian `J = dF/dPsi` has diagonal blocks
`J_ll = dF_l/dpsi_l` (one layer's own Jacobian) and sub-diagonal blocks
`J_{l,l-1} = dF_l/dpsi_{l-1}` (through the source and the readout), and nothing else.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
from jaxtyping import Array, PyTree

from .._krylov import GMRES
from .._numerics import inner_forcing
from ._network import pack_complex, States, StationaryNetwork, unpack_states
from ._solution import RESULTS


def _unpack(y):
    return unpack_states((y,))[0]


def block_residual(
    network: StationaryNetwork, l: int, y_l: PyTree[Array], y_prev: PyTree[Array] | None, x: Array
) -> PyTree[Array]:
    """`F_l(psi_l; s_l)` on packed states, `s_l = B_l rho_{l-1}(psi_{l-1}) + b_l` (`psi_0 = x`,
    `y_prev` ignored for `l = 0`): the only inputs layer `l`'s residual reads."""
    layer = network.layers[l]
    h = x if l == 0 else network.layers[l - 1].readout(_unpack(y_prev))
    psi = _unpack(y_l)
    f = layer.model.residual(psi, layer.source(h), layer.graph.assemble())
    return pack_complex(f.astype(psi.dtype))


def _diagonal_block(network, l, y, x) -> lx.AbstractLinearOperator:
    """`J_ll = dF_l/dpsi_l` at packed states `y`, linearised (its primal computed once)."""
    y_prev = None if l == 0 else y[l - 1]
    op = lx.JacobianLinearOperator(
        lambda y_l, args: block_residual(args[0], l, y_l, args[1], args[2]),
        y[l],
        (network, y_prev, x),
    )
    return lx.linearise(op)


def _worst(result, new):
    """The first failure in a sequence of results."""
    return RESULTS.where(result == RESULTS.successful, RESULTS.promote(new), result)


class BlockTriangular(eqx.Module):
    """Solve the global system by its block lower-triangular structure, one layer at a time.

    **Forward** (`jaxstat.supragraph.solve(..., solver=BlockTriangular())`): the nonlinear block
    forward substitution, i.e. block Gauss-Seidel, which on a block lower-triangular system is
    exact after one sweep: for `l = 1, ..., L`,

        psi_l = root of  psi -> F_l(psi; s_l(psi_{l-1}))      (psi_0 = x),

    each by the layer's own stationary solve ([`jaxstat.stationary.StationaryLayer`][]'s
    `solver`, `adjoint`, `max_steps`), warm-started from `states0`. Its linear form solves a
    Newton step `J d = b` exactly: `J_ll d_l = b_l - J_{l,l-1} d_{l-1}`
    (`forward_substitution`). Differentiating `solve` runs each layer's implicit adjoint: the
    block back substitution below, by autodiff.

    **Adjoint** (`jaxstat.supragraph.gradient(..., linear_solver=BlockTriangular())`): the one
    adjoint system `J^H lam = g` of the global Jacobian, block upper-triangular, solved by block
    back substitution: for `l = L, ..., 1`,

        J_ll^H lam_l = g_l - J_{l+1,l}^H lam_{l+1}        (lam_{L+1} = 0),

    each diagonal solve with `linear_solver` (matrix-free, `J_ll^H` by vector-Jacobian
    products), each off-diagonal product one vector-Jacobian product of `F_{l+1}` with respect
    to `psi_l`.

    A failed diagonal solve (forward or adjoint) sets the result of the whole solve to that
    block's result code; later blocks are still computed, from the failed block's value.

    **Arguments:**

    - `linear_solver`: the `lineax` solver of each diagonal block `J_ll` or `J_ll^H`. Default:
      restarted GMRES to `|b - A x| <= 1e-4 |b|` in single precision, `1e-11 |b|` in double
      (the accuracy of a layer's own implicit adjoint).
    """

    linear_solver: lx.AbstractLinearSolver | None = None

    def block_solver(self, dtype) -> lx.AbstractLinearSolver:
        """The solver of the diagonal blocks for states of real dtype `dtype`."""
        if self.linear_solver is not None:
            return self.linear_solver
        return GMRES(rtol=inner_forcing(dtype)[1], atol=0.0)

    def sweep(
        self, network: StationaryNetwork, x: Array, states0: States
    ) -> tuple[States, RESULTS, Array]:
        """`(Psi*, result, total root-finder steps)` by one block Gauss-Seidel sweep."""
        h, states = x, []
        result, steps = RESULTS.successful, jnp.array(0)
        for layer, psi0 in zip(network.layers, states0):
            sol = layer.solve(h, psi0, throw=False)
            states.append(sol.value)
            result = _worst(result, sol.result)
            steps = steps + sol.num_steps
            h = layer.readout(sol.value)
        return tuple(states), result, steps

    def forward_substitution(
        self, network: StationaryNetwork, states: States, x: Array, rhs: PyTree[Array], dtype
    ) -> tuple[PyTree[Array], RESULTS]:
        """`d` solving `J(Psi) d = rhs` on packed states: `J_ll d_l = rhs_l - J_{l,l-1} d_{l-1}`
        for `l = 1, ..., L` (the sub-diagonal products as Jacobian-vector products)."""
        y = pack_complex(tuple(states))
        solver = self.block_solver(dtype)
        out, result = [], RESULTS.successful
        for l in range(network.num_layers):
            r = rhs[l]
            if l > 0:
                _, jv = jax.jvp(
                    lambda y_prev: block_residual(network, l, y[l], y_prev, x),
                    (y[l - 1],),
                    (out[l - 1],),
                )
                r = jtu.tree_map(jnp.subtract, r, jv)
            sol = lx.linear_solve(_diagonal_block(network, l, y, x), r, solver, throw=False)
            out.append(sol.value)
            result = _worst(result, sol.result)
        return tuple(out), result

    def back_substitution(
        self, network: StationaryNetwork, states: States, x: Array, rhs: PyTree[Array], dtype
    ) -> tuple[PyTree[Array], RESULTS]:
        """`lam` solving `J(Psi)^H lam = rhs` on packed states:
        `J_ll^H lam_l = rhs_l - J_{l+1,l}^H lam_{l+1}` for `l = L, ..., 1` (the off-diagonal
        products as vector-Jacobian products)."""
        y = pack_complex(tuple(states))
        solver = self.block_solver(dtype)
        L = network.num_layers
        out, result = [None] * L, RESULTS.successful
        for l in reversed(range(L)):
            r = rhs[l]
            if l < L - 1:
                _, vjp = jax.vjp(
                    lambda y_l, l=l: block_residual(network, l + 1, y[l + 1], y_l, x), y[l]
                )
                (c,) = vjp(out[l + 1])
                r = jtu.tree_map(jnp.subtract, r, c)
            sol = lx.linear_solve(_diagonal_block(network, l, y, x).T, r, solver, throw=False)
            out[l] = sol.value
            result = _worst(result, sol.result)
        return tuple(out), result
