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

Each implicit stage solves `(I - dt ~a_ii nu D) Y = rhs` (on periodic grids the whole step runs
in the Fourier basis, where `D` is diagonal; tridiagonal solves in 1-D otherwise), so on steps
where viscosity dominates the explicit limit the step is set by the hyperbolic CFL condition
alone (`step_scale` times the CFL rule's step: 2 by default for `IMEXSSP3`); elsewhere the
step is the explicit SSP method on the whole `L`.

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
    """The rate the CFL rule divides by (`dt = cfl / rate`): for explicit steps the inverse of
    the largest stable forward-Euler step, both limits; on the implicit steps of an IMEX solver
    the hyperbolic limit alone, divided by the solver's `step_scale`."""
    rate = equation.cfl_rate(y, nu)
    if isinstance(solver, _AbstractIMEXSSP):
        implicit_rate = equation.hyperbolic_rate(y) / solver.step_scale
        rate = jnp.where(_implicit(solver, equation, y, nu), implicit_rate, rate)
    return rate


class _AbstractIMEXSSP(dfx.AbstractSolver):
    r"""An implicit-explicit Runge-Kutta method: SSP explicit stages for the hyperbolic part
    `A(y)`, diagonally implicit stages for the viscous part `nu D y`,

    `Y_i = y_0 + dt sum_{j<i} a_ij A(Y_j) + dt nu sum_{j<=i} ~a_ij D Y_j`,
    `y_1 = y_0 + dt sum_j b_j A(Y_j) + dt nu sum_j ~b_j D Y_j`,

    each stage one solve with `I - dt ~a_ii nu D`. On periodic grids (`equation.periodic`) the
    whole step runs in the Fourier basis, where `D` is the diagonal `lambda`
    (`equation.diffusion_symbol`): with `V_j = dt nu D Y_j` and hats for transforms,

    `^Y_i = (^y_0 + dt sum_{j<i} a_ij ^A_j + sum_{j<i} ~a_ij ^V_j) / (1 - ~a_ii dt nu lambda)`,
    `^V_i = dt nu lambda ^Y_i`,

    and only the stages that evaluate `A` go back to physical space; the viscous update
    `sum_j ~b_j V_j = dt nu D sum_j ~b_j Y_j` is one stencil on those physical stage values
    (all of them have `~b_j != 0` only where `A` is evaluated, as in both tableaux here;
    otherwise one more inverse transform). A step of IMEX-SSP3 thus takes 3 forward and 3
    inverse transforms and one evaluation of `D`, where stage-by-stage solves take 4 of each
    plus 4 evaluations of `D`. Elsewhere (1-D, second-order stencil) each stage is a
    tridiagonal solve (`AbstractEquation.solve_diffusion`) and `D Y_i` is evaluated.

    The choice is automatic, step by step: where viscosity does not dominate the explicit
    limit, `nu sum_k c / h_k^2 <= threshold sum_k max|f'| / h_k`, the step is the explicit
    tableau on the whole `L` (the explicit SSP method: no solve, no transform), so the same
    solver serves inviscid and viscous problems. One `lax.cond` picks the step (under
    `jax.vmap` with a batched choice both run, as `lax.cond` becomes a select).

    Implicit steps are `step_scale` times the step the CFL rule gives for the hyperbolic part
    alone: the rate `CFLStep` divides by is `sum_k max|f'| / h_k / step_scale` there. IMEX-SSP3
    takes `step_scale = 2` by default, so `CFLStep(0.4)` steps at hyperbolic CFL number 0.8,
    within the SSP coefficient 1 of its explicit tableau: where viscosity sets the step, the
    error is that of the spatial scheme across the viscous layer, not the time error. Viscous
    Burgers, `nu = 0.01`, `p0 = sin x + 1/2` to `t = 1.5` (past the shock time), WENO5 with the
    fourth-order viscous flux, every step implicit, L1 error against Cole-Hopf: 1.304e-5,
    1.289e-5, 1.269e-5 at hyperbolic CFL 0.05, 0.4, 0.8 (N = 1024); at CFL 0.4 and 0.8
    3.675e-3, 3.635e-3 (N = 256), 1.172e-3, 1.332e-3 (N = 384), 7.388e-7, 7.695e-7
    (N = 2048); it grows beyond CFL 1 (1.6e-5 at 1.2, N = 1024; 4.8e-3 at 1.0, N = 256).
    Where the solution is resolved over many cells the time error shows: `nu = 0.1`, `sin x`,
    N = 128, max error at `t = 0.75` 3.3e-6 at CFL 0.05, 4.3e-6 at 0.4, 1.0e-5 at 0.8 (take
    `step_scale=1` there).
    IMEX-SSP2 keeps `step_scale = 1`: its second-order time error exceeds the spatial error
    already at CFL 0.4 (the `nu = 0.01` case, N = 1024: 1.38e-5 at 0.05, 5.9e-5 at 0.4, 1.9e-4
    at 0.8). Explicit steps keep the CFL rule's step.

    IMEX-SSP3's default `threshold = 0.5` is about where its implicit step pays: the step is
    then at least `step_scale (1 + threshold) = 3` times longer than the explicit one, and it
    costs 2.4x to 3.3x an explicit step (viscous Burgers, WENO5, N = 256 to 1024, float64, CPU
    time of one thread; the 6 Fourier transforms of a step cost more than its 3 WENO
    evaluations). The cell Peclet number `max|f'| h / nu` is then below `2 c` (16/3 with the
    fourth-order viscous term): the viscous layer spans a few cells. IMEX-SSP2 (`step_scale
    = 1`) takes `threshold = 2`: its implicit steps are then at least 3x longer.
    """

    threshold: eqx.AbstractVar[float]
    step_scale: eqx.AbstractVar[float]

    def __check_init__(self):
        if not self.threshold >= 0:
            raise ValueError(f"`threshold` must be >= 0, got {self.threshold}.")
        if not 0 < self.step_scale < float("inf"):
            raise ValueError(f"`step_scale` must be positive and finite, got {self.step_scale}.")

    term_structure: ClassVar = FiniteVolumeTerm
    interpolation_cls: ClassVar[Callable[..., dfx.LocalLinearInterpolation]] = (
        dfx.LocalLinearInterpolation
    )
    # Butcher tableaux: explicit (a, b, c) and implicit (a~, b~).
    explicit: eqx.AbstractClassVar[tuple[tuple[float, ...], ...]]
    explicit_weights: eqx.AbstractClassVar[tuple[float, ...]]
    implicit: eqx.AbstractClassVar[tuple[tuple[float, ...], ...]]
    implicit_weights: eqx.AbstractClassVar[tuple[float, ...]]
    # The explicit tableau as an SSP solver in Shu-Osher form (for the explicit steps).
    explicit_method: eqx.AbstractClassVar[_AbstractSSPRK]

    def init(self, terms, t0, t1, y0, args):
        return None

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)

    def _evaluated(self, j: int) -> bool:
        """Whether stage `j` evaluates the hyperbolic part: its explicit column or weight is
        nonzero."""
        return self.explicit_weights[j] != 0 or any(row[j] != 0 for row in self.explicit)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del solver_state, made_jump
        while not isinstance(terms, FiniteVolumeTerm):  # diffrax wraps terms (time direction)
            terms = terms.term
        equation, nu = terms.equation, jnp.asarray(args, y0.dtype)
        dt = jnp.asarray(t1 - t0, y0.dtype)
        if equation.periodic:
            implicit_step = self._fourier_step
        else:
            implicit_step = self._stagewise_step

        def explicit_step(equation, y0, dt, nu):
            # The explicit tableau on the whole `L`, in its Shu-Osher form (`explicit_method`,
            # stages in a scan): 2x faster on the CPU than the same stages from the Butcher
            # tableau (measured, WENO5, N = 1024).
            return self.explicit_method.step(terms, t0, t1, y0, args, None, False)[0]

        y1 = jax.lax.cond(
            _implicit(self, equation, y0, nu),
            implicit_step,
            explicit_step,
            equation,
            y0,
            dt,
            nu,
        )
        return y1, None, dict(y0=y0, y1=y1), None, dfx.RESULTS.successful

    def _combination(self, y0, dt, coefficients, terms):
        """`y0 + dt sum_j coefficients_j terms_j` over the nonzero coefficients."""
        out = y0
        for c, term in zip(coefficients, terms):
            if c != 0:
                out = out + (dt * c) * term
        return out

    def _stagewise_step(self, equation, y0, dt, nu):
        """The implicit step, one `solve_diffusion` per stage (non-periodic grids)."""
        stages = len(self.explicit_weights)
        hyperbolic, viscous = [None] * stages, [None] * stages  # A(Y_j), nu D Y_j
        for i in range(stages):
            rhs = self._combination(y0, dt, self.explicit[i][:i], hyperbolic)
            rhs = self._combination(rhs, dt, self.implicit[i][:i], viscous)
            y = equation.solve_diffusion(rhs, dt * self.implicit[i][i] * nu)
            if self._evaluated(i):
                hyperbolic[i], viscous[i] = equation.split_field(y)
            else:
                viscous[i] = equation.diffusion(y)
            viscous[i] = nu * viscous[i]
        y1 = self._combination(y0, dt, self.explicit_weights, hyperbolic)
        return self._combination(y1, dt, self.implicit_weights, viscous)

    def _fourier_step(self, equation, y0, dt, nu):
        """The implicit step in the Fourier basis (periodic grids; see the class docstring)."""
        stages = len(self.explicit_weights)
        last = max(j for j in range(stages) if self._evaluated(j))
        if last != stages - 1:  # every IMEX tableau of this module evaluates its last stage
            raise ValueError(
                f"{type(self).__name__}: the Fourier-basis step needs a tableau whose last stage "
                "is evaluated (a nonzero weight of its explicit or implicit part)."
            )
        scaled = dt * nu * equation.diffusion_symbol(y0.dtype)  # dt nu lambda
        y0_hat = equation.to_fourier(y0)
        hyperbolic = [None] * stages  # A(Y_j)
        stage_values = [None] * stages  # Y_j in physical space, where transformed back
        inverses = {}  # 1 / (1 - ~a_ii dt nu lambda) by ~a_ii
        # When every stage with a viscous weight is evaluated (IMEX-SSP3: ~b_1 = 0), the viscous
        # update `dt nu D sum_j ~b_j Y_j` is one stencil on physical stage values, cheaper
        # than a further inverse transform.
        physical_update = all(
            self._evaluated(j) for j in range(stages) if self.implicit_weights[j] != 0
        )
        hyperbolic_hat = [None] * stages  # its transform, where a later stage uses it
        viscous_hat = [None] * stages  # dt nu lambda ^Y_j
        for i in range(stages):
            rhs = self._combination(y0_hat, dt, self.explicit[i][:i], hyperbolic_hat)
            rhs = self._combination(rhs, 1, self.implicit[i][:i], viscous_hat)
            diagonal = self.implicit[i][i]
            if diagonal not in inverses:  # SDIRK: one diagonal, one reciprocal a step
                inverses[diagonal] = 1 / (1 - diagonal * scaled)
            y_hat = rhs * inverses[diagonal]
            viscous_hat[i] = scaled * y_hat
            if not self._evaluated(i):
                continue
            if i == last and not physical_update:
                # The viscous part of the update is complete: one inverse transform for both.
                w_hat = self._combination(
                    jnp.zeros_like(y_hat), 1, self.implicit_weights, viscous_hat
                )
                y, viscous_update = equation.from_fourier(jnp.stack([y_hat, w_hat]), y0.dtype)
            else:
                y = equation.from_fourier(y_hat, y0.dtype)
                stage_values[i] = y
            hyperbolic[i] = equation.hyperbolic_field(y)
            if any(row[i] != 0 for row in self.explicit[i + 1 :]):
                hyperbolic_hat[i] = equation.to_fourier(hyperbolic[i])
        if physical_update:
            combined = self._combination(jnp.zeros_like(y0), 1, self.implicit_weights, stage_values)
            viscous_update = dt * nu * equation.diffusion(combined)
        return self._combination(y0, dt, self.explicit_weights, hyperbolic) + viscous_update


class IMEXSSP2(_AbstractIMEXSSP):
    r"""IMEX-SSP2(2,2,2) of Pareschi & Russo (2005): second order, the explicit part is SSPRK2
    (Heun; SSP coefficient 1), the implicit part L-stable SDIRK with `gamma = 1 - 1/sqrt 2`.

    Explicit `a_21 = 1`, `b = (1/2, 1/2)`; implicit `~a = [[gamma, 0], [1 - 2 gamma, gamma]]`,
    `~b = (1/2, 1/2)`. Two hyperbolic evaluations and two viscous solves per step; the step is
    limited by the hyperbolic CFL condition only when viscosity dominates (see
    `_AbstractIMEXSSP`). A `diffrax` solver for `solve`.

    **Arguments:**

    - `threshold`: implicit viscosity on steps where `nu sum_k c / h_k^2` exceeds `threshold`
        times the hyperbolic rate `sum_k max|f'| / h_k` (`0`: whenever `nu > 0`; default 2).
    - `step_scale`: implicit steps are `step_scale` times the CFL rule's step for the
        hyperbolic part alone (rate `sum_k max|f'| / h_k / step_scale`; see
        `_AbstractIMEXSSP`), positive; default 1 (the second-order time error dominates
        already at CFL 0.4).

    **Example:** `solve(equation, y0, ts, nu=0.01, solver=IMEXSSP2())`.
    """

    threshold: float = 2.0
    step_scale: float = 1.0

    explicit: ClassVar = ((0.0, 0.0), (1.0, 0.0))
    explicit_weights: ClassVar = (0.5, 0.5)
    implicit: ClassVar = ((1 - 2**-0.5, 0.0), (1 - 2 * (1 - 2**-0.5), 1 - 2**-0.5))
    implicit_weights: ClassVar = (0.5, 0.5)
    explicit_method: ClassVar = SSPRK2()

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
        times the hyperbolic rate `sum_k max|f'| / h_k` (`0`: whenever `nu > 0`; default 0.5).
    - `step_scale`: implicit steps are `step_scale` times the CFL rule's step for the
        hyperbolic part alone (rate `sum_k max|f'| / h_k / step_scale`; see
        `_AbstractIMEXSSP`), positive; default 2 (hyperbolic CFL 0.8 under `CFLStep(0.4)`;
        `step_scale=1` where the solution is resolved over many cells and its time error
        matters).

    **Example:** `solve(equation, y0, ts, nu=0.01, solver=IMEXSSP3())`.
    """

    threshold: float = 0.5
    step_scale: float = 2.0

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
    explicit_method: ClassVar = SSPRK3()

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
