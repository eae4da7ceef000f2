r"""Strong-stability-preserving Runge-Kutta solvers and CFL step-size rules.

The SSP solvers are `diffrax` solvers in Shu-Osher form: each stage is a convex combination of
forward-Euler steps, so any property of forward Euler under a CFL condition (total-variation
diminishing, maximum principle) carries over with the same CFL number (SSP coefficient 1).

- `SSPRK1`: forward Euler.
- `SSPRK2`: `y1 = y0 + dt L(y0)`, `y = (y0 + y1 + dt L(y1)) / 2` (Heun).
- `SSPRK3`: `y1 = y0 + dt L(y0)`, `y2 = 3/4 y0 + 1/4 (y1 + dt L(y1))`,
  `y = 1/3 y0 + 2/3 (y2 + dt L(y2))` (Shu & Osher 1988).

Step sizes: `CFLStep(cfl)` takes `dt = cfl / rate(y)` each step, where
`rate = sum_k max|f'(p_k)| / h_k + nu sum_k c / h_k^2` (`c = 2` for the second-order viscous term)
bounds the inverse of the largest stable forward-Euler step, both the hyperbolic and the viscous
limit. `FixedStep(dt)` takes a constant step and reports any step with `dt * rate > max_cfl`.
Both shorten steps to land exactly on the save times.
"""

import abc
from collections.abc import Callable
from typing import ClassVar

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, ArrayLike

from .._checks import is_concrete
from ._equation import AbstractEquation


class _AbstractSSPRK(dfx.AbstractSolver):
    """An explicit SSP Runge-Kutta method in Shu-Osher form,
    `y_k = a_k y_0 + b_k (y_{k-1} + dt L(t_0 + c_k dt, y_{k-1}))`, `k = 1..s`, `y_1 = y_s`.

    The stages run in a `lax.scan`, so the vector field is traced and compiled once per step
    rather than once per stage."""

    term_structure: ClassVar = dfx.AbstractTerm
    interpolation_cls: ClassVar[Callable[..., dfx.LocalLinearInterpolation]] = (
        dfx.LocalLinearInterpolation
    )
    # Rows (a_k, b_k, c_k).
    tableau: eqx.AbstractClassVar[tuple[tuple[float, float, float], ...]]

    def init(self, terms, t0, t1, y0, args):
        return None

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del solver_state, made_jump
        dt = t1 - t0
        control = terms.contr(t0, t1)
        dtype = jnp.result_type(*jtu.tree_leaves(y0))
        tableau = jnp.asarray(self.tableau, dtype=dtype)

        def stage(y, coefficients):
            a, b, c = coefficients
            increment = terms.vf_prod(t0 + c * dt, y, args, control)
            y = jtu.tree_map(lambda y0_, y_, dy: a * y0_ + b * (y_ + dy), y0, y, increment)
            return y, None

        y1, _ = jax.lax.scan(stage, y0, tableau)
        return y1, None, dict(y0=y0, y1=y1), None, dfx.RESULTS.successful


class SSPRK1(_AbstractSSPRK):
    """Forward Euler (first order, SSP coefficient 1). A `diffrax` solver.

    **Example:** `solve(equation, y0, ts, solver=SSPRK1())`.
    """

    tableau: ClassVar = ((0.0, 1.0, 0.0),)

    def order(self, terms):
        return 1


class SSPRK2(_AbstractSSPRK):
    """The two-stage second-order SSP Runge-Kutta method (Heun; SSP coefficient 1).

    `y1 = y0 + dt L(y0)`, `y = (y0 + y1 + dt L(y1)) / 2`. A `diffrax` solver.

    **Example:** `solve(equation, y0, ts, solver=SSPRK2())`.
    """

    tableau: ClassVar = ((0.0, 1.0, 0.0), (0.5, 0.5, 1.0))

    def order(self, terms):
        return 2


class SSPRK3(_AbstractSSPRK):
    """The three-stage third-order SSP Runge-Kutta method of Shu & Osher (SSP coefficient 1).

    `y1 = y0 + dt L(y0)`, `y2 = 3/4 y0 + 1/4 (y1 + dt L(y1))`, `y = 1/3 y0 + 2/3 (y2 + dt L(y2))`.
    A `diffrax` solver.

    **Example:** `solve(equation, y0, ts, solver=SSPRK3())`.
    """

    tableau: ClassVar = ((0.0, 1.0, 0.0), (0.75, 0.25, 1.0), (1 / 3, 2 / 3, 0.5))

    def order(self, terms):
        return 3


class AbstractStepSize(eqx.Module):
    """A rule for the time step of an explicit finite-volume solve."""

    max_cfl: eqx.AbstractVar[float]

    @abc.abstractmethod
    def step_size(self, rate: Array) -> Array:
        """The step to take from a state whose CFL rate (inverse stable step) is `rate`."""

    @abc.abstractmethod
    def invalid(self) -> Array:
        """A boolean scalar: whether the rule's own parameters are invalid (checked by `solve`
        on values, so also when they are traced)."""


class CFLStep(AbstractStepSize):
    r"""Adaptive steps `dt = cfl / rate(y)` from the current state (the CFL condition).

    `rate = sum_k max|f'(p_k)| / h_k + nu sum_k c / h_k^2` combines the hyperbolic and viscous
    limits of forward Euler; with an SSP solver the whole step is then stable.

    **Arguments:**

    - `cfl`: the CFL number, `0 < cfl <= max_cfl` (0.4 by default: safe for MUSCL and WENO5).
    - `max_cfl`: the stability limit used to validate `cfl` (1 for SSP schemes).

    **Example:** `CFLStep(0.5)`.
    """

    cfl: float = 0.4
    max_cfl: float = 1.0

    def __check_init__(self):
        if not (0 < self.cfl <= self.max_cfl):
            raise ValueError(f"need 0 < cfl <= max_cfl, got {self.cfl} and {self.max_cfl}.")

    def step_size(self, rate):
        return self.cfl / rate

    def invalid(self):
        return jnp.array(False)  # checked at construction


class FixedStep(AbstractStepSize):
    r"""A constant step `dt` (shortened only to land on save times), checked against the CFL
    condition: a step with `dt * rate(y) > max_cfl` stops the solve with
    `RESULTS.cfl_violated`.

    A fixed step makes the discrete solution a smooth function of the initial condition and `nu`
    (no data-dependent step sizes), which is what finite-difference checks of gradients need.

    **Arguments:**

    - `dt`: the step, positive and finite (a float or real scalar array). A Python or concrete
        value is checked here (`ValueError`); a traced one by `solve`
        (`RESULTS.invalid_step`).
    - `max_cfl`: the largest CFL number accepted.

    **Example:** `FixedStep(1e-3)`.
    """

    dt: ArrayLike = eqx.field(converter=jnp.asarray)
    max_cfl: float = 1.0

    def __check_init__(self):
        dt = self.dt
        if jnp.ndim(dt) != 0:
            raise ValueError(f"`dt` must be a scalar, got shape {jnp.shape(dt)}.")
        if jnp.issubdtype(jnp.result_type(dt), jnp.complexfloating):
            raise TypeError(f"`dt` must be real, got {jnp.result_type(dt)}.")
        if is_concrete(dt) and not (bool(dt > 0) and bool(jnp.isfinite(dt))):
            raise ValueError(f"the time step `dt` must be positive and finite, got {float(dt)}.")

    def step_size(self, rate):
        return jnp.broadcast_to(jnp.asarray(self.dt, jnp.result_type(rate)), jnp.shape(rate))

    def invalid(self):
        return ~(self.dt > 0) | ~jnp.isfinite(self.dt)


# Controller state: (index of the next save time, CFL rate at the current state, largest CFL
# number so far, status: 0 ok, 1 CFL violated, 2 non-finite).
_State = tuple[Array, Array, Array, Array]


class _Controller(dfx.AbstractStepSizeController):
    """Turns an `AbstractStepSize` into a diffrax step-size controller for one equation."""

    equation: AbstractEquation
    step: AbstractStepSize
    ts: Array

    def wrap(self, direction):
        return self

    def _rate(self, y, nu):
        # Step sizes are a discretisation choice: not differentiated through.
        return jax.lax.stop_gradient(self.equation.cfl_rate(y, nu))

    def _next(self, t, rate, index):
        target = self.ts[index]
        remaining = target - t
        dt = self.step.step_size(rate)
        dt = jnp.where(jnp.isfinite(dt) | jnp.isinf(dt), dt, remaining)
        dt = jnp.where(dt > 0, dt, remaining)
        # Land on the save time; split the last two steps evenly rather than leave a sliver.
        short = jnp.where(dt > 0.5 * remaining, 0.5 * remaining, dt)
        return jnp.where(dt >= remaining, target, t + short)

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        del terms, t1, dt0, func, error_order
        rate = self._rate(y0, args)
        index = jnp.clip(jnp.searchsorted(self.ts, t0, side="right"), 0, len(self.ts) - 1)
        state = (index, rate, jnp.zeros_like(rate), jnp.array(0))
        return self._next(t0, rate, index), state

    def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, state):
        del y0, y_error, error_order
        index, rate0, max_cfl, status = state
        cfl = (t1 - t0) * rate0
        rate1 = self._rate(y1_candidate, args)
        tol = 1 + 100 * jnp.finfo(jnp.result_type(rate0)).eps
        violated = cfl > self.step.max_cfl * tol
        finite = jnp.isfinite(rate0) & jnp.isfinite(rate1)
        status = jnp.where(status != 0, status, jnp.where(finite, jnp.where(violated, 1, 0), 2))
        max_cfl = jnp.maximum(max_cfl, jnp.where(jnp.isfinite(cfl), cfl, jnp.inf))
        index = jnp.clip(jnp.searchsorted(self.ts, t1, side="right"), 0, len(self.ts) - 1)
        result = dfx.RESULTS.where(
            status == 0,
            dfx.RESULTS.successful,
            dfx.RESULTS.where(status == 1, dfx.RESULTS.dt_min_reached, dfx.RESULTS.nonfinite),
        )
        next_t1 = self._next(t1, rate1, index)
        return True, t1, next_t1, False, (index, rate1, max_cfl, status), result
