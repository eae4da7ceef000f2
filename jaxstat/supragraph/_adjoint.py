"""Reverse mode as the adjoint of the global system: `J(Psi*)^H lam* = -grad l(Psi*)`, one
transposed solve, and parameter gradients `dl/dtheta = Re <lam*, dF/dtheta>`.

Derivation: `F(Psi*(theta), theta) = 0` gives `J dPsi*/dtheta = -dF/dtheta`, so
`dl/dtheta = <grad l, dPsi*/dtheta> = -<J^{-H} grad l, dF/dtheta> = Re <lam*, dF/dtheta>`.
Everything is computed on packed (real) states, where `J^H` is the real transpose.
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
import optimistix as optx
from jaxtyping import Array, ArrayLike, Float, Inexact, PyTree

from .._numerics import any_nonfinite, real_dtype
from ._blocks import BlockTriangular
from ._network import pack_states, States, StationaryNetwork, unpack_states
from ._solution import Gradient, RESULTS
from ._solve import initial_states, solve


Loss = Callable[[States, Any], Any]
"""`loss(states, args)`: a real scalar `l`, or a pytree of residuals `r` with `l = 1/2 |r|^2`."""


def scalar_loss(loss: Loss, states: States, args) -> Float[Array, ""]:
    """`l(Psi)`: the loss's scalar, or `1/2 sum |r|^2` of its residuals."""
    out = loss(states, args)
    leaves = jtu.tree_leaves(out)
    if not leaves or not all(jnp.issubdtype(jnp.result_type(v), jnp.inexact) for v in leaves):
        raise TypeError("the loss must return a real scalar or a pytree of inexact arrays")
    if is_scalar(out):
        if jnp.iscomplexobj(leaves[0]):
            raise TypeError("a scalar loss must be real")
        return jnp.asarray(leaves[0])
    return 0.5 * sum(jnp.sum(jnp.abs(v) ** 2) for v in leaves)


def is_scalar(out) -> bool:
    leaves = jtu.tree_leaves(out)
    return len(leaves) == 1 and jnp.ndim(leaves[0]) == 0 and eqx.is_array_like(leaves[0])


def parameter_gradients(
    network: StationaryNetwork, y: PyTree[Array], x: Array, lam: PyTree[Array]
) -> tuple[PyTree, Array]:
    """`Re <lam, dF/dtheta>` (shaped like the network) and `Re <lam, dF/dx>` at packed states `y`:
    one vector-Jacobian product of the global residual."""
    params, static = eqx.partition(network, eqx.is_inexact_array)

    def residual(params, x):
        return eqx.combine(params, static).packed_residual(y, x)

    _, vjp = jax.vjp(residual, params, x)
    return vjp(lam)


def gradient(
    network: StationaryNetwork,
    x: Inexact[ArrayLike, "..."],
    loss: Loss,
    args: PyTree = None,
    states: States | None = None,
    *,
    solver: BlockTriangular
    | lx.AbstractLinearSolver
    | optx.AbstractRootFinder
    | optx.AbstractLeastSquaresSolver
    | None = None,
    linear_solver: BlockTriangular | lx.AbstractLinearSolver | None = None,
    max_steps: int = 256,
    throw: bool = True,
) -> Gradient:
    """The loss at the network's stationary state and its gradients by the global adjoint.

    Solves the global system `F(Psi*) = 0` ([`jaxstat.supragraph.solve`][]; skipped when
    `states` is given), then the adjoint system, one transposed solve with the block
    lower-triangular Jacobian,

        J(Psi*)^H lam* = -grad l(Psi*),

    (block upper-triangular; by default solved by block back substitution,
    `J_ll^H lam_l = -grad_l l - J_{l+1,l}^H lam_{l+1}` for `l = L, ..., 1`, see
    [`jaxstat.supragraph.BlockTriangular`][]), and reads every parameter gradient off one
    vector-Jacobian product of `F`: `dl/dtheta = Re <lam*, dF/dtheta>` (the weights and
    connections of every graph, the sources `B_l, b_l`, the models' and readouts' parameters,
    the input `x`). These equal `jax.grad` of `loss(network.states(x), args)` through the
    sequential layers.

    **Arguments:**

    - `network`: a [`jaxstat.supragraph.StationaryNetwork`][].
    - `x`: the input.
    - `loss`: `loss(states, args)` returning a real scalar `l`, or a pytree of residuals `r`
      (then `l = 1/2 |r|^2`). It must not depend on the network other than through `states`.
    - `args`: passed to `loss` (targets, a head's parameters); its gradient is returned too.
    - `states`: `Psi*` if already known (no forward solve).
    - `solver`, `max_steps`: for the forward solve, see `solve`.
    - `linear_solver`: for the adjoint solve: a [`jaxstat.supragraph.BlockTriangular`][] (block
      back substitution, `J_ll^H lam_l = -grad_l l - J_{l+1,l}^H lam_{l+1}` for
      `l = L, ..., 1`: still the one adjoint system, solved by its structure), or a `lineax`
      solver of the whole transposed system (e.g. `default_linear_solver`: GMRES over all
      layers, tolerance `1e-12` in float64). Default: the `BlockTriangular` given as `solver`,
      else `BlockTriangular()`.
    - `throw`: raise on failure of either solve.

    **Returns:** a [`jaxstat.supragraph.Gradient`][] (`value`, `states`, `adjoint`, `grads`,
    `input_grad`, `args_grad`, `result`, `adjoint_residual`).

    **Example:**

    ```python
    import jax.numpy as jnp
    import jax.random as jr
    import jaxstat.graphs as jg
    import jaxstat.stationary as js
    from jaxstat.supragraph import feature_network, gradient

    graph = jg.random_graph(jr.key(0), 50, 150)
    network = feature_network(graph, js.DrivenDampedModel(gamma=1.0), [4, 8, 8], key=jr.key(1))
    x = jr.normal(jr.key(2), (50, 4))
    target = jnp.zeros((50, 16))

    def loss(states, target):
        return network.output(states) - target  # residuals: l = 1/2 |rho(psi_L) - target|^2

    g = gradient(network, x, loss, target)
    g.grads.layers[0].graph.weights   # d l / d w_e of layer 1's edges
    ```
    """
    x = jnp.asarray(x)
    if linear_solver is None:
        linear_solver = solver if isinstance(solver, BlockTriangular) else BlockTriangular()
    # Two jitted stages (inlined under an outer jit): the forward solve is `solve` itself, so
    # eager callers share its compilation.
    if states is None:
        fwd = solve(network, x, solver=solver, max_steps=max_steps, throw=throw)
        states, result = fwd.value, fwd.result
    else:
        states, result = initial_states(network, x, states), RESULTS.successful
    return _adjoint_gradient(network, x, loss, args, states, result, linear_solver, throw)


@eqx.filter_jit
def _adjoint_gradient(network, x, loss, args, states, result, linear_solver, throw) -> Gradient:
    states = jax.lax.stop_gradient(states)
    dtype = real_dtype(*jtu.tree_leaves(states))
    y = pack_states(states)

    dyn_args, static_args = eqx.partition(args, eqx.is_inexact_array)

    def packed_loss(y, dyn_args):
        return scalar_loss(loss, unpack_states(y), eqx.combine(dyn_args, static_args))

    value, (grad_y, args_grad) = jax.value_and_grad(packed_loss, argnums=(0, 1))(y, dyn_args)
    op = network.jacobian(states, x)
    rhs = jtu.tree_map(jnp.negative, grad_y)
    if isinstance(linear_solver, BlockTriangular):
        lam, adj_result = linear_solver.back_substitution(network, states, x, rhs, dtype)
    else:
        adj = lx.linear_solve(op.T, rhs, linear_solver, throw=False)
        lam, adj_result = adj.value, RESULTS.promote(adj.result)
    grads, input_grad = parameter_gradients(network, y, x, lam)
    adjoint_residual = optx.max_norm(jtu.tree_map(jnp.subtract, op.T.mv(lam), rhs))

    ok = result == RESULTS.successful
    bad = ~jnp.isfinite(value) | any_nonfinite(grad_y)
    result = RESULTS.where(ok, adj_result, result)
    result = RESULTS.where(ok & bad, RESULTS.nonfinite_gradient, result)
    lam = unpack_states(lam)
    if throw:
        lam = result.error_if(lam, result != RESULTS.successful)
    return Gradient(
        value=value,
        states=states,
        adjoint=lam,
        grads=grads,
        input_grad=input_grad,
        args_grad=args_grad,
        result=result,
        adjoint_residual=adjoint_residual,
    )
