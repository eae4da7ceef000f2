"""The exact global solve `F(Psi*) = 0` of a stationary network over all its layers at once."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
import optimistix as optx
from jaxtyping import Array, ArrayLike, Inexact

from .._krylov import GMRES
from .._numerics import any_nonfinite, default_tolerance, inner_forcing, real_dtype
from ._blocks import BlockTriangular
from ._network import pack_states, States, StationaryNetwork, unpack_states
from ._solution import RESULTS, Solution


def _gmres(rtol: float, atol: float) -> GMRES:
    # The global Jacobian is block lower-triangular: Krylov spaces need about L times the
    # dimension a single layer needs, hence a longer restart than `jaxstat.stationary`'s.
    # `jaxstat.stationary.GMRES` (restarted, relative stopping rule), not `lineax.GMRES`: see
    # `jaxstat._krylov` for why.
    return GMRES(rtol=rtol, atol=atol, restart=60, max_steps=20_000)


def default_linear_solver(dtype) -> GMRES:
    """Matrix-free GMRES for one solve with the global Jacobian (or its transpose): stops at
    `|b - A x| <= 1e-12 |b|` in double precision, `1e-5 |b|` in single."""
    tol = 1e-5 if jnp.finfo(dtype).bits <= 32 else 1e-12
    return _gmres(tol, 0.0)


def default_root_finder(dtype) -> optx.Newton:
    """Newton's method over all layers at once, with matrix-free GMRES inner solves (inexact-Newton
    forcing `1e-3` in single precision, `1e-6` in double, as `jaxstat.stationary`: each Newton
    step gains that factor, so a tighter forcing only costs GMRES iterations)."""
    tol = default_tolerance(dtype)
    inner = _gmres(inner_forcing(dtype)[0], 0.0)
    return optx.Newton(rtol=tol, atol=tol, linear_solver=inner)


def default_adjoint(dtype) -> optx.ImplicitAdjoint:
    """The root find's implicit adjoint: one transposed GMRES solve with the global Jacobian."""
    return optx.ImplicitAdjoint(linear_solver=default_linear_solver(dtype))


def initial_states(network: StationaryNetwork, x: Array, states0) -> States:
    """`states0` checked against the network's state structure and cast; zeros if `None`."""
    structure = network.state_structure(x)
    if states0 is None:
        return tuple(jnp.zeros(s.shape, s.dtype) for s in structure)
    network._check_structure(states0)
    out = []
    for i, (p, s) in enumerate(zip(states0, structure)):
        p = jnp.asarray(p)
        if p.shape != s.shape:
            raise ValueError(f"initial state of layer {i} must have shape {s.shape}, got {p.shape}")
        out.append(p.astype(jnp.result_type(s.dtype, p.dtype)))
    return tuple(out)


def layer_residuals(network: StationaryNetwork, states: States, x: Array) -> Array:
    """`max |F_l(Psi)|` per layer, shape `(L,)` (not differentiated)."""
    states, x, network = jax.lax.stop_gradient((states, x, network))
    return jnp.stack([jnp.max(jnp.abs(f)) for f in network.residual(states, x)])


def _residual_fn(y, args):
    network, x = args
    return network.packed_residual(y, x)


def solve(
    network: StationaryNetwork,
    x: Inexact[ArrayLike, "..."],
    states0: States | None = None,
    *,
    solver: BlockTriangular
    | lx.AbstractLinearSolver
    | optx.AbstractRootFinder
    | optx.AbstractLeastSquaresSolver
    | None = None,
    adjoint: optx.AbstractAdjoint | None = None,
    max_steps: int = 256,
    throw: bool = True,
) -> Solution:
    """The exact global solve: all layers' states at once, `F(Psi*) = 0` on the supra-graph.

    `F_l(Psi) = ` layer `l`'s stationarity residual with `s_l = B_l rho_{l-1}(psi_{l-1}) + b_l`
    (see [`jaxstat.supragraph.StationaryNetwork`][]). Three strategies:

    - [`jaxstat.supragraph.BlockTriangular`][] (default for a nonlinear network): `J` is block
      lower-triangular, so block Gauss-Seidel is exact after one sweep,
      `psi_l = root of F_l(.; s_l(psi_{l-1}))` for `l = 1, ..., L`, each by the layer's own
      stationary solve;
    - a `lineax` solver (default GMRES for a linear network, `network.is_linear`): one solve with
      the global Jacobian, `Psi* = Psi_0 - J^{-1} F(Psi_0)`;
    - an `optimistix` root finder: Newton (e.g. `default_root_finder`) over all layers at once,
      `J(Psi_k) (Psi_{k+1} - Psi_k) = -F(Psi_k)`, with matrix-free GMRES.

    On a branch the sequential forward pass also finds, `Psi*` equals `network.states(x)`.

    Differentiable: the root find carries optimistix's implicit adjoint (one transposed solve
    with `J`), the linear solve lineax's, `BlockTriangular` each layer's implicit adjoint (the
    block back substitution of `J^H`). For the adjoint of a loss with its parameter gradients in
    one call use [`jaxstat.supragraph.gradient`][].

    **Arguments:**

    - `network`: a [`jaxstat.supragraph.StationaryNetwork`][].
    - `x`: the input, the shape layer 1's source reads.
    - `states0`: initial states `(psi_1, ..., psi_L)` (default zeros); a warm start keeps a branch.
    - `solver`: a [`jaxstat.supragraph.BlockTriangular`][] (block forward substitution: one
      block Gauss-Seidel sweep, each layer's own stationary solve in turn; differentiated by
      each layer's implicit adjoint), a `lineax` linear solver (one linear solve; reports
      `RESULTS.not_affine` if `F` turns out not to be affine), or an `optimistix` root finder /
      least-squares solver over all layers at once. Default: GMRES if `network.is_linear`, else
      `BlockTriangular()`.
    - `adjoint`: the optimistix adjoint of the root find (default `ImplicitAdjoint` with GMRES);
      unused by the other solvers.
    - `max_steps`: root-finder iterations (`BlockTriangular`: each layer's own `max_steps`).
    - `throw`: raise on failure; with `False` inspect `solution.result`.

    **Returns:** a [`jaxstat.supragraph.Solution`][].

    **Example:**

    ```python
    import jax.random as jr
    import jaxstat.graphs as jg
    import jaxstat.stationary as js
    from jaxstat.supragraph import feature_network, solve

    graph = jg.random_graph(jr.key(0), 50, 150)
    network = feature_network(graph, js.DrivenDampedModel(gamma=1.0), [4, 8, 8], key=jr.key(1))
    x = jr.normal(jr.key(2), (50, 4))
    sol = solve(network, x)
    sol.value        # (psi_1, ..., psi_L), equal to network.states(x)
    sol.residual     # max |F(Psi*)|
    ```
    """
    x = jnp.asarray(x)
    if solver is None:
        # Chosen here, outside `filter_jit`, where the model parameters (arrays) are concrete:
        # inside, `kappa = 0` would be a tracer and a linear network would not be recognised.
        dtype = real_dtype(*jtu.tree_leaves(initial_states(network, x, states0)))
        solver = default_linear_solver(dtype) if network.is_linear else BlockTriangular()
    return _solve(network, x, states0, solver, adjoint, max_steps, throw)


@eqx.filter_jit
def _solve(network, x, states0, solver, adjoint, max_steps, throw) -> Solution:
    states0 = initial_states(network, x, states0)
    dtype = real_dtype(*jtu.tree_leaves(states0))
    tol = default_tolerance(dtype)
    y0 = pack_states(states0)
    args = (network, x)
    bad_input = any_nonfinite((network, x, states0))

    if isinstance(solver, BlockTriangular):
        # Block lower-triangular: one block Gauss-Seidel sweep is the exact root.
        states, result, num_steps = solver.sweep(network, x, states0)
        y = pack_states(states)
        res = layer_residuals(network, states, x)
    elif isinstance(solver, lx.AbstractLinearSolver):
        # Newton's first step is exact for an affine F: Psi* = Psi_0 - J^{-1} F(Psi_0).
        f0 = _residual_fn(y0, args)
        op = lx.linearise(lx.JacobianLinearOperator(_residual_fn, y0, args))
        sol = lx.linear_solve(op, jtu.tree_map(jnp.negative, f0), solver, throw=False)
        y = jtu.tree_map(jnp.add, y0, sol.value)
        result = RESULTS.promote(sol.result)
        num_steps = jnp.array(1)
        res = layer_residuals(network, unpack_states(y), x)
        scale = jnp.max(jnp.stack([jnp.max(jnp.abs(v)) for v in jtu.tree_leaves(f0)]))
        scale = jax.lax.stop_gradient(scale)
        not_affine = (result == RESULTS.successful) & (jnp.max(res) > tol * (1 + scale))
        result = RESULTS.where(not_affine, RESULTS.not_affine, result)
    elif isinstance(solver, optx.AbstractRootFinder | optx.AbstractLeastSquaresSolver):
        adjoint = default_adjoint(dtype) if adjoint is None else adjoint
        sol = optx.root_find(
            _residual_fn, solver, y0, args, max_steps=max_steps, adjoint=adjoint, throw=False
        )
        y = sol.value
        result = RESULTS.promote(sol.result)
        num_steps = sol.stats["num_steps"]
        res = layer_residuals(network, unpack_states(y), x)
    else:
        raise TypeError(
            "solver must be a jaxstat.supragraph.BlockTriangular, a lineax linear solver or an "
            f"optimistix root finder / least-squares solver, got {type(solver).__name__}"
        )
    states = unpack_states(y)
    nonfinite = any_nonfinite(states)
    result = RESULTS.where(nonfinite, RESULTS.nonfinite_state, result)
    result = RESULTS.where(bad_input, RESULTS.nonfinite_source, result)
    if throw:
        states = result.error_if(states, result != RESULTS.successful)
    return Solution(
        value=states,
        result=result,
        residual=jnp.max(res),
        layer_residuals=res,
        num_steps=jnp.asarray(num_steps),
    )
