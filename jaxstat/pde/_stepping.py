r"""Strong-stability-preserving Runge-Kutta solvers and CFL step-size rules.

The SSP solvers are `diffrax` solvers in Shu-Osher form: each stage is a convex combination of
forward-Euler steps, so any property of forward Euler under a CFL condition (total-variation
diminishing, maximum principle) carries over with the same CFL number (SSP coefficient 1).

- `SSPRK1`: forward Euler.
- `SSPRK2`: `y1 = y0 + dt L(y0)`, `y = (y0 + y1 + dt L(y1)) / 2` (Heun).
- `SSPRK3`: `y1 = y0 + dt L(y0)`, `y2 = 3/4 y0 + 1/4 (y1 + dt L(y1))`,
  `y = 1/3 y0 + 2/3 (y2 + dt L(y2))` (Shu & Osher 1988).

Implicit-explicit (IMEX) solvers step the hyperbolic part `A(y)` with the explicit SSP tableau
and the viscous part `nu D y` with a diagonally implicit one (Pareschi & Russo 2005):

- `IMEXSSP2`: IMEX-SSP2(2,2,2), SSPRK2 with an L-stable two-stage SDIRK (second order).
- `IMEXSSP3`: IMEX-SSP3(4,3,3), SSPRK3 with an L-stable four-stage SDIRK (third order).

Each implicit stage solves `(I - dt ~a_ii nu D) Y = rhs` (Fourier on periodic grids, tridiagonal
in 1-D), so on steps where viscosity dominates the explicit limit the step is set by the
hyperbolic CFL condition alone; elsewhere the viscous part is explicit too.

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


class FiniteVolumeTerm(dfx.AbstractTerm):
    """The diffrax term `dy/dt = L(y; nu)` of a finite-volume equation (`args` is `nu`), which
    also gives implicit-explicit solvers the equation's split `L = A(y) + nu D y`."""

    equation: AbstractEquation

    def vf(self, t, y, args):
        return self.equation.vector_field(t, y, args)

    def contr(self, t0, t1, **kwargs):
        return t1 - t0

    def prod(self, vf, control):
        return jtu.tree_map(lambda v: control * v, vf)


def _implicit(solver, equation: AbstractEquation, y: Array, nu: Array) -> Array:
    """Whether viscosity dominates the explicit step limit, `nu sum_k c / h_k^2 > threshold
    sum_k max|f'| / h_k` (a boolean scalar): then an IMEX solver treats it implicitly."""
    rate = jax.lax.stop_gradient(equation.hyperbolic_rate(y))
    return jax.lax.stop_gradient(equation.viscous_rate(nu)) > solver.threshold * rate


def _stable_rate(solver, equation: AbstractEquation, y: Array, nu: Array) -> Array:
    """The inverse of the largest stable forward-Euler step for `solver`'s explicit part: the
    hyperbolic limit alone when an IMEX solver treats viscosity implicitly, else both limits."""
    rate = equation.cfl_rate(y, nu)
    if isinstance(solver, _AbstractIMEXSSP):
        rate = jnp.where(_implicit(solver, equation, y, nu), equation.hyperbolic_rate(y), rate)
    return rate


class _AbstractIMEXSSP(dfx.AbstractSolver):
    r"""An implicit-explicit Runge-Kutta method: SSP explicit stages for the hyperbolic part
    `A(y)`, diagonally implicit stages for the viscous part `nu D y`,

    `Y_i = y_0 + dt sum_{j<i} a_ij A(Y_j) + dt nu sum_{j<=i} ~a_ij D Y_j`,
    `y_1 = y_0 + dt sum_j b_j A(Y_j) + dt nu sum_j ~b_j D Y_j`,

    each stage one solve with `I - dt ~a_ii nu D` (`AbstractEquation.solve_diffusion`: Fourier on
    periodic grids, tridiagonal in 1-D). The choice is automatic, step by step: where viscosity
    does not dominate the explicit limit, `nu sum_k c / h_k^2 <= threshold sum_k max|f'| / h_k`,
    the viscous part is stepped explicitly with the explicit tableau instead (no solve; the step
    is then the explicit SSP method on the whole `L`), so the same solver serves inviscid and
    viscous problems; the CFL rule uses the hyperbolic limit alone on implicit steps.

    The default `threshold = 2` is about where an implicit step pays for its solves: an
    implicit step is then at least 3x longer, and costs 1.8x to 3.3x an explicit one (viscous
    Burgers, WENO5, N = 512 to 1024, float64, CPU under load).
    """

    threshold: eqx.AbstractVar[float]

    def __check_init__(self):
        if not self.threshold >= 0:
            raise ValueError(f"`threshold` must be >= 0, got {self.threshold}.")

    term_structure: ClassVar = FiniteVolumeTerm
    interpolation_cls: ClassVar[Callable[..., dfx.LocalLinearInterpolation]] = (
        dfx.LocalLinearInterpolation
    )
    # Butcher tableaux: explicit (a, b, c) and implicit (a~, b~).
    explicit: eqx.AbstractClassVar[tuple[tuple[float, ...], ...]]
    explicit_weights: eqx.AbstractClassVar[tuple[float, ...]]
    implicit: eqx.AbstractClassVar[tuple[tuple[float, ...], ...]]
    implicit_weights: eqx.AbstractClassVar[tuple[float, ...]]

    def init(self, terms, t0, t1, y0, args):
        return None

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del solver_state, made_jump
        while not isinstance(terms, FiniteVolumeTerm):  # diffrax wraps terms (time direction)
            terms = terms.term
        equation, nu = terms.equation, jnp.asarray(args, y0.dtype)
        dt = jnp.asarray(t1 - t0, y0.dtype)
        implicit = _implicit(self, equation, y0, nu)
        # theta = 1: viscous stages implicit; theta = 0: the explicit tableau for all of L.
        theta = implicit.astype(y0.dtype)
        stages = len(self.explicit_weights)
        hyperbolic, viscous = [None] * stages, [None] * stages
        # A stage whose explicit column and weight are zero needs no hyperbolic evaluation.
        unused = [
            self.explicit_weights[j] == 0 and all(row[j] == 0 for row in self.explicit)
            for j in range(stages)
        ]

        def increment(weights, implicit_weights, upto):
            out = jnp.zeros_like(y0)
            for j in range(upto):
                a, ai = weights[j], implicit_weights[j]
                if a != 0:
                    out = out + a * (hyperbolic[j] + (1 - theta) * nu * viscous[j])
                if ai != 0:
                    out = out + ai * theta * nu * viscous[j]
            return y0 + dt * out

        for i in range(stages):
            rhs = increment(self.explicit[i], self.implicit[i], i)
            diagonal = dt * self.implicit[i][i] * nu
            solve = lambda r, a: equation.solve_diffusion(r, a)
            y = jax.lax.cond(implicit, solve, lambda r, a: r, rhs, diagonal)
            if unused[i]:
                viscous[i] = equation.diffusion(y)
            else:
                hyperbolic[i], viscous[i] = equation.split_field(y)
        y1 = increment(self.explicit_weights, self.implicit_weights, stages)
        return y1, None, dict(y0=y0, y1=y1), None, dfx.RESULTS.successful


class IMEXSSP2(_AbstractIMEXSSP):
    r"""IMEX-SSP2(2,2,2) of Pareschi & Russo (2005): second order, the explicit part is SSPRK2
    (Heun; SSP coefficient 1), the implicit part L-stable SDIRK with `gamma = 1 - 1/sqrt 2`.

    Explicit `a_21 = 1`, `b = (1/2, 1/2)`; implicit `~a = [[gamma, 0], [1 - 2 gamma, gamma]]`,
    `~b = (1/2, 1/2)`. Two hyperbolic evaluations and two viscous solves per step; the step is
    limited by the hyperbolic CFL condition only when viscosity dominates (see
    `_AbstractIMEXSSP`). A `diffrax` solver for `solve`.

    **Arguments:**

    - `threshold`: implicit viscosity on steps where `nu sum_k c / h_k^2` exceeds `threshold`
        times the hyperbolic rate `sum_k max|f'| / h_k` (`0`: whenever `nu > 0`).

    **Example:** `solve(equation, y0, ts, nu=0.01, solver=IMEXSSP2())`.
    """

    threshold: float = 2.0

    explicit: ClassVar = ((0.0, 0.0), (1.0, 0.0))
    explicit_weights: ClassVar = (0.5, 0.5)
    implicit: ClassVar = ((1 - 2**-0.5, 0.0), (1 - 2 * (1 - 2**-0.5), 1 - 2**-0.5))
    implicit_weights: ClassVar = (0.5, 0.5)

    def order(self, terms):
        return 2


_ALPHA, _BETA, _ETA = 0.24169426078821, 0.06042356519705, 0.12915286960590


class IMEXSSP3(_AbstractIMEXSSP):
    r"""IMEX-SSP3(4,3,3) of Pareschi & Russo (2005): third order, the explicit part is SSPRK3
    (Shu-Osher, SSP coefficient 1; its first stage is unused), the implicit part a four-stage
    L-stable SDIRK.

    Explicit `a_32 = 1`, `a_42 = a_43 = 1/4`, `b = (0, 1/6, 1/6, 2/3)`; implicit
    `~a = [[al, 0, 0, 0], [-al, al, 0, 0], [0, 1 - al, al, 0], [be, et, 1/2 - be - et - al, al]]`,
    `~b = b`, `al = 0.24169426078821`, `be = 0.06042356519705`, `et = 0.12915286960590`. Three
    hyperbolic evaluations and four viscous solves per step. A `diffrax` solver for `solve`.

    **Arguments:**

    - `threshold`: implicit viscosity on steps where `nu sum_k c / h_k^2` exceeds `threshold`
        times the hyperbolic rate `sum_k max|f'| / h_k` (`0`: whenever `nu > 0`).

    **Example:** `solve(equation, y0, ts, nu=0.01, solver=IMEXSSP3())`.
    """

    threshold: float = 2.0

    explicit: ClassVar = (
        (0.0, 0.0, 0.0, 0.0),
        (0.0, 0.0, 0.0, 0.0),
        (0.0, 1.0, 0.0, 0.0),
        (0.0, 0.25, 0.25, 0.0),
    )
    explicit_weights: ClassVar = (0.0, 1 / 6, 1 / 6, 2 / 3)
    implicit: ClassVar = (
        (_ALPHA, 0.0, 0.0, 0.0),
        (-_ALPHA, _ALPHA, 0.0, 0.0),
        (0.0, 1 - _ALPHA, _ALPHA, 0.0),
        (_BETA, _ETA, 0.5 - _BETA - _ETA - _ALPHA, _ALPHA),
    )
    implicit_weights: ClassVar = (0.0, 1 / 6, 1 / 6, 2 / 3)

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


class _Controller(dfx.AbstractStepSizeController):
    """Turns an `AbstractStepSize` into a diffrax step-size controller for one equation."""

    equation: AbstractEquation
    step: AbstractStepSize
    ts: Array
    solver: dfx.AbstractSolver

    def wrap(self, direction):
        return self

    def _rate(self, y, nu):
        # Step sizes are a discretisation choice: not differentiated through.
        return jax.lax.stop_gradient(_stable_rate(self.solver, self.equation, y, nu))

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
