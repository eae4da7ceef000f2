"""`solve`: integrate a finite-volume semi-discretisation in time with diffrax."""

import diffrax as dfx
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike

from .._jit import jit
from .._sharding import auto_axes_inside
from ._equation import AbstractEquation
from ._solution import RESULTS, Solution
from ._stepping import _Controller, AbstractStepSize, CFLStep, FiniteVolumeTerm, SSPRK3


@jit(arrays=("nu",))
# Runs on meshes with explicit axes too (see `jaxstat._sharding`).
@auto_axes_inside
def solve(
    equation: AbstractEquation,
    y0: ArrayLike,
    ts: ArrayLike,
    nu: ArrayLike = 0.0,
    *,
    solver: dfx.AbstractSolver = SSPRK3(),
    step: AbstractStepSize = CFLStep(),
    max_steps: int = 16384,
    adjoint: dfx.AbstractAdjoint = dfx.RecursiveCheckpointAdjoint(),
    throw: bool = True,
) -> Solution:
    r"""Solve `dy/dt = L(y; nu)` (Burgers or Hamilton-Jacobi) from `y(ts[0]) = y0`, saving at `ts`.

    The time loop is `diffrax.diffeqsolve` (a `lax.while_loop` bounded by `max_steps`) with an
    SSP Runge-Kutta solver (explicit, or implicit-explicit with the viscous term implicit) and a
    CFL step-size rule that lands exactly on every save time.
    Differentiable: reverse mode through `diffrax.RecursiveCheckpointAdjoint` (checkpointed, so
    memory grows like `log(max_steps)`), forward mode with `diffrax.ForwardMode()`. Step sizes
    are not differentiated (a step size is a discretisation choice); use `FixedStep` when the
    discrete map itself must be smooth, e.g. for finite-difference checks. Works under `jax.vmap`
    over `y0` and `nu`.

    **Arguments:**

    - `equation`: a `Burgers` or `HamiltonJacobi` discretisation.
    - `y0`: the initial state, shape `equation.state_shape`, real floating dtype. For `Burgers`
        cell averages (`grid.cell_averages(p0)`), for `HamiltonJacobi` point values at the cell
        centres (`u0(*grid.mesh())`); `ys` are of the same kind.
    - `ts`: nondecreasing save times; `ts[0]` is the initial time.
    - `nu`: the viscosity `nu >= 0` (`nu = 0`: entropy / viscosity solutions).
    - `solver`: `SSPRK1()`, `SSPRK2()`, `SSPRK3()` (default) or any explicit diffrax solver;
        or the implicit-explicit `IMEXSSP2()`, `IMEXSSP3()`, which solve for the viscous term
        whenever `nu sum_k c / h_k^2` dominates the explicit step limit, so that the step is
        set by the hyperbolic CFL condition alone, for `IMEXSSP3` at twice the CFL number of
        `step` by default (`step_scale`; periodic grids, or 1-D with
        `viscous_order=2`): for viscous problems on fine grids, where an explicit step shrinks
        like `h^2 / nu`.
    - `step`: `CFLStep(cfl)` (default `cfl = 0.4`) or `FixedStep(dt)`.
    - `max_steps`: the bound on the number of time steps (static).
    - `adjoint`: a diffrax adjoint.
    - `throw`: if `True`, a failure (CFL violation, non-finite state, `max_steps` reached) raises
        an error; if `False` it is reported in `Solution.result`.

    **Returns:**

    A `Solution` with `ys` of shape `(len(ts), *equation.state_shape)`.

    **Example:**

    ```python
    import jax.numpy as jnp
    from jaxstat.pde import Burgers, UniformGrid, solve

    grid = UniformGrid(0.0, 2 * jnp.pi, 256)
    sol = solve(Burgers(grid), grid.cell_averages(jnp.sin), jnp.linspace(0, 1.5, 4), nu=0.01)
    sol.ys.shape  # (4, 256)
    ```
    """
    if not isinstance(equation, AbstractEquation):
        raise TypeError(f"`equation` must be `Burgers` or `HamiltonJacobi`, got {equation!r}.")
    if not isinstance(step, AbstractStepSize):
        raise TypeError(f"`step` must be `CFLStep(...)` or `FixedStep(...)`, got {step!r}.")
    y0 = jnp.asarray(y0)
    if not jnp.issubdtype(y0.dtype, jnp.floating):
        raise TypeError(f"`y0` must have a real floating dtype, got {y0.dtype}.")
    if y0.shape != tuple(equation.state_shape):
        raise ValueError(
            f"`y0` has shape {y0.shape}, the equation's state has shape {equation.state_shape} "
            f"(grid {equation.grid.shape}; in d >= 2 the Burgers state has the d components first)."
        )
    ts = jnp.asarray(ts)
    if ts.ndim != 1 or ts.shape[0] < 2:
        raise ValueError(f"`ts` must be one-dimensional with at least two times, got {ts.shape}.")
    if jnp.issubdtype(ts.dtype, jnp.complexfloating):
        raise TypeError(f"`ts` must be real, got {ts.dtype}.")
    if not jnp.issubdtype(ts.dtype, jnp.floating):
        ts = ts.astype(y0.dtype)
    nu = jnp.asarray(nu)
    if not (jnp.issubdtype(nu.dtype, jnp.floating) or jnp.issubdtype(nu.dtype, jnp.integer)):
        raise TypeError(f"`nu` must be a real number, got {nu.dtype}.")
    if nu.ndim != 0:
        raise ValueError(f"`nu` must be a scalar (vmap over batches of `nu`), got {nu.shape}.")
    if not isinstance(max_steps, int | np.integer) or max_steps < 1:
        raise ValueError(f"`max_steps` must be a positive int, got {max_steps!r}.")
    # Value checks are folded into the result code: one `error_if` per solve (each costs
    # compilation time), and with `throw=False` they are reported like any other failure.
    bad_ts = jnp.any(ts[1:] < ts[:-1]) | ~jnp.all(jnp.isfinite(ts))
    bad_nu = ~(nu >= 0) | ~jnp.isfinite(nu)

    term = FiniteVolumeTerm(equation)
    controller = _Controller(equation, step, ts, solver)
    # Two save times, the common `[t0, t1]`: saved as `t0` and `t1`, the same states without
    # diffrax's checks of `SaveAt(ts)` (`eqx.error_if`, whose host callback keeps JAX's
    # persistent compilation cache from storing the program; `bad_ts` covers them).
    if ts.shape[0] == 2:
        saveat = dfx.SaveAt(t0=True, t1=True, controller_state=True)
    else:
        saveat = dfx.SaveAt(ts=ts, controller_state=True)
    sol = dfx.diffeqsolve(
        term,
        solver,
        t0=ts[0],
        t1=ts[-1],
        dt0=None,
        y0=y0,
        args=nu,
        saveat=saveat,
        stepsize_controller=controller,
        max_steps=max_steps,
        adjoint=adjoint,
        throw=False,
    )
    _, _, max_cfl, status = sol.controller_state
    # The first condition that holds gives the result.
    failures = (
        (bad_ts, RESULTS.invalid_ts),
        (bad_nu, RESULTS.invalid_nu),
        (step.invalid(), RESULTS.invalid_step),
        (status == 1, RESULTS.cfl_violated),
        (status == 2, RESULTS.nonfinite),
        (sol.result == dfx.RESULTS.max_steps_reached, RESULTS.max_steps_reached),
        (sol.result != dfx.RESULTS.successful, RESULTS.solver_failed),
    )
    result = RESULTS.successful
    for condition, code in reversed(failures):
        result = RESULTS.where(condition, code, result)
    ys = sol.ys
    if throw:
        ys = result.error_if(ys, result != RESULTS.successful)
    num_steps = sol.stats["num_steps"]
    stats = {
        "num_steps": num_steps,
        "max_cfl": max_cfl,
        "cell_updates": num_steps * int(np.prod(equation.grid.shape)),
    }
    return Solution(ts=ts, ys=ys, result=result, stats=stats)
