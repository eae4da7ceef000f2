"""Projected gradient flows of edge weights, and graphon flows.

For an objective `F` and edge weights `A` (a symmetric `n x n` matrix in the box `K = [0, 1]^{n x
n}`), the Euclidean gradient flow sped up by `n^2` is `dA/dt = -n^2 grad_A F(W_A)`, `grad_A` the
gradient over symmetric matrices in the Frobenius inner product. Since `<U, DF(W_A)>_{L^2} = n^{-2}
sum_ij U_ij DF_ij`, this is `dA/dt = -DF(W_A)` on the blocks: the `L^2` gradient flow of the step
graphon, whatever `n` (with block lengths `mu` the speed-up is `1 / (mu_i mu_j)` entrywise).
Constrained to the box it is the curve of maximal slope

    dA/dt = P_{T_K(A)}(-DF(W_A)),

`P_{T_K(A)}` the projection onto the tangent cone of `K` at `A`: the velocity of a weight at 0 is
clipped below at 0, of a weight at 1 clipped above at 0. A weight on a face stays there while the
gradient points out of the box and leaves it as soon as the gradient points inward.

It is integrated with diffrax: any diffrax solver is wrapped in `ProjectedSolver`, which clips each
step back onto the box and evaluates the vector field at clipped stages (a projected Runge-Kutta
scheme). With fixed steps, `ProjectedSolver(dfx.Euler())` is projected Euler
`A <- clip(A - h DF(A))`, order 1, and `ProjectedSolver(dfx.Heun())` is order 2, also when weights
reach a face inside a step (measured in the tests: slopes 1.01 and 2.02 on a smooth problem, 0.97
and 2.02 on one where 11 of 16 weights stop at 0 or 1). Schemes that advance with a single late
stage (`dfx.Midpoint`) stall below a face (the clipped stage has zero velocity): measured order 1.
Higher-order tableaux keep their order between the hitting times; the default, adaptive Tsit5,
shrinks its steps around those times by itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import diffrax as dfx
import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, ArrayLike, Bool, Float, Shaped

from .._checks import is_concrete
from .._numerics import any_nonfinite
from ._discretise import AbstractRule, discretise, Midpoint
from ._graphon import AbstractGraphon, as_step_graphon, StepGraphon
from ._objective import AbstractObjective


@eqx.filter_jit
def tangent_cone_projection(
    A: Float[Array, "*shape"], V: Float[Array, "*shape"]
) -> Float[Array, "*shape"]:
    """Projection of a velocity `V` onto the tangent cone of the box `[0, 1]^{n x n}` at `A`
    (any shape: the box is a product of intervals).

    `(P V)_ij = max(V_ij, 0)` where `A_ij <= 0`, `min(V_ij, 0)` where `A_ij >= 1`, `V_ij` inside.

    **Arguments:** `A`, the point; `V`, the velocity (same shape).

    **Returns:** the projected velocity.

    **Example:**

    ```python
    import jax.numpy as jnp
    from jaxstat.graphons import tangent_cone_projection

    A, V = jnp.array([0.0, 0.5, 1.0]), jnp.array([-1.0, -1.0, -1.0])
    tangent_cone_projection(A, V)  # [0, -1, -1]
    ```
    """
    if jnp.shape(A) != jnp.shape(V):
        raise ValueError(f"point and velocity shapes differ: {jnp.shape(A)} vs {jnp.shape(V)}")
    outward = ((A <= 0) & (V < 0)) | ((A >= 1) & (V > 0))
    return jnp.where(outward, jnp.zeros_like(V), V)


@eqx.filter_jit
def projected_gradient(
    objective: AbstractObjective, W: StepGraphon | Shaped[ArrayLike, "n n"]
) -> Float[Array, "n n"]:
    """The velocity of the projected gradient flow, `P_{T_K(W)}(-DF(W))`.

    **Arguments:** `objective`; `W`, a step graphon or a matrix in `[0, 1]`.

    **Returns:** the block values of the velocity. A non-finite kernel (the entropy's at 0 or 1)
    raises through `eqx.error_if`.

    **Example:**

    ```python
    import jax.numpy as jnp
    from jaxstat.graphons import HomomorphismDensity, Pattern, projected_gradient

    projected_gradient(-HomomorphismDensity(Pattern.cycle(3)), jnp.ones((4, 4)))  # zeros: at 1
    ```
    """
    if not isinstance(objective, AbstractObjective):
        raise TypeError(f"expected an objective, got {type(objective).__name__}")
    W = as_step_graphon(W)
    V = _velocity(objective, W)
    return _check_finite_velocity(V, V)


_NONFINITE_VELOCITY = (
    "the derivative kernel is not finite (the scalar entropy's is infinite where W is 0 or 1: "
    "start entropy flows inside the open box)"
)
_BAD_T1 = (
    "the final time `t1` must be finite and at least `t0` (gradient flows run forward in time)."
)
_BAD_DT0 = "the step `dt0` must be positive and finite."


def _check_finite_velocity(x, V):
    """`x`, raising if the velocity `V` is not finite."""
    return eqx.error_if(x, ~jnp.all(jnp.isfinite(V)), _NONFINITE_VELOCITY)


def _bad_t1(t0, t1):
    return ~(jnp.isfinite(t0) & jnp.isfinite(t1) & (t1 >= t0))


def _bad_dt0(dt0):
    return ~(dt0 > 0) | ~jnp.isfinite(dt0)


@eqx.filter_jit
def _input_flags(objective, W0, t0, t1, dt0):
    """The conditions `gradient_flow` checks, `(bad, message)` in its order, as flags: computed
    in a program without host callback and raised on the host (see `gradient_flow`)."""
    checks = [(_bad_t1(t0, t1), _BAD_T1)]
    if dt0 is not None:
        checks.append((_bad_dt0(dt0), _BAD_DT0))
    checks.append((~jnp.all(jnp.isfinite(_velocity(objective, W0))), _NONFINITE_VELOCITY))
    return checks


def _clip(tree):
    return jtu.tree_map(lambda x: jnp.clip(x, 0, 1), tree)


class _ClippedInterpolation(dfx.AbstractLocalInterpolation):
    inner: dfx.AbstractLocalInterpolation

    @property
    def t0(self):
        return self.inner.t0

    @property
    def t1(self):
        return self.inner.t1

    def evaluate(self, t0, t1=None, left: bool = True):
        if t1 is None:
            return _clip(self.inner.evaluate(t0, left=left))
        a = _clip(self.inner.evaluate(t0, left=left))
        b = _clip(self.inner.evaluate(t1, left=left))
        return jtu.tree_map(lambda x, y: y - x, a, b)


@dataclasses.dataclass(frozen=True)
class _ClippedInterpolationCls:
    inner: Callable[..., dfx.AbstractLocalInterpolation]

    def __call__(self, **kwargs) -> _ClippedInterpolation:
        return _ClippedInterpolation(self.inner(**kwargs))


class ProjectedSolver(dfx.AbstractWrappedSolver):
    """A diffrax solver projected onto the box `[0, 1]`: every step of the wrapped solver is
    clipped back onto the box, and so is its dense output.

    With a vector field that is the tangent-cone projection of a gradient this is a projected
    Runge-Kutta scheme for the curve of maximal slope: `ProjectedSolver(dfx.Euler())` is projected
    Euler (order 1), `ProjectedSolver(dfx.Heun())` order 2 (also across the times weights reach a
    face), `ProjectedSolver(dfx.Tsit5())` order 5 between those times, with adaptive steps around
    them. A step after a clipped one recomputes the first stage of first-same-as-last solvers (the
    stored stage belongs to the unclipped point). Error estimates come from the wrapped solver, so
    adaptive controllers work unchanged. A trial step whose stages meet a non-finite velocity
    (an overshooting stage clipped onto a face where the kernel is infinite, as the scalar
    entropy's `log(W / (1 - W))` at 0 and 1) gets an infinite error estimate, so an adaptive
    controller rejects it and shrinks the step; under fixed steps the solve stops with
    `diffrax.RESULTS.nonfinite`.

    **Arguments:** `solver`: the diffrax solver to wrap.

    **Example:**

    ```python
    import diffrax as dfx
    import jax.random as jr
    from jaxstat.graphons import (
        FunctionGraphon,
        HomomorphismDensity,
        Pattern,
        ProjectedSolver,
        gradient_flow,
        sample_weighted_graph,
    )

    F = HomomorphismDensity(Pattern.cycle(3)) - 0.5 * HomomorphismDensity([(0, 1)])
    A0 = sample_weighted_graph(jr.key(0), FunctionGraphon(lambda x, y: x * y), 50)
    sol = gradient_flow(F, A0, 1.0, solver=ProjectedSolver(dfx.Heun()), dt0=0.01)
    ```
    """

    solver: dfx.AbstractSolver

    def __check_init__(self):
        if not isinstance(self.solver, dfx.AbstractSolver):
            raise TypeError(f"expected a diffrax solver, got {type(self.solver).__name__}")

    @property
    def term_structure(self):
        return self.solver.term_structure

    @property
    def interpolation_cls(self):  # pyright: ignore
        return _ClippedInterpolationCls(self.solver.interpolation_cls)

    @property
    def term_compatible_contr_kwargs(self):
        return self.solver.term_compatible_contr_kwargs

    def order(self, terms):
        return self.solver.order(terms)

    def strong_order(self, terms):
        return self.solver.strong_order(terms)

    def error_order(self, terms):
        return self.solver.error_order(terms)

    def init(self, terms, t0, t1, y0, args) -> tuple[Any, Bool[Array, ""]]:
        return self.solver.init(terms, t0, t1, y0, args), jnp.array(False)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        inner_state, clipped = solver_state
        y1, y_error, dense_info, inner_state, result = self.solver.step(
            terms, t0, t1, y0, args, inner_state, made_jump | clipped
        )
        # A trial step whose stages met a non-finite velocity (a stage clipped onto a face where
        # the derivative kernel is infinite, e.g. the entropy's at 0 or 1) is a failed step: an
        # infinite error estimate makes an adaptive controller reject it and shrink the step
        # (the exact flow stays inside the open box); a fixed-step solve stops with
        # `RESULTS.nonfinite`, since the rejected-step result is discarded only when the
        # controller rejects the step.
        finite = ~any_nonfinite((y1, y_error))
        y1 = jtu.tree_map(lambda a, b: jnp.where(finite, a, b), y1, y0)
        if y_error is not None:
            y_error = jtu.tree_map(lambda e: jnp.where(finite, e, jnp.inf), y_error)
        result = dfx.RESULTS.where(finite, result, dfx.RESULTS.nonfinite)
        y1_box = _clip(y1)
        leaves = zip(jtu.tree_leaves(y1), jtu.tree_leaves(y1_box))
        clipped = jnp.any(jnp.stack([jnp.any(a != b) for a, b in leaves]))
        return y1_box, y_error, dense_info, (inner_state, clipped), result

    def func(self, terms, t0, y0, args):
        return self.solver.func(terms, t0, y0, args)


def _velocity(objective, W):
    """`P_{T_K(W)}(-DF(W))`, non-finite where the kernel is (no check: see `projected_gradient`)."""
    return tangent_cone_projection(W.values, -objective.kernel(W))


def _vector_field(t, y, args):
    objective, sizes = args
    W = StepGraphon(jnp.clip(y, 0, 1), sizes, check=False)
    # A non-finite velocity at a trial stage is not an error here: `ProjectedSolver` turns it
    # into a rejected step. (Coefficients of the objective may have a wider dtype than y.)
    return _velocity(objective, W).astype(y.dtype)


def gradient_flow(
    objective: AbstractObjective,
    W0: StepGraphon | Shaped[ArrayLike, "n n"],
    t1: ArrayLike,
    *,
    t0: ArrayLike = 0.0,
    dt0: ArrayLike | None = None,
    solver: dfx.AbstractSolver | None = None,
    stepsize_controller: dfx.AbstractStepSizeController | None = None,
    saveat: dfx.SaveAt = dfx.SaveAt(t1=True),
    max_steps: int | None = 16**4,
    adjoint: dfx.AbstractAdjoint = dfx.RecursiveCheckpointAdjoint(),
    throw: bool = True,
) -> dfx.Solution:
    """The projected gradient flow of edge weights, `dA/dt = P_{T_K(A)}(-n^2 grad_A F(W_A))`.

    Equal to the `L^2` gradient flow of the step graphon `W_A` in the box (`-n^2 grad_A F =
    -DF(W_A)`), so it does not depend on how finely the graphon is cut: refining `W0` refines the
    whole trajectory.

    **Arguments:**

    - `objective`: the objective `F` (see `HomomorphismDensity`, `ScalarEntropy`, combinations).
    - `W0`: the initial step graphon, or the initial weight matrix (uniform blocks).
    - `t1`: the final time, finite and `>= t0`; `t0` the initial time (default 0). (The flow
      runs forward only: the projection onto the box makes it irreversible.)
    - `dt0`: the (initial) step, positive; `None` lets the adaptive controller choose.
    - `solver`: a diffrax solver, wrapped in `ProjectedSolver` if it is not one; default
      `ProjectedSolver(dfx.Tsit5())`.
    - `stepsize_controller`: default `dfx.PIDController(rtol=1e-6, atol=1e-6)` when `dt0` is `None`,
      else `dfx.ConstantStepSize()` (fixed steps of `dt0`).
    - `saveat`, `max_steps`, `adjoint`, `throw`: as `diffrax.diffeqsolve`.

    **Returns:** a `diffrax.Solution` whose `ys` are weight matrices (`ys[k]` at `ts[k]`, block
    lengths those of `W0`), with `result` and `stats`.

    **Raises** `ValueError` (through `eqx.error_if` when traced, under `jit`) if the velocity at
    `W0` is not finite (an entropy objective started on a face) or the times are invalid.
    Objectives whose kernel blows up towards a face (the scalar entropy) are integrated up to
    it: the exact flow stays inside, and trial steps that cross are rejected (see
    `ProjectedSolver`).

    **Example:**

    ```python
    import diffrax as dfx
    import jax.numpy as jnp
    from jaxstat.graphons import HomomorphismDensity, Pattern, gradient_flow

    F = HomomorphismDensity(Pattern.cycle(3))
    sol = gradient_flow(F, jnp.full((8, 8), 0.5), 1.0, saveat=dfx.SaveAt(ts=jnp.linspace(0, 1, 5)))
    sol.ys[:, 0, 0]  # 0.5 / (1 + 1.5 t)
    ```
    """
    if not isinstance(objective, AbstractObjective):
        raise TypeError(f"expected an objective, got {type(objective).__name__}")
    W0 = as_step_graphon(W0)
    dtype = W0.values.dtype
    for name, value in (("t0", t0), ("t1", t1), ("dt0", dt0)):
        if value is not None and jnp.issubdtype(jnp.result_type(value), jnp.complexfloating):
            raise TypeError(f"`{name}` must be real, got {jnp.result_type(value)}.")
    # With concrete inputs the checks run here (a small program of flags, raised on the host):
    # the flow's program then has no host callback, which JAX's persistent compilation cache
    # needs to store it. Traced inputs are checked inside the flow's program.
    checked = False
    if is_concrete(objective, W0, t0, t1, dt0):
        as_array = lambda v: None if v is None else jnp.asarray(v, dtype)  # noqa: E731
        flags = _input_flags(objective, W0, *map(as_array, (t0, t1, dt0)))
        # (Not concrete when the objective closes over a traced value.)
        checked = is_concrete(flags)
        for bad, message in flags if checked else ():
            if bool(bad):
                raise ValueError(message)
    return _gradient_flow(
        objective,
        W0,
        t1,
        t0=t0,
        dt0=dt0,
        solver=solver,
        stepsize_controller=stepsize_controller,
        saveat=saveat,
        max_steps=max_steps,
        adjoint=adjoint,
        throw=throw,
        checked=checked,
    )


@eqx.filter_jit
def _gradient_flow(
    objective: AbstractObjective,
    W0: StepGraphon,
    t1: ArrayLike,
    *,
    t0: ArrayLike,
    dt0: ArrayLike | None,
    solver: dfx.AbstractSolver | None,
    stepsize_controller: dfx.AbstractStepSizeController | None,
    saveat: dfx.SaveAt,
    max_steps: int | None,
    adjoint: dfx.AbstractAdjoint,
    throw: bool,
    checked: bool,
) -> dfx.Solution:
    """`gradient_flow` after its host-side checks; `checked=True` (static) when they ran there
    (concrete inputs), so that none is repeated in the program."""
    if solver is None:
        solver = ProjectedSolver(dfx.Tsit5())
    elif type(solver) is not ProjectedSolver:
        solver = ProjectedSolver(solver)
    if stepsize_controller is None:
        if dt0 is None:
            stepsize_controller = dfx.PIDController(rtol=1e-6, atol=1e-6)
        else:
            stepsize_controller = dfx.ConstantStepSize()
    dtype = W0.values.dtype
    t0, t1 = jnp.asarray(t0, dtype), jnp.asarray(t1, dtype)
    if dt0 is not None:
        dt0 = jnp.asarray(dt0, dtype)
    y0 = W0.values
    if not checked:
        # Gradient flows run forward in time: the projection onto the box makes the backward
        # flow ill-posed. The start must have a finite velocity (the flow then stays where it
        # is finite).
        t1 = eqx.error_if(t1, _bad_t1(t0, t1), _BAD_T1)
        if dt0 is not None:
            dt0 = eqx.error_if(dt0, _bad_dt0(dt0), _BAD_DT0)
        y0 = _check_finite_velocity(y0, _velocity(objective, W0))
    return dfx.diffeqsolve(
        dfx.ODETerm(_vector_field),
        solver,
        t0,
        t1,
        dt0,
        y0,
        args=(objective, W0.sizes),
        saveat=saveat,
        stepsize_controller=stepsize_controller,
        max_steps=max_steps,
        adjoint=adjoint,
        throw=throw,
    )


def graphon_flow(
    objective: AbstractObjective,
    W0: AbstractGraphon,
    t1: ArrayLike,
    *,
    n: int,
    rule: AbstractRule = Midpoint(),
    **kwargs,
) -> tuple[StepGraphon, dfx.Solution]:
    """The graphon gradient flow `dW/dt = P_{T(W)}(-DF(W))` from a graphon, on a grid of `n` blocks.

    For a step graphon on a partition that the grid refines this is the exact graphon flow (up to
    time integration); for other graphons, the flow of `discretise(W0, n, rule=rule)`, the
    reference ("fine-grid") flow that finite flows converge to as `n` grows.

    **Arguments:** `objective`, `W0`, `t1`; `n`, the grid size; `rule`, the discretisation rule;
    `**kwargs`, passed on to `gradient_flow`.

    **Returns:** `(W0_n, solution)`: the discretised initial graphon (its `sizes` are the block
    lengths of `solution.ys`) and the `diffrax.Solution`.

    **Example:**

    ```python
    from jaxstat.graphons import FunctionGraphon, HomomorphismDensity, Pattern, graphon_flow

    W = FunctionGraphon(lambda x, y: 0.2 + 0.6 * x * y)
    Wn, sol = graphon_flow(HomomorphismDensity(Pattern.cycle(3)), W, 1.0, n=256)
    ```
    """
    Wn = discretise(W0, n, rule=rule)
    return Wn, gradient_flow(objective, Wn, t1, **kwargs)
