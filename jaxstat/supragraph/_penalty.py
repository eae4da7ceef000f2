"""The penalized global relaxation `Phi_mu(Psi) = l(Psi) + mu/2 |F(Psi)|^2`.

Instead of solving `F(Psi) = 0` exactly and then the adjoint system, look for a stationary point
`Psi_mu` of `Phi_mu`: all layers relax at once, no layer needs its input first. Stationarity,

    grad l(Psi_mu) + J(Psi_mu)^H (mu F(Psi_mu)) = 0,

says that `lam_mu = mu F(Psi_mu)` solves the adjoint equation at `Psi_mu`: the penalized state comes
with its own adjoint, and a gradient `Re <lam_mu, dF/dtheta (Psi_mu)>` (the envelope theorem:
`d/dtheta Phi_mu(Psi_mu(theta), theta)`). As `mu -> infinity`, `Psi_mu -> Psi*`,
`lam_mu -> lam*` and the gradient -> backpropagation's, all at rate `O(1/mu)`; to leading order
`mu (Psi_mu - Psi*) -> J(Psi*)^{-1} lam*`.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import optimistix as optx
from jaxtyping import Array, ArrayLike, Float, Inexact, PyTree

from .._checks import is_concrete
from .._krylov import GMRES
from .._numerics import any_nonfinite, default_tolerance, real_dtype
from ._adjoint import Loss, parameter_gradients, scalar_loss
from ._network import pack_complex, pack_states, States, StationaryNetwork, unpack_states
from ._solution import PenalizedSolution, RESULTS
from ._solve import initial_states


def default_penalized_solver(dtype) -> optx.Newton:
    """Newton's method with matrix-free GMRES inner solves, applied to the stationarity system in
    its augmented form (see `penalized_solve`).

    Why not a minimiser on `Phi_mu` itself: its Hessian `grad^2 l + mu (J^H J + ...)` has
    condition number growing like `mu`; BFGS stalls well before the `O(1/mu^2)` accuracy in `Psi`
    needed to read `lam_mu = mu F(Psi_mu)` to `O(1/mu)`, and GMRES on the Hessian stagnates for
    `mu >~ 1e5`. The augmented system stays well conditioned as `mu -> infinity` (it tends to
    the nonsingular system `F = 0`, `J^H lam = -grad l`), and Newton converges quadratically.
    """
    tol = default_tolerance(dtype)
    small = jnp.finfo(dtype).bits <= 32
    inner = GMRES(rtol=1e-4 if small else 1e-6, atol=0.0, restart=60, max_steps=20_000)
    return optx.Newton(rtol=tol, atol=tol, linear_solver=inner)


def _penalty(mu, f: PyTree[Array]) -> Float[Array, ""]:
    """`mu/2 |F|^2`, summed over every layer, node and feature (complex or packed `F` alike)."""
    return 0.5 * mu * sum(jnp.sum(jnp.abs(v) ** 2) for v in jtu.tree_leaves(f))


def penalty_objective(
    network: StationaryNetwork, x: Inexact[ArrayLike, "..."], loss: Loss, mu, args: PyTree = None
) -> Callable[[States], Float[Array, ""]]:
    """`Phi_mu(Psi) = l(Psi) + mu/2 |F(Psi)|^2` as a function of the states (for your own
    optimiser). `|F|^2` sums `|F_l|^2` over all layers, nodes and features."""
    x = jnp.asarray(x)

    def phi(states: States) -> Float[Array, ""]:
        states = tuple(states)
        return scalar_loss(loss, states, args) + _penalty(mu, network.residual(states, x))

    return phi


def _check_mu(mu):
    if is_concrete(mu):
        m = np.asarray(mu)  # numpy: under a trace jnp would turn a constant into a tracer
        if m.ndim != 0 or not np.isrealobj(m) or not m > 0:
            raise ValueError(f"mu must be a positive real scalar, got {mu}")
        return jnp.asarray(mu, dtype=jnp.result_type(float))
    mu = jnp.asarray(mu)
    if mu.ndim != 0:
        raise ValueError(f"mu must be a scalar, got shape {mu.shape}")
    return eqx.error_if(mu, mu <= 0, "mu must be positive")


class _Penalized(eqx.Module):
    """The penalized problem at fixed network, input, `mu` and loss arguments, on packed states
    `y`: every map the solvers and the report need, written once. Passed to optimistix as `args`
    (its arrays are traced, not baked in)."""

    network: StationaryNetwork
    x: Array
    mu: Array
    dyn_args: PyTree
    static_args: PyTree
    loss: Loss

    def residual(self, y):
        """`F(Psi)`, packed."""
        return self.network.packed_residual(y, self.x)

    def loss_value(self, y, dyn_args=None) -> Float[Array, ""]:
        """`l(Psi)` (with the loss's array arguments `dyn_args`, default the problem's)."""
        return scalar_loss(self.loss, unpack_states(y), self._args(dyn_args))

    def loss_residuals(self, y):
        """The residuals `r` of a loss `l = 1/2 |r|^2`, packed."""
        return pack_complex(self.loss(unpack_states(y), self._args()))

    def objective(self, y) -> Float[Array, ""]:
        """`Phi_mu = l + mu/2 |F|^2`."""
        return self.loss_value(y) + _penalty(self.mu, self.residual(y))

    def gradient(self, y, lam):
        """`grad l(Psi) + J(Psi)^H lam` (one vector-Jacobian product): `grad Phi_mu` at
        `lam = mu F`, the adjoint equation's residual otherwise."""
        _, vjp = jax.vjp(self.residual, y)
        (jt_lam,) = vjp(lam)
        return jtu.tree_map(jnp.add, jax.grad(self.loss_value)(y), jt_lam)

    def augmented(self, z):
        """Stationarity of `Phi_mu` in augmented form, `(F(Psi) - lam / mu, grad l + J^H lam)`:
        its zeros are exactly the stationary points, with `lam = mu F(Psi)`."""
        y, lam = z
        f = jtu.tree_map(lambda f, lam: f - lam / self.mu, self.residual(y), lam)
        return f, self.gradient(y, lam)

    def least_squares(self, y):
        """`(r(Psi), sqrt(mu) F(Psi))`: half its squared norm is `Phi_mu`."""
        f = jtu.tree_map(lambda v: jnp.sqrt(self.mu) * v, self.residual(y))
        return self.loss_residuals(y), f

    def _args(self, dyn_args=None):
        return eqx.combine(self.dyn_args if dyn_args is None else dyn_args, self.static_args)


def _stationary_point(problem: _Penalized, solver, y0, lam0, max_steps: int):
    """`(Psi_mu packed, optimistix solution)` by the kind of solver the user passed."""
    kw = dict(max_steps=max_steps, throw=False)
    if isinstance(solver, optx.AbstractRootFinder):
        sol = optx.root_find(lambda z, p: p.augmented(z), solver, (y0, lam0), problem, **kw)
        return sol.value[0], sol
    if isinstance(solver, optx.AbstractMinimiser):
        sol = optx.minimise(lambda y, p: p.objective(y), solver, y0, problem, **kw)
        return sol.value, sol
    if isinstance(solver, optx.AbstractLeastSquaresSolver):
        out = jtu.tree_leaves(jax.eval_shape(problem.loss, unpack_states(y0), problem._args()))
        if len(out) == 1 and out[0].shape == ():
            raise TypeError(
                "a least-squares solver needs the loss in residual form (return the residuals "
                "r, with l = 1/2 |r|^2, not a scalar); or use a minimiser or root finder"
            )
        sol = optx.least_squares(lambda y, p: p.least_squares(y), solver, y0, problem, **kw)
        return sol.value, sol
    raise TypeError(
        "solver must be an optimistix root finder, minimiser or least-squares solver, got "
        f"{type(solver).__name__}"
    )


def penalized_solve(
    network: StationaryNetwork,
    x: Inexact[ArrayLike, "..."],
    loss: Loss,
    mu: Inexact[ArrayLike, "..."],
    args: PyTree = None,
    states0: States | None = None,
    adjoint0: States | None = None,
    *,
    solver: optx.AbstractRootFinder
    | optx.AbstractMinimiser
    | optx.AbstractLeastSquaresSolver
    | None = None,
    max_steps: int = 256,
    throw: bool = True,
) -> PenalizedSolution:
    """A stationary point `Psi_mu` of the penalized global relaxation, its penalized adjoint and
    the gradient read off it.

        Phi_mu(Psi) = l(Psi) + mu/2 |F(Psi)|^2,    lam_mu = mu F(Psi_mu),
        J(Psi_mu)^H lam_mu = -grad l(Psi_mu),      grads = Re <lam_mu, dF/dtheta (Psi_mu)>.

    All three converge to the exact state, adjoint and gradient (those of
    [`jaxstat.supragraph.gradient`][]) at rate `O(1/mu)`.

    **Arguments:**

    - `network`: a [`jaxstat.supragraph.StationaryNetwork`][].
    - `x`: the input.
    - `loss`: `loss(states, args)`, a real scalar or a pytree of residuals (`l = 1/2 |r|^2`).
    - `mu`: the penalty, `> 0`.
    - `args`: passed to `loss`.
    - `states0`: initial states (default zeros; the exact `Psi*` or a previous `Psi_mu` is a good
      warm start for large `mu`).
    - `adjoint0`: initial penalized adjoint for a root finder (default zeros).
    - `solver`: how to find the stationary point, an optimistix
        - root finder: solves the stationarity system in augmented form, `F(Psi) - lam/mu = 0`,
          `grad l(Psi) + J^H lam = 0` (its solutions are exactly the stationary points of
          `Phi_mu`, with `lam = mu F`), well conditioned for every `mu` (default: Newton with
          GMRES, see `default_penalized_solver`);
        - minimiser (e.g. `optx.BFGS`): minimises `Phi_mu`;
        - least-squares solver (e.g. `optx.GaussNewton`, `optx.LevenbergMarquardt`): minimises
          `1/2 |(r(Psi), sqrt(mu) F(Psi))|^2`; needs the loss in residual form.
    - `max_steps`: solver iterations.
    - `throw`: raise on failure.

    **Returns:** a [`jaxstat.supragraph.PenalizedSolution`][].

    **Example:**

    ```python
    import jax.numpy as jnp
    import jax.random as jr
    import jaxstat.graphs as jg
    import jaxstat.stationary as js
    from jaxstat.supragraph import feature_network, penalized_solve

    graph = jg.random_graph(jr.key(0), 50, 150)
    network = feature_network(graph, js.DrivenDampedModel(gamma=1.0), [4, 8, 8], key=jr.key(1))
    x = jr.normal(jr.key(2), (50, 4))
    target = jnp.zeros((50, 16))
    loss = lambda states, target: network.output(states) - target  # residuals
    pen = penalized_solve(network, x, loss, 1e4, target)
    pen.value, pen.adjoint, pen.grads   # -> exact ones at O(1/mu)
    ```
    """
    # `mu` becomes an array before `filter_jit`, so that a new value does not recompile.
    return _penalized_solve(
        network,
        x,
        loss,
        _check_mu(mu),
        args,
        states0,
        adjoint0,
        solver=solver,
        max_steps=max_steps,
        throw=throw,
    )


def _initial_adjoint(network: StationaryNetwork, adjoint0, states0: States, y0):
    """`adjoint0` checked against the states and packed like them; zeros if `None`."""
    if adjoint0 is None:
        return jtu.tree_map(jnp.zeros_like, y0)
    network._check_structure(adjoint0)
    adjoint0 = tuple(jnp.asarray(a) for a in adjoint0)
    if any(a.shape != s.shape for a, s in zip(adjoint0, states0)):
        raise ValueError("adjoint0 must be shaped like the states")
    return pack_states(tuple(a.astype(s.dtype) for a, s in zip(adjoint0, states0)))


@eqx.filter_jit
def _penalized_solve(network, x, loss, mu, args, states0, adjoint0, *, solver, max_steps, throw):
    x = jnp.asarray(x)
    states0 = initial_states(network, x, states0)
    y0 = pack_states(states0)
    lam0 = _initial_adjoint(network, adjoint0, states0, y0)
    dyn_args, static_args = eqx.partition(args, eqx.is_inexact_array)
    problem = _Penalized(network, x, mu, dyn_args, static_args, loss)
    if solver is None:
        solver = default_penalized_solver(real_dtype(*jtu.tree_leaves(states0)))
    y, sol = _stationary_point(problem, solver, y0, lam0, max_steps)
    return _report(problem, jax.lax.stop_gradient(y), sol, states0, throw)


def _report(problem: _Penalized, y, sol, states0: States, throw: bool) -> PenalizedSolution:
    """The penalized adjoint `lam_mu = mu F(Psi_mu)`, the gradients read off it, and the checks."""
    network, x, mu = problem.network, problem.x, problem.mu
    f = problem.residual(y)
    lam = jtu.tree_map(lambda v: mu * v, f)
    grads, input_grad = parameter_gradients(network, y, x, lam)
    value, args_grad = jax.value_and_grad(lambda d: problem.loss_value(y, d))(problem.dyn_args)
    # grad Phi_mu = grad l + J^H lam_mu.
    stationarity = optx.max_norm(problem.gradient(y, lam))

    result = RESULTS.promote(sol.result)
    states = unpack_states(y)
    result = RESULTS.where(any_nonfinite(states), RESULTS.nonfinite_state, result)
    result = RESULTS.where(any_nonfinite((network, x, states0)), RESULTS.nonfinite_source, result)
    if throw:
        states = result.error_if(states, result != RESULTS.successful)
    return PenalizedSolution(
        value=states,
        adjoint=unpack_states(lam),
        grads=grads,
        input_grad=input_grad,
        args_grad=args_grad,
        loss=value,
        objective=value + _penalty(mu, f),
        residual=optx.max_norm(f),
        stationarity=stationarity,
        result=result,
        num_steps=sol.stats["num_steps"],
    )
