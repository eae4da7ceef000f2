"""Batched critical-point search for scalar maps `f: R^n -> R`.

From every start `x_0` in a batch: Newton's method on `grad f(x) = 0` (`optimistix.root_find`,
the Jacobian of `grad f` being `hess f`); where Newton fails (a singular or ill-conditioned
Hessian, divergence) a least-squares solve of `min |grad f(x)|^2` (the `Fallback` strategy,
Levenberg-Marquardt by default), which stays well defined when `hess f` is singular, polished by a
few Gauss-Newton steps with the pseudo-inverse of `hess f` (`lineax.SVD`). A point is accepted
when it is finite, lies in the box and `|grad f(x)|_2 <= residual_tol`. Accepted points are
deduplicated (greedy clustering within `distinct_tol`) and each distinct point is certified by the
spectrum of `hess f`: Morse index, degeneracy test, residual, smallest `|eigenvalue|`.

The search runs in stages, one private function each: `_validate` (static checks and defaults),
the start screen (`AbstractStartScreen.parents`, `_screen.py`: which starts Newton runs from, the
others taking their representative's result), `_newton` (the solves, scheduled over vmapped lanes
by `_lane_solve`) and `_fallback`, `_residuals`, `_accept`
(residual test), `_cluster` and `_collect` (deduplication, certificates), `_non_isolated`
(continua of critical points), `_completeness` (the Poincare-Hopf check) and `_result` (the result
code).
"""

import functools
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.lax as lax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
import optimistix as optx
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._checks import is_concrete
from .._sharding import auto_axes_inside
from ._network import as_scalar_map
from ._screen import AbstractStartScreen, AllStarts, roots
from ._solution import Certificate, CriticalPoints, RESULTS


class _Derivatives(eqx.Module):
    """`f`, `grad f`, `x -> (f, grad f)` and `x -> (f, grad f, hess f)` of a scalar map or a plain
    function."""

    value: Callable
    gradient: Callable
    value_and_gradient: Callable
    value_gradient_hessian: Callable


def _derivatives(fn) -> _Derivatives:
    smap = as_scalar_map(fn)
    if smap is not None:
        return _Derivatives(
            smap, smap.gradient, smap.value_and_gradient, smap.value_gradient_hessian
        )
    if not callable(fn):
        raise TypeError(f"expected a callable scalar map, got {type(fn).__name__}")

    def vgh(x):
        return fn(x), jax.grad(fn)(x), jax.hessian(fn)(x)

    return _Derivatives(fn, jax.grad(fn), jax.value_and_grad(fn), vgh)


def _eps(dtype) -> float:
    return float(jnp.finfo(dtype).eps)


def _min_norm_step(g, h):
    """`H^+ g`, the minimum-norm Newton (Gauss-Newton) correction, with `H^+` the pseudo-inverse
    (`lineax.SVD`: singular values below `eps * n * s_max` dropped)."""
    op = lx.MatrixLinearOperator(h, lx.symmetric_tag)
    return lx.linear_solve(op, g, lx.SVD(), throw=False).value


def _certify(g, h, degeneracy_rtol) -> Certificate:
    h = (h + h.T) / 2
    lam = jnp.linalg.eigvalsh(h)
    abs_lam = jnp.abs(lam)
    min_abs = jnp.min(abs_lam)
    tol = degeneracy_rtol * jnp.max(abs_lam)
    return Certificate(
        gradient_norm=jnp.linalg.norm(g),
        eigenvalues=lam,
        min_abs_eigenvalue=min_abs,
        newton_step=jnp.max(jnp.abs(_min_norm_step(g, h))),
        tolerance=tol,
        degenerate=min_abs <= tol,
        nullity=jnp.sum(abs_lam <= tol),
        index=jnp.sum(lam < -tol),
    )


@eqx.filter_jit
def certify_critical_point(
    fn, x: Float[Array, " n"], *, degeneracy_rtol: float | None = None
) -> Certificate:
    """The certificate of a candidate critical point `x` of `f`: residual `|grad f(x)|`, the
    eigenvalues of `hess f(x)`, the Morse index and the degeneracy test
    `min |lambda| <= degeneracy_rtol * max |lambda|`.

    **Arguments:**

    - `fn`: a scalar map (`ScalarMLP`, `NeuralODE`, `eqx.nn.MLP`, or any function `R^n -> R`).
    - `x`: the point, shape `(n,)`.
    - `degeneracy_rtol`: default `eps^(1/3)` of the dtype (see `find_critical_points`).

    **Returns:** a `Certificate`.

    ```python
    import jax.numpy as jnp
    from jaxstat.morse import certify_critical_point

    cert = certify_critical_point(lambda x: x[0] ** 2 - x[1] ** 2, jnp.zeros(2))
    cert.index, cert.degenerate   # 1, False
    ```
    """
    if degeneracy_rtol is None:
        degeneracy_rtol = _eps(x.dtype) ** (1 / 3)
    _, g, h = _derivatives(fn).value_gradient_hessian(x)
    return _certify(g, h, degeneracy_rtol)


def uniform_starts(
    key: PRNGKeyArray, lower: Float[ArrayLike, " n"], upper: Float[ArrayLike, " n"], num: int
) -> Float[Array, "num n"]:
    """`num` start points drawn uniformly from the box `lower <= x <= upper`.

    ```python
    import jax.numpy as jnp
    import jax.random as jr
    from jaxstat.morse import uniform_starts

    starts = uniform_starts(jr.key(0), -3 * jnp.ones(2), 3 * jnp.ones(2), 10_000)
    ```
    """
    lower, upper = jnp.asarray(lower), jnp.asarray(upper)
    if lower.ndim != 1 or lower.shape != upper.shape:
        raise ValueError(
            f"`lower` and `upper` must be vectors of one shape, got {lower.shape}, {upper.shape}"
        )
    if is_concrete(lower, upper) and not np.all(np.asarray(upper) > np.asarray(lower)):
        raise ValueError("need `upper > lower` in every coordinate")
    # The box's own floating dtype (a float32 box gives float32 starts, also under x64); integer
    # bounds give the default floating dtype.
    dtype = jnp.result_type(lower, upper)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    lower, upper = lower.astype(dtype), upper.astype(dtype)
    width = upper - lower
    if not is_concrete(width):  # traced bounds: checked in the caller's program
        width = eqx.error_if(width, ~jnp.all(width > 0), "need `upper > lower` in every coordinate")
    # (The sum outside the program: inside, XLA fuses it with the product into one multiply-add,
    # rounded once, and the starts would differ in their last bits from those drawn so far.)
    return lower + _scaled_uniform(key, width, int(num))


@functools.partial(jax.jit, static_argnums=2)
def _scaled_uniform(key, width, num):
    """`u * width`, `u` uniform on `[0, 1)^n`, `num` times, in one program."""
    return jr.uniform(key, (num, width.shape[0]), width.dtype) * width


# ---------------------------------------------------------------------------------------------
# Strategies


class Fallback(eqx.Module):
    """The least-squares fallback of the search: from the starts where Newton's method failed,
    minimise `|grad f(x)|^2` (well defined where `hess f` is singular, so degenerate critical
    points are found too), then polish by `polish_steps` Gauss-Newton steps
    `x <- x - H^+ grad f(x)` (`H^+` the pseudo-inverse of `hess f`), each kept only if it lowers
    `|grad f|`.

    **Arguments:**

    - `solver`: an `optimistix` least-squares solver; default `optx.LevenbergMarquardt` with
        `rtol = atol = eps^(2/3)` of the dtype.
    - `max_starts`: the fallback runs from at most this many of the starts where Newton failed (a
        fixed-size batch: its cost is bounded whatever the number of failures).
    - `polish_steps`: the number of Gauss-Newton polishing steps.

    Pass `fallback=None` to `find_critical_points` to run Newton alone (enough for a Morse
    function: its critical points are the limits of Newton's basins).
    """

    solver: optx.AbstractLeastSquaresSolver | None = None
    max_starts: int = eqx.field(static=True, default=256)
    polish_steps: int = eqx.field(static=True, default=4)


class DoublingStarts(eqx.Module):
    """Refinement strategy of `find_all_critical_points`: `num_starts` uniform starts, doubled
    after every round whose completeness check fails, up to `max_starts` (the budget). Every round
    reuses the previous round's starts and adds as many new ones.
    """

    num_starts: int = eqx.field(static=True, default=1024)
    max_starts: int = eqx.field(static=True, default=16384)

    def __check_init__(self):
        if not 1 <= self.num_starts <= self.max_starts:
            raise ValueError(
                f"need 1 <= num_starts <= max_starts, got {self.num_starts}, {self.max_starts}"
            )

    def rounds(self) -> list[int]:
        """The number of starts of each round: `num_starts * 2^r`, the last one `max_starts`."""
        out = [self.num_starts]
        while out[-1] < self.max_starts:
            out.append(min(2 * out[-1], self.max_starts))
        return out


# ---------------------------------------------------------------------------------------------
# Guard: end a solve as soon as the iterate leaves a region (or stops being finite), so that
# starts which drift away (to critical points outside the box, or to infinity where the gradient
# of a saturating network decays) stop early instead of holding the whole vmapped batch for
# `max_steps` iterations. Everything else is delegated to the wrapped optimistix solver. One
# implementation; the two final classes only say which kind of optimistix solver it is.


def _in_precision(state, dtype):
    """The solver's `state` with its floating arrays wider than `dtype` cast to `dtype`.

    optimistix builds some state scalars from Python floats (`jnp.array(1.0)`: the trust-region
    step size of `LevenbergMarquardt`): weakly typed float64 under `jax_enable_x64`, strongly
    typed once carried through the solve's loop, whatever the dtype of the iterate. Such a scalar
    then promotes the damped least-squares system to float64, whose structure no longer matches
    the float32 iterate. A float32 search keeps its whole state in float32."""

    def cast(x):
        if (
            eqx.is_array(x)
            and jnp.issubdtype(x.dtype, jnp.floating)
            and jnp.finfo(x.dtype).bits > jnp.finfo(dtype).bits
        ):
            return x.astype(dtype)
        return x

    return jax.tree_util.tree_map(cast, state)


def _escaped(y, lower, upper):
    return ~jnp.all(jnp.isfinite(y)) | jnp.any(y < lower) | jnp.any(y > upper)


class _AbstractGuard(eqx.Module):
    solver: eqx.AbstractVar[Any]
    lower: eqx.AbstractVar[Array]
    upper: eqx.AbstractVar[Array]

    @property
    def rtol(self):
        return self.solver.rtol

    @property
    def atol(self):
        return self.solver.atol

    @property
    def norm(self):
        return self.solver.norm

    def init(self, fn, y, args, options, f_struct, aux_struct, tags):
        state = self.solver.init(fn, y, args, options, f_struct, aux_struct, tags)
        return _in_precision(state, y.dtype)

    def step(self, fn, y, args, options, state, tags):
        y, state, aux = self.solver.step(fn, y, args, options, state, tags)
        return y, _in_precision(state, y.dtype), aux

    def terminate(self, fn, y, args, options, state, tags):
        done, result = self.solver.terminate(fn, y, args, options, state, tags)
        out = _escaped(y, self.lower, self.upper)
        return done | out, optx.RESULTS.where(out, optx.RESULTS.nonlinear_divergence, result)

    def postprocess(self, fn, y, aux, args, options, state, tags, result):
        return self.solver.postprocess(fn, y, aux, args, options, state, tags, result)


class _GuardedRootFinder(_AbstractGuard, optx.AbstractRootFinder):
    solver: optx.AbstractRootFinder
    lower: Array
    upper: Array


class _GuardedLeastSquares(_AbstractGuard, optx.AbstractLeastSquaresSolver):
    solver: optx.AbstractLeastSquaresSolver
    lower: Array
    upper: Array


def _guard(solver, lower, upper) -> _AbstractGuard:
    if isinstance(solver, optx.AbstractLeastSquaresSolver):
        return _GuardedLeastSquares(solver, lower, upper)
    if isinstance(solver, optx.AbstractRootFinder):
        return _GuardedRootFinder(solver, lower, upper)
    raise TypeError(
        f"`solver` must be an optimistix root finder and `fallback.solver` an optimistix "
        f"least-squares solver, got {type(solver).__name__}"
    )


# ---------------------------------------------------------------------------------------------
# Stages


class _Setup(eqx.Module):
    """What `_validate` settles before the solves: tolerances, the box and the guard region."""

    solver: optx.AbstractRootFinder
    fallback_solver: optx.AbstractLeastSquaresSolver | None
    degeneracy_rtol: Array
    lower: Array | None
    upper: Array | None
    guard_lower: Array
    guard_upper: Array


def _validate(fn, starts, lower, upper, solver, fallback, max_points, degeneracy_rtol) -> _Setup:
    """Static checks (shapes, dtypes, sizes) with a `ValueError`/`TypeError`, and defaults."""
    if starts.ndim != 2:
        raise ValueError(f"`starts` must have shape (k, n), got {starts.shape}")
    if not jnp.issubdtype(starts.dtype, jnp.floating):
        raise TypeError(f"`starts` must be real floating, got dtype {starts.dtype}")
    k, n = starts.shape
    if k == 0 or n == 0:
        raise ValueError(f"need at least one start in at least one dimension, got {starts.shape}")
    smap = as_scalar_map(fn)
    if smap is not None and smap.in_size != n:
        raise ValueError(f"the map has {smap.in_size} inputs but the starts have {n} coordinates")
    if max_points < 1:
        raise ValueError(f"`max_points` must be positive, got {max_points}")
    if isinstance(fallback, bool):
        raise TypeError(
            "`fallback` is a `Fallback` strategy or `None` (no fallback): use `fallback=None` "
            "for `False` and `Fallback()` for `True`"
        )
    if fallback is not None and not isinstance(fallback, Fallback):
        raise TypeError(f"`fallback` must be a `Fallback` or None, got {type(fallback).__name__}")
    if (lower is None) != (upper is None):
        raise ValueError("give both `lower` and `upper`, or neither")
    dtype = starts.dtype
    tol = _eps(dtype) ** (2 / 3)
    if solver is None:
        solver = optx.Newton(rtol=tol, atol=tol)
    fallback_solver = None
    if fallback is not None:
        fallback_solver = fallback.solver
        if fallback_solver is None:
            fallback_solver = optx.LevenbergMarquardt(rtol=tol, atol=tol)
    if degeneracy_rtol is None:
        degeneracy_rtol = _eps(dtype) ** (1 / 3)
    if lower is not None:
        lower = jnp.broadcast_to(jnp.asarray(lower, dtype), (n,))
        upper = jnp.broadcast_to(jnp.asarray(upper, dtype), (n,))
        # Iterates may leave the box on their way to a point inside it: allow half a box width.
        margin = (upper - lower) / 2
        guard_lower, guard_upper = lower - margin, upper + margin
    else:
        guard_lower = jnp.full((n,), -jnp.inf, dtype)
        guard_upper = jnp.full((n,), jnp.inf, dtype)
    return _Setup(
        solver=solver,
        fallback_solver=fallback_solver,
        degeneracy_rtol=jnp.asarray(degeneracy_rtol, dtype),
        lower=lower,
        upper=upper,
        guard_lower=guard_lower,
        guard_upper=guard_upper,
    )


def _batched(fn, xs, batch_size):
    """`vmap(fn)(xs)`, computed in batches of `batch_size` one after another."""
    k = jax.tree_util.tree_leaves(xs)[0].shape[0]
    if batch_size is None or batch_size >= k:
        return jax.vmap(fn)(xs)
    # Pad to a multiple of the batch size (with copies of the first entry) so that `lax.map` traces
    # `fn` once, not once more for a remainder.
    pad = -k % batch_size
    xs = jax.tree_util.tree_map(lambda x: jnp.concatenate([x, jnp.repeat(x[:1], pad, 0)]), xs)
    out = lax.map(fn, xs, batch_size=batch_size)
    return jax.tree_util.tree_map(lambda x: x[:k], out)


def _batched_active(fn, xs, active, batch_size):
    """`vmap(fn)(xs)` in batches of `batch_size`, as `_batched`, where a batch without an active
    entry is skipped (`lax.cond`; zeros there): the active entries should come first."""
    k = active.shape[0]
    if batch_size is None or batch_size >= k:
        return jax.vmap(fn)(xs)
    pad = -k % batch_size
    xs = jax.tree_util.tree_map(lambda x: jnp.concatenate([x, jnp.repeat(x[:1], pad, 0)]), xs)
    active = jnp.concatenate([active, jnp.zeros(pad, bool)])
    split = lambda x: x.reshape(-1, batch_size, *x.shape[1:])  # noqa: E731
    xs, active = jax.tree_util.tree_map(split, xs), split(active)
    struct = jax.eval_shape(jax.vmap(fn), jax.tree_util.tree_map(lambda x: x[0], xs))

    def batch(args):
        x, a = args
        skip = lambda x: jax.tree_util.tree_map(  # noqa: E731
            lambda s: jnp.zeros(s.shape, s.dtype), struct
        )
        return lax.cond(jnp.any(a), jax.vmap(fn), skip, x)

    out = lax.map(batch, (xs, active))
    return jax.tree_util.tree_map(lambda x: x.reshape(-1, *x.shape[2:])[:k], out)


def _residual_fn(grad_fn):
    def residual(y, args):
        del args
        return grad_fn(y)

    return residual


def _region(setup: _Setup, active):
    """The guard region of one start: empty for an inactive start, which then stops before its
    first step."""
    return (
        jnp.where(active, setup.guard_lower, jnp.inf),
        jnp.where(active, setup.guard_upper, -jnp.inf),
    )


def _lane_solve(fn, solver, starts, active, max_steps, lanes):
    """Run the optimistix `solver` on `fn(y) = 0` (a root finder) or `min |fn(y)|^2` (a
    least-squares solver) from every active start, `lanes` solves at a time, and return the last
    iterates and whether each solve succeeded.

    Each start follows the iteration of `optimistix.root_find` / `optimistix.least_squares`
    exactly: `state = init(y_0)`, then `y_{i+1}, state = step(y_i, state)` while
    `terminate(y_i, state)` is false and `i < max_steps`; a non-finite iterate ends the solve
    (`RESULTS.nonfinite`), the cap ends it unsuccessfully. What differs is the schedule: the solves
    are vmapped over `lanes` lanes, and a lane whose solve has ended hands its result back and takes
    the next start of the queue (the active starts, in order) at the following iteration. The loop
    runs about `sum_i steps_i / lanes` iterations, where a vmapped batch of `lanes` solves costs
    as many iterations as its slowest member (Newton's iteration counts from uniform starts are
    skewed: on the neural ODE of `benchmarks/bench_morse.py`, a mean of 4.7 steps with a tail to 17,
    which every batch of 256 samples). Inactive starts
    are never solved: their iterate is the start, unsuccessful.
    """
    k, n = starts.shape
    lanes = k if lanes is None else max(1, min(int(lanes), k))
    args, options, tags = None, {}, frozenset()

    def with_aux(y, args):
        return fn(y, args), None

    f_struct = jax.eval_shape(lambda y: fn(y, None), starts[0])
    # The queue: indices of the active starts in order, then `k` (no start) for the rest.
    (queue,) = jnp.nonzero(active, size=k, fill_value=k)
    num_queued = jnp.sum(active)

    def terminate(y, state):
        done, result = solver.terminate(with_aux, y, args, options, state, tags)
        finite = jnp.all(jnp.isfinite(y))
        return done, optx.RESULTS.where(finite, result, optx.RESULTS.nonfinite)

    def init(y0):
        state = solver.init(with_aux, y0, args, options, f_struct, None, tags)
        done, result = terminate(y0, state)
        return state, done, result

    def step(y, state):
        new_y, new_state, _ = solver.step(with_aux, y, args, options, state, tags)
        done, result = terminate(y, new_state)  # as optimistix: the old iterate, the new state
        return new_y, new_state, done, result

    def finish(y, state, done, result, steps):
        """Whether the solve has ended, its final iterate and whether it succeeded."""
        going = ~done & (result == optx.RESULTS.successful)
        ended = ~(going & (steps < max_steps))
        result = optx.RESULTS.where(going, optx.RESULTS.nonlinear_max_steps_reached, result)
        y = solver.postprocess(with_aux, y, None, args, options, state, tags, result)[0]
        return ended, y, result == optx.RESULTS.successful

    idx0 = jnp.where(jnp.arange(lanes) < num_queued, queue[:lanes], k)
    y0 = starts[jnp.minimum(idx0, k - 1)]
    state0, done0, result0 = eqx.filter_vmap(init)(y0)
    dynamic0, static = eqx.partition(state0, eqx.is_array)
    carry0 = (
        idx0,
        y0,
        jnp.zeros(lanes, int),
        dynamic0,
        done0,
        result0,
        jnp.minimum(num_queued, lanes),
        starts,
        jnp.zeros(k, bool),
    )

    def cond(carry):
        return jnp.any(carry[0] < k)

    def body(carry):
        idx, y, steps, dynamic, done, result, nxt, out_y, out_ok = carry
        live = idx < k
        running = live & ~done & (result == optx.RESULTS.successful) & (steps < max_steps)
        state = eqx.combine(dynamic, static)
        new_y, new_state, new_done, new_result = eqx.filter_vmap(step)(y, state)
        new_dynamic = eqx.filter(new_state, eqx.is_array)

        def keep(new, old):
            mask = jnp.reshape(running, running.shape + (1,) * (jnp.ndim(new) - 1))
            return jnp.where(mask, new, old)

        y = keep(new_y, y)
        dynamic = jax.tree_util.tree_map(keep, new_dynamic, dynamic)
        done = keep(new_done, done)
        result = jax.tree_util.tree_map(keep, new_result, result)
        steps = jnp.where(running, steps + 1, steps)
        # The solves that have ended hand back their result ...
        state = eqx.combine(dynamic, static)
        ended, y_final, ok = eqx.filter_vmap(finish)(y, state, done, result, steps)
        ended = live & ended
        target = jnp.where(ended, idx, k)  # out of range: dropped
        out_y = out_y.at[target].set(y_final, mode="drop")
        out_ok = out_ok.at[target].set(ok, mode="drop")
        # ... and take the next starts of the queue.
        position = nxt + jnp.cumsum(ended) - 1
        fresh = jnp.where(position < num_queued, queue[jnp.minimum(position, k - 1)], k)
        idx = jnp.where(ended, fresh, idx)
        y_new = starts[jnp.minimum(idx, k - 1)]
        state_new, done_new, result_new = eqx.filter_vmap(init)(y_new)

        def refill(new, old):
            mask = jnp.reshape(ended, ended.shape + (1,) * (jnp.ndim(new) - 1))
            return jnp.where(mask, new, old)

        y = refill(y_new, y)
        dynamic = jax.tree_util.tree_map(refill, eqx.filter(state_new, eqx.is_array), dynamic)
        done = refill(done_new, done)
        result = jax.tree_util.tree_map(refill, result_new, result)
        steps = jnp.where(ended, 0, steps)
        nxt = nxt + jnp.sum(ended)
        return idx, y, steps, dynamic, done, result, nxt, out_y, out_ok

    out = lax.while_loop(cond, body, carry0)
    return out[7], out[8]


def _stop_gradient(tree):
    return jax.tree_util.tree_map(lambda x: lax.stop_gradient(x) if eqx.is_array(x) else x, tree)


@eqx.filter_custom_jvp
def _implicit_roots(grad_fn, ys, ok, safe):
    """`ys`, with the derivative of the implicit function theorem where `ok`: for
    `grad f(y*; theta) = 0`, `dy* = -(hess f(y*))^{-1} (d grad f / d theta)[dtheta]` (as
    `optimistix.ImplicitAdjoint`); zero elsewhere, computed at the finite points `safe` so that no
    NaN reaches a derivative. `grad_fn` is closure-converted: `theta` is every array it closes
    over."""
    del grad_fn, ok, safe
    return ys


@_implicit_roots.def_jvp
def _implicit_roots_jvp(primals, tangents):
    grad_fn, ys, ok, safe = primals
    t_grad_fn = tangents[0]
    # Zero tangents for the arrays without one; the roots do not depend on the starts.
    t_grad_fn = jax.tree_util.tree_map(
        lambda p, t: None if p is None else (jnp.zeros_like(p) if t is None else t),
        eqx.filter(grad_fn, eqx.is_inexact_array),
        t_grad_fn,
        is_leaf=lambda v: v is None,
    )
    diff, static = eqx.partition(grad_fn, eqx.is_inexact_array)

    def tangent(y, ok, safe):
        y = jnp.where(ok, y, safe)

        def residual(d):
            return eqx.combine(d, static)(y)

        _, mixed = jax.jvp(residual, (diff,), (t_grad_fn,))
        hess = jax.jacfwd(grad_fn)(y)
        hess = jnp.where(ok, hess, jnp.eye(y.shape[0], dtype=y.dtype))
        return jnp.where(ok, -jnp.linalg.solve(hess, jnp.where(ok, mixed, 0.0)), 0.0)

    return ys, jax.vmap(tangent)(ys, ok, safe)


def _newton(d: _Derivatives, setup: _Setup, starts, active, max_steps, batch_size):
    """Stage 1: Newton's method on `grad f = 0` from every active start, `batch_size` solves at a
    time (`_lane_solve`). Returns the last iterates and whether each solve succeeded. The solve
    itself is not differentiated: the iterates carry the implicit-function-theorem derivative
    (`_implicit_roots`)."""
    grad_fn = eqx.filter_closure_convert(d.gradient, starts[0])
    solver = _guard(setup.solver, setup.guard_lower, setup.guard_upper)
    frozen = _stop_gradient(grad_fn)
    ys, ok = _lane_solve(
        _residual_fn(frozen), solver, lax.stop_gradient(starts), active, max_steps, batch_size
    )
    return _implicit_roots(grad_fn, ys, ok, lax.stop_gradient(starts)), ok


def _polish(vgh, y, steps):
    """`steps` Gauss-Newton steps `y <- y - H^+ grad f(y)` (`H^+` the pseudo-inverse of
    `hess f`, dropping singular values below `eps * n * s_max`), each kept only if it lowers
    `|grad f|`.

    Newton's method where `hess f` is invertible (quadratic convergence); on a manifold of critical
    points of constant rank, the minimum-norm step converges quadratically to the manifold
    (Levenberg-Marquardt, damped, stalls there at residuals ~1e-7). A point near a positive local
    minimum of `|grad f|` (no critical point) is not improved, and the residual test rejects it.
    """

    def step(carry, _):
        y, g, h = carry
        y_new = y - _min_norm_step(g, (h + h.T) / 2)
        _, g_new, h_new = vgh(y_new)  # kept for the next step if accepted
        better = jnp.all(jnp.isfinite(y_new)) & (jnp.linalg.norm(g_new) < jnp.linalg.norm(g))
        keep = lambda new, old: jnp.where(better, new, old)  # noqa: E731
        return (keep(y_new, y), keep(g_new, g), keep(h_new, h)), None

    _, g0, h0 = vgh(y)
    (y, _, _), _ = lax.scan(step, (y, g0, h0), length=steps)
    return y


def _fallback(
    d: _Derivatives, setup: _Setup, fallback: Fallback, starts, ys, failed, max_steps, batch_size
):
    """Stage 2: the least-squares fallback, from Newton's last in-region point (or the start),
    for at most `fallback.max_starts` of the (active) starts where Newton failed. Returns the
    updated iterates and which starts used the fallback."""
    k = starts.shape[0]
    m = min(k, fallback.max_starts)
    (idx,) = jnp.nonzero(failed, size=m, fill_value=0)
    active = jnp.arange(m) < jnp.sum(failed)
    y_newton = ys[idx]
    escaped = jax.vmap(_escaped, in_axes=(0, None, None))(
        y_newton, setup.guard_lower, setup.guard_upper
    )
    y0 = jnp.where(escaped[:, None], starts[idx], y_newton)
    residual = _residual_fn(d.gradient)

    def solve(y0, active):
        guarded = _guard(setup.fallback_solver, *_region(setup, active))
        sol = optx.least_squares(residual, guarded, y0, max_steps=max_steps, throw=False)
        return _polish(d.value_gradient_hessian, sol.value, fallback.polish_steps)

    # The failed starts come first: the batches past them are skipped.
    y_fb = _batched_active(lambda ya: solve(*ya), (y0, active), active, batch_size)
    target = jnp.where(active, idx, k)  # out of range: dropped
    ys = ys.at[target].set(y_fb, mode="drop")
    used = jnp.zeros(k, bool).at[target].set(True, mode="drop")
    return ys, used


class _Accepted(eqx.Module):
    ys: Array
    residual: Array
    accepted: Array
    residual_tol: Array
    distinct_tol: Array
    map_finite: Array


def _residuals(d: _Derivatives, starts, active, ys, batch_size):
    """`|grad f|` at the final iterates (a non-finite iterate replaced by its start, its residual
    then that of the start) and whether the iterate was finite; zero at inactive entries where a
    whole batch is inactive."""
    finite = jnp.all(jnp.isfinite(ys), axis=1)
    ys = jnp.where(finite[:, None], ys, starts)
    grads = _batched_active(d.gradient, ys, active, batch_size)
    return ys, jnp.linalg.norm(grads, axis=1), finite


def _accept(
    setup: _Setup,
    starts,
    active,
    start_finite,
    start_norms,
    ys,
    residual,
    finite,
    residual_tol,
    distinct_tol,
) -> _Accepted:
    """Stage 3: default tolerances and the acceptance test (an active start whose point is
    finite, in the box, `|grad f| <= residual_tol`), from `f` and `|grad f|` at the starts and the
    residuals at the final iterates. Also whether `f` and `grad f` are finite at every active
    start."""
    dtype = starts.dtype
    eps = _eps(dtype)
    map_finite = jnp.all(start_finite | ~active)
    grad_scale = jnp.max(jnp.where(active, start_norms, 0.0))
    if residual_tol is None:
        residual_tol = eps ** (2 / 3) * grad_scale
    if distinct_tol is None:
        size = jnp.max(jnp.where(active[:, None], jnp.abs(starts), 0.0))
        distinct_tol = eps ** (1 / 3) * jnp.maximum(1.0, size)
    residual_tol = jnp.asarray(residual_tol, dtype)
    distinct_tol = jnp.asarray(distinct_tol, dtype)
    accepted = active & finite & (residual <= residual_tol)
    if setup.lower is not None:
        accepted = accepted & jnp.all((ys >= setup.lower) & (ys <= setup.upper), axis=1)
    return _Accepted(ys, residual, accepted, residual_tol, distinct_tol, map_finite)


def _cluster(ys, accepted, residual, tol, max_points):
    """Stage 4: greedy clustering: the first unassigned accepted point seeds a cluster of every
    unassigned point within `tol` (max norm); the member with the smallest residual represents
    it."""
    k, n = ys.shape

    def cond(carry):
        assigned, _, _, count, _ = carry
        return jnp.any(~assigned) & (count < max_points)

    def body(carry):
        assigned, reps, hits, count, labels = carry
        seed = jnp.argmax(~assigned)
        near = (jnp.max(jnp.abs(ys - ys[seed]), axis=1) <= tol) & ~assigned
        best = jnp.argmin(jnp.where(near, residual, jnp.inf))
        reps = reps.at[count].set(best)
        hits = hits.at[count].set(jnp.sum(near))
        labels = jnp.where(near, count, labels)
        return assigned | near, reps, hits, count + 1, labels

    labels = jnp.full(k, max_points)
    init = (~accepted, jnp.zeros(max_points, int), jnp.zeros(max_points, int), jnp.array(0), labels)
    assigned, reps, hits, count, labels = lax.while_loop(cond, body, init)
    return reps, hits, count, labels, jnp.any(~assigned)


class _Collected(eqx.Module):
    points: Array
    values: Array
    hessians: Array
    certificate: Certificate
    hits: Array
    mask: Array
    start_ok: Array


def _collect(d: _Derivatives, acc: _Accepted, degeneracy_rtol, max_points):
    """Stage 5: cluster the accepted points, certify each cluster's representative, keep the
    converged ones, sort by value. Returns the slots and whether the slots overflowed."""
    reps, hits, count, labels, overflow = _cluster(
        acc.ys, acc.accepted, acc.residual, acc.distinct_tol, max_points
    )
    points = acc.ys[reps]
    values, grads, hessians = jax.vmap(d.value_gradient_hessian)(points)
    cert = jax.vmap(lambda g, h: _certify(g, h, degeneracy_rtol))(grads, hessians)
    # A converged point has a minimum-norm Newton correction below the clustering radius. A small
    # residual without that is a near miss: e.g. a drift into a saturated region, where the
    # gradient of a tanh network decays exponentially while the iterate keeps moving.
    mask = (jnp.arange(max_points) < count) & (cert.newton_step <= acc.distinct_tol)
    start_ok = jnp.append(mask, False)[labels]  # labels == max_points: in no cluster
    order = jnp.argsort(jnp.where(mask, values, jnp.inf))
    points, values, hits, mask = points[order], values[order], hits[order], mask[order]
    hessians = hessians[order]
    cert = jax.tree_util.tree_map(lambda leaf: leaf[order], cert)
    nan = jnp.array(jnp.nan, points.dtype)
    points = jnp.where(mask[:, None], points, nan)
    values = jnp.where(mask, values, nan)
    hits = jnp.where(mask, hits, 0)
    return _Collected(points, values, hessians, cert, hits, mask, start_ok), overflow


# Cosine above which the direction to the nearest other degenerate point counts as lying in the
# Hessian's null space (60 degrees: a chord of a smooth curve of critical points sampled at spacing
# `s` deviates from its tangent by about `s * curvature / 2`), and the number of such points that
# makes a continuum (two isolated degenerate points can lie along each other's null directions by
# chance, as `(x^2 - 1)^3 + y^2` at `(+-1, 0)`; a continuum sampled by many starts gives many).
_SPREAD_COSINE = 0.5
_MIN_SPREAD = 3


def _non_isolated(col: _Collected) -> Array:
    """Stage 6: whether the found points sample a continuum of critical points: at least
    `_MIN_SPREAD` degenerate points whose nearest other degenerate point lies along the null space
    of their Hessian (the directions with `|lambda| <= tolerance`, cosine `>= _SPREAD_COSINE`).
    An isolated degenerate point has no such neighbour (unless by chance)."""
    p = col.points.shape[0]
    degenerate = col.mask & col.certificate.degenerate
    h = (col.hessians + jnp.swapaxes(col.hessians, -1, -2)) / 2
    lam, vec = jnp.linalg.eigh(jnp.where(degenerate[:, None, None], h, 0.0))
    null = jnp.abs(lam) <= col.certificate.tolerance[:, None]
    pts = jnp.where(degenerate[:, None], col.points, 0.0)
    diff = pts[None, :, :] - pts[:, None, :]  # diff[i, j] = p_j - p_i
    dist = jnp.linalg.norm(diff, axis=-1)
    other = degenerate[None, :] & degenerate[:, None] & ~jnp.eye(p, dtype=bool)
    j = jnp.argmin(jnp.where(other, dist, jnp.inf), axis=1)
    chord = diff[jnp.arange(p), j]
    chord = chord / jnp.maximum(
        jnp.linalg.norm(chord, axis=-1, keepdims=True), jnp.finfo(chord.dtype).tiny
    )
    coeff = jnp.einsum("pnk,pn->pk", vec, chord)  # coordinates in the eigenbasis
    along_null = jnp.sqrt(jnp.sum(jnp.where(null, coeff**2, 0.0), axis=-1))
    spread = degenerate & jnp.any(other, axis=1) & (along_null >= _SPREAD_COSINE)
    return jnp.sum(spread) >= _MIN_SPREAD


# The winding number of `grad f` along the boundary: `_BOUNDARY_SAMPLES` samples per side, then
# `_REFINE_LEVELS` passes that split the `_REFINE_INTERVALS` intervals with the largest turns into
# `_REFINE_SPLIT` pieces each (a critical point at distance `delta` outside the boundary turns
# `grad f` by about `pi` over a length `~delta` of it; three passes resolve `delta` down to about
# `1e-4` of the box's side / 32^3 ~ `3e-9` of it); `_MAX_TURN` is the largest turn between
# consecutive samples for which the winding number counts as resolved.
_BOUNDARY_SAMPLES = 512
_REFINE_INTERVALS = 32
_REFINE_SPLIT = 32
_REFINE_LEVELS = 3
_MAX_TURN = np.pi / 4


def _boundary_point(s, lower, upper):
    """The point of the rectangle's boundary at perimeter parameter `s` in `[0, 4]`, one unit per
    side, counter-clockwise from `lower`."""
    side = jnp.clip(jnp.floor(s), 0, 3).astype(int)
    t = s - side
    (x0, y0), (x1, y1) = lower, upper
    xs = jnp.stack([x0 + t * (x1 - x0), x1, x1 - t * (x1 - x0), x0])
    ys = jnp.stack([y0, y0 + t * (y1 - y0), y1, y1 - t * (y1 - y0)])
    return jnp.stack([xs[side], ys[side]])


def _turn(g0, g1):
    """The signed angle from `g0` to `g1` in `(-pi, pi]`."""
    cross = g0[..., 0] * g1[..., 1] - g0[..., 1] * g1[..., 0]
    return jnp.arctan2(cross, jnp.sum(g0 * g1, axis=-1))


def _winding_number(grad_fn, lower, upper, batch_size):
    """The winding number of `grad f` along the boundary of the rectangle `[lower, upper]`
    (counter-clockwise): `(1 / 2 pi) sum_i turn(g_i, g_{i+1})` over boundary samples
    `g_i = grad f(x_i)`, `turn` the principal-value angle between them. The sum of these turns is
    exactly `2 pi` times an integer; it is the winding number when every true turn between
    samples is below `pi`, checked as `max turn <= pi / 4` after adaptive refinement. Returns the
    winding number, whether it is resolved, and the smallest `|grad f|` sampled on the
    boundary."""
    dtype = lower.dtype

    def grads(s):
        return _batched(lambda si: grad_fn(_boundary_point(si, lower, upper)), s, batch_size)

    s = jnp.arange(4 * _BOUNDARY_SAMPLES, dtype=dtype) / _BOUNDARY_SAMPLES
    g = grads(s)
    # Every level's pieces have a place of their own in arrays of the final length (zeros until
    # filled: a zero turn is never chosen before an earlier one, `top_k` taking the lower index
    # among equals), so that one loop body, one copy of `grad f`, serves every level.
    piece = _REFINE_INTERVALS * _REFINE_SPLIT
    pad = jnp.zeros(_REFINE_LEVELS * piece, dtype)
    a = jnp.concatenate([s, pad])
    b = jnp.concatenate([s[1:], jnp.asarray([4.0], dtype), pad])
    turn = jnp.concatenate([_turn(g, jnp.roll(g, -1, axis=0)), pad])
    g_min = jnp.min(jnp.linalg.norm(g, axis=1))
    frac = jnp.arange(_REFINE_SPLIT + 1, dtype=dtype) / _REFINE_SPLIT

    def refine(level, carry):
        turn, a, b, g_min = carry
        _, idx = lax.top_k(jnp.abs(turn), _REFINE_INTERVALS)
        ss = a[idx, None] + (b[idx] - a[idx])[:, None] * frac
        gg = grads(ss.reshape(-1)).reshape(_REFINE_INTERVALS, _REFINE_SPLIT + 1, 2)
        g_min = jnp.minimum(g_min, jnp.min(jnp.linalg.norm(gg, axis=-1)))
        # The refined intervals keep their place with zero turn; their pieces take the next ones.
        at = (4 * _BOUNDARY_SAMPLES + level * piece,)
        new_turns = _turn(gg[:, :-1], gg[:, 1:]).reshape(-1)
        turn = lax.dynamic_update_slice(turn.at[idx].set(0.0), new_turns, at)
        a = lax.dynamic_update_slice(a, ss[:, :-1].reshape(-1), at)
        b = lax.dynamic_update_slice(b, ss[:, 1:].reshape(-1), at)
        return turn, a, b, g_min

    turn, a, b, g_min = lax.fori_loop(0, _REFINE_LEVELS, refine, (turn, a, b, g_min))
    winding = jnp.sum(turn) / (2 * jnp.pi)
    resolved = jnp.all(jnp.isfinite(turn)) & (jnp.max(jnp.abs(turn)) <= _MAX_TURN)
    return winding, resolved, g_min


def _completeness(d: _Derivatives, setup: _Setup, acc: _Accepted, col: _Collected, batch_size):
    """Stage 7: the completeness check and the winding number (NaN where there is none).

    In 2-D with a box `D`: Poincare-Hopf: if `grad f` has no zero on the boundary of `D` and only
    non-degenerate zeros inside, `sum_{x* in D} (-1)^index(x*) = deg(grad f / |grad f|, boundary)`,
    the winding number. A mismatch proves a missed critical point (`RESULTS.incomplete`). The
    check is undecided (`RESULTS.check_undecided`) when a found point is degenerate (its index is
    not `(-1)^k`), or lies within `distinct_tol` of the boundary, or the boundary winding is not
    resolved (a critical point on or just outside the boundary turns `grad f` fast there).

    A missed pair of opposite indices is invisible to Poincare-Hopf, so in every dimension each
    point must also have been reached by at least two starts: a point reached once
    (Good-Turing: the fraction `f_1 / N` of starts whose basin was seen once estimates the chance
    that the next start finds a new point) gives `RESULTS.rare_basin`.
    """
    n = acc.ys.shape[1]
    rare = jnp.any(col.mask & (col.hits == 1))
    if n != 2 or setup.lower is None:
        check = RESULTS.where(rare, RESULTS.rare_basin, RESULTS.successful)
        return check, jnp.array(jnp.nan, acc.ys.dtype)
    winding, resolved, min_boundary_grad = _winding_number(
        d.gradient, setup.lower, setup.upper, batch_size
    )
    cert = col.certificate
    signs = jnp.where(cert.index % 2 == 0, 1, -1)
    index_sum = jnp.sum(jnp.where(col.mask, signs, 0))
    gap = jnp.minimum(col.points - setup.lower, setup.upper - col.points)
    near_boundary = jnp.any(col.mask & (jnp.min(gap, axis=1) <= acc.distinct_tol))
    undecided = (
        ~resolved
        | (min_boundary_grad <= acc.residual_tol)
        | jnp.any(col.mask & cert.degenerate)
        | near_boundary
    )
    mismatch = index_sum != jnp.round(winding).astype(index_sum.dtype)
    check = RESULTS.where(rare, RESULTS.rare_basin, RESULTS.successful)
    check = RESULTS.where(mismatch, RESULTS.incomplete, check)
    check = RESULTS.where(undecided, RESULTS.check_undecided, check)
    return check, winding


def _result(setup: _Setup, acc: _Accepted, overflow, screen_overflow, non_isolated) -> RESULTS:
    """Stage 8: the result code, by priority: a non-finite map, an empty box, a continuum of
    critical points, more points than slots, more screened starts than slots."""
    result = RESULTS.where(screen_overflow, RESULTS.screen_overflow, RESULTS.successful)
    result = RESULTS.where(overflow, RESULTS.max_points_exceeded, result)
    result = RESULTS.where(non_isolated, RESULTS.non_isolated, result)
    if setup.lower is not None:
        empty = ~jnp.all(setup.lower < setup.upper)
        result = RESULTS.where(empty, RESULTS.empty_box, result)
    return RESULTS.where(~acc.map_finite, RESULTS.nonfinite_map, result)


def _check_starts(starts) -> bool:
    """Concrete starts that are not all finite are a `ValueError` at once; returns whether the
    compiled search must still check them (traced starts: `eqx.error_if` in the program). A
    program without that check has no host callback, so JAX's persistent compilation cache can
    store it."""
    if not is_concrete(starts):
        return True
    if not np.all(np.isfinite(np.asarray(starts))):
        raise ValueError(RESULTS[RESULTS.nonfinite_start])
    return False


def _check_box(lower, upper) -> None:
    """A concrete empty box is a `ValueError` at once (a traced one gets `RESULTS.empty_box`)."""
    if lower is None or upper is None or not is_concrete(lower, upper):
        return
    lo, hi = np.asarray(lower), np.asarray(upper)
    if not np.all(lo < hi):
        raise ValueError(
            f"the box is empty: need `lower < upper` (finite) in every coordinate, got "
            f"lower={lo}, upper={hi}"
        )


# Runs on meshes with explicit axes too (see `jaxstat._sharding`).
@auto_axes_inside
def find_critical_points(
    fn,
    starts: Float[Array, "k n"],
    *,
    lower: Float[ArrayLike, " n"] | None = None,
    upper: Float[ArrayLike, " n"] | None = None,
    solver: optx.AbstractRootFinder | None = None,
    fallback: Fallback | None = Fallback(),
    screen: AbstractStartScreen | None = None,
    max_steps: int = 100,
    batch_size: int | None = 256,
    max_points: int = 64,
    residual_tol: float | None = None,
    distinct_tol: float | None = None,
    degeneracy_rtol: float | None = None,
    throw: bool = True,
) -> CriticalPoints:
    """The critical points `grad f(x) = 0` reached from a batch of starts, deduplicated, certified,
    with a completeness check.

    A start `screen` first chooses the starts Newton runs from (by default the map's
    `start_screen`: every start for networks and plain functions; for a `NeuralODE`, whose Newton
    steps are dear, `NeighbourMinima`: only the starts where `|grad f|` is smallest among their
    neighbours, every other start taking the result of the one its chain of smaller neighbours
    ends at). Each such start runs Newton's method on `grad f = 0` (vmapped
    `optimistix.root_find`); where it fails, the `fallback` (a least-squares solve of
    `min |grad f|^2` from the start or from Newton's last point) takes over: it is well defined
    where `hess f` is singular, so degenerate critical points are found too. Accepted points
    (finite, in the box, `|grad f| <= residual_tol`) are clustered within `distinct_tol`, each
    distinct point gets a `Certificate` from the eigenvalues of `hess f`, and `hits` counts the
    starts that reached it.

    Completeness (`CriticalPoints.check`, never raised): in 2-D with a box, Poincare-Hopf:
    `sum (-1)^index` over the points found must equal the winding number of `grad f` along the
    box boundary; and in every dimension every point must have been reached by at least two
    starts (`hits >= 2`). A failed check means more starts are needed:
    `find_all_critical_points` adds them until it holds.

    Tolerances (`eps` the machine epsilon of the dtype):

    - Newton and Levenberg-Marquardt stop at `rtol = atol = eps^(2/3)` (about `4e-11` in float64);
      Newton then converges quadratically, so a non-degenerate point is located to rounding error.
    - `residual_tol` (default `eps^(2/3) * G`, `G = max |grad f|` over the starts: the gradient
      field's own scale): a point with a larger residual is not accepted as critical. Newton
      reaches rounding level at non-degenerate points; fallback results are polished by a few
      Gauss-Newton steps with the pseudo-inverse of `hess f`, which reach rounding level on
      manifolds of degenerate critical points too. A positive local minimum of `|grad f|` (a
      near miss, no critical point) cannot be polished and is rejected.
    - `distinct_tol` (default `eps^(1/3) * max(1, max |start|)`, max norm): points closer than this
      are one point. Newton-located points agree to `~eps`, far below it.
    - `degeneracy_rtol` (default `eps^(1/3)`, about `6e-6` in float64): a point is degenerate when
      `min |lambda| <= degeneracy_rtol * max |lambda|`. Rounding perturbs the Hessian eigenvalues of
      a well-located point by `~eps * max |lambda|` and the location error `d` by
      `~|D^3 f| d`, both far below this; the eigenvalue gaps of generic networks are far above it.

    **Arguments:**

    - `fn`: a scalar map: `ScalarMLP`, `NeuralODE`, `eqx.nn.MLP` (scalar output) or any JAX
        function `R^n -> R`.
    - `starts`: `(k, n)` start points, e.g. `uniform_starts(key, lower, upper, k)`.
    - `lower`, `upper`: the box, `lower < upper`; points found outside it are discarded (for
        bounded activations `|grad f| -> 0` at infinity, so unbounded searches drift to "critical
        points at infinity").
    - `solver`: an `optimistix` root finder (default `optx.Newton`).
    - `fallback`: a `Fallback` strategy (least-squares solver, its batch size, polishing), or
        `None` for Newton alone.
    - `screen`: an `AbstractStartScreen`: `AllStarts()` (Newton from every start) or
        `NeighbourMinima(...)` (its rule, and what it can miss, in its docstring); `None`: the
        map's `start_screen` (`NeighbourMinima()` for a `NeuralODE`, else `AllStarts()`).
    - `max_steps`: iteration cap of each solve.
    - `batch_size`: Newton runs `batch_size` solves at a time in vmapped lanes (at most the
        screen's `max_lanes` with a `NeighbourMinima` screen), a lane taking
        the next start as soon as its solve ends (so the loop costs about the total number of
        Newton steps over `batch_size` iterations, not the slowest solve of every batch); the
        other stages evaluate in vmapped batches of this size, one after another
        (`jax.lax.map`). `None`: all starts at once.
    - `max_points`: the number of result slots (static).
    - `residual_tol`, `distinct_tol`, `degeneracy_rtol`: as above.
    - `throw`: raise (`eqx.error_if`) when `result` is not successful; else read `result`.

    **Returns:** a `CriticalPoints`. Its `result` is `RESULTS.nonfinite_map` (`f` or `grad f` not
    finite at a start: NaN weights), `RESULTS.empty_box` (`lower < upper` fails somewhere; a
    concrete empty box raises `ValueError` at once), `RESULTS.non_isolated` (the points found are
    degenerate and spread along their Hessians' null directions: a continuum of critical points,
    as for a bottleneck network; the slots hold samples of it), `RESULTS.max_points_exceeded` or
    `RESULTS.screen_overflow` (the screen kept more starts than its `max_kept` slots).

    A start that is not finite is an error whatever `throw`: a `ValueError` at once for concrete
    starts (the compiled search then holds no host callback, so JAX's persistent compilation
    cache stores it), an error raised by the program (`eqx.error_if`) for traced ones.

    ```python
    import jax.numpy as jnp
    import jax.random as jr
    from jaxstat.morse import find_critical_points, random_mlp, uniform_starts

    net = random_mlp(jr.key(0), [2, 16, 16, 1])
    lo, hi = -4 * jnp.ones(2), 4 * jnp.ones(2)
    cps = find_critical_points(net, uniform_starts(jr.key(1), lo, hi, 10_000), lower=lo, upper=hi)
    cps.count, cps.index, cps.check, cps.winding_number
    ```
    """
    starts = jnp.asarray(starts)
    _check_box(lower, upper)
    check_starts = _check_starts(starts)
    return _search(
        fn,
        starts,
        jnp.ones(starts.shape[:1], bool),
        check_starts=check_starts,
        lower=lower,
        upper=upper,
        solver=solver,
        fallback=fallback,
        screen=screen,
        max_steps=max_steps,
        batch_size=batch_size,
        max_points=max_points,
        residual_tol=residual_tol,
        distinct_tol=distinct_tol,
        degeneracy_rtol=degeneracy_rtol,
        throw=throw,
    )


@eqx.filter_jit
def _search(
    fn,
    starts,
    active,
    *,
    lower=None,
    upper=None,
    solver=None,
    fallback: Fallback | None = Fallback(),
    screen: AbstractStartScreen | None = None,
    max_steps: int = 100,
    batch_size: int | None = 256,
    max_points: int = 64,
    residual_tol=None,
    distinct_tol=None,
    degeneracy_rtol=None,
    throw: bool = True,
    check_starts: bool = True,
) -> CriticalPoints:
    """`find_critical_points` from the starts with `active[i]` true; the others stop before their
    first step. One compilation serves every number of active starts. `check_starts` (static):
    check in the program that the starts are finite (`eqx.error_if`, a host callback); `False`
    where the caller has checked concrete starts (`_check_starts`)."""
    d = _derivatives(fn)
    starts = jnp.asarray(starts)
    setup = _validate(fn, starts, lower, upper, solver, fallback, max_points, degeneracy_rtol)
    if check_starts:
        starts = eqx.error_if(
            starts, ~jnp.all(jnp.isfinite(starts)), RESULTS[RESULTS.nonfinite_start]
        )

    if screen is None:
        smap = as_scalar_map(fn)
        screen = AllStarts() if smap is None else smap.start_screen
    if not isinstance(screen, AbstractStartScreen):
        raise TypeError(
            f"`screen` must be an AbstractStartScreen (`AllStarts()`, `NeighbourMinima()`) or "
            f"None, got {type(screen).__name__}"
        )
    k = starts.shape[0]
    # `f` and `grad f` at every start: the screen, the finiteness test and the gradient scale.
    values0, grads0 = _batched(d.value_and_gradient, starts, batch_size)
    norms0 = jnp.linalg.norm(grads0, axis=1)
    start_finite = jnp.isfinite(values0) & jnp.all(jnp.isfinite(grads0), axis=1)
    root = roots(
        screen.parents(
            lax.stop_gradient(starts),
            lax.stop_gradient(norms0),
            active,
            setup.lower,
            setup.upper,
            batch_size,
        )
    )
    kept = active & (root == jnp.arange(k))
    # The searched starts, in order, in `m` static slots (`k`: an empty slot).
    m = screen.slots(k)
    (slot_start,) = jnp.nonzero(kept, size=m, fill_value=k)
    num_kept = jnp.sum(kept)
    screen_overflow = num_kept > m
    slot_active = slot_start < k
    slot_starts = starts[jnp.minimum(slot_start, k - 1)]
    lanes = screen.lanes(batch_size)
    ys, ok = _newton(d, setup, slot_starts, slot_active, max_steps, lanes)
    used_fallback = jnp.zeros(m, bool)
    if fallback is not None:
        failed = slot_active & ~ok
        ys, used_fallback = _fallback(d, setup, fallback, slot_starts, ys, failed, max_steps, lanes)
    ys, residual, finite = _residuals(d, slot_starts, slot_active, ys, lanes)
    # Every start takes the result of its representative (itself without a screen); a start
    # whose representative found no slot (`screen_overflow`) keeps its start, unsuccessful.
    slot_of = jnp.full(k, m).at[slot_start].set(jnp.arange(m), mode="drop")[root]
    searched = slot_of < m
    slot_of = jnp.minimum(slot_of, m - 1)
    ys = jnp.where(searched[:, None], ys[slot_of], starts)
    residual = jnp.where(searched, residual[slot_of], jnp.inf)
    finite = jnp.where(searched, finite[slot_of], True)
    used_fallback = searched & used_fallback[slot_of]
    acc = _accept(
        setup,
        starts,
        active,
        start_finite,
        norms0,
        ys,
        residual,
        finite,
        residual_tol,
        distinct_tol,
    )
    col, overflow = _collect(d, acc, setup.degeneracy_rtol, max_points)
    # Diagnostics, not differentiated (the eigenvectors of repeated eigenvalues have no derivative).
    non_isolated = _non_isolated(lax.stop_gradient(col))
    check, winding = _completeness(
        d, setup, lax.stop_gradient(acc), lax.stop_gradient(col), batch_size
    )
    result = _result(setup, acc, overflow, screen_overflow, non_isolated)

    out = CriticalPoints(
        points=col.points,
        values=col.values,
        certificate=col.certificate,
        hits=col.hits,
        mask=col.mask,
        count=jnp.sum(col.mask),
        num_starts=jnp.sum(active),
        num_searched=jnp.minimum(num_kept, m),
        num_converged=jnp.sum(col.start_ok),
        num_fallback=jnp.sum(col.start_ok & used_fallback),
        residual_tol=acc.residual_tol,
        distinct_tol=acc.distinct_tol,
        degeneracy_rtol=setup.degeneracy_rtol,
        winding_number=winding,
        check=check,
        result=result,
    )
    if throw:
        out = result.error_if(out, result != RESULTS.successful)
    return out


def find_all_critical_points(
    fn,
    key: PRNGKeyArray,
    lower: Float[ArrayLike, " n"],
    upper: Float[ArrayLike, " n"],
    *,
    refinement: DoublingStarts = DoublingStarts(),
    throw: bool = True,
    **options,
) -> CriticalPoints:
    """`find_critical_points` from uniform starts in the box, with more starts until the
    completeness check holds or the budget is spent.

    Round `r` searches from the first `k_r` of `refinement.max_starts` uniform starts
    (`uniform_starts(key, lower, upper, max_starts)`; `k_r = refinement.rounds()[r]`), each round a
    batched search, until the completeness check (`CriticalPoints.check`: in 2-D the index sum
    equals the winding number of `grad f` on the boundary; every point reached by two starts at
    least) holds in two consecutive rounds with the same number of points (the last doubling found
    nothing new), the check is undecidable or the result an error, or the budget `max_starts` is
    spent. The returned search
    records `num_starts`; read `check` to see whether the last round passed.

    Host-side: the loop over rounds runs in Python (call it outside `jit`/`vmap`). All rounds share
    one compilation: each solves from all `max_starts` starts with those beyond `k_r` inactive
    (they stop before their first step).

    **Arguments:**

    - `fn`: the scalar map.
    - `key`: the key of the starts.
    - `lower`, `upper`: the box.
    - `refinement`: a `DoublingStarts` (number of starts of the first round, budget).
    - `throw`: raise when `result` is not successful (never for `check`).
    - `options`: passed to `find_critical_points` (`fallback`, `max_points`, tolerances, ...).

    **Returns:** the `CriticalPoints` of the last round.

    ```python
    import jax.numpy as jnp
    import jax.random as jr
    from jaxstat.morse import DoublingStarts, RESULTS, find_all_critical_points, random_mlp

    net = random_mlp(jr.key(1), [2, 8, 1])
    cps = find_all_critical_points(net, jr.key(0), -3 * jnp.ones(2), 3 * jnp.ones(2),
                                   refinement=DoublingStarts(1024, 8192), fallback=None)
    assert cps.check == RESULTS.successful
    ```
    """
    if not isinstance(refinement, DoublingStarts):
        raise TypeError(f"`refinement` must be a DoublingStarts, got {type(refinement).__name__}")
    for name in ("lower", "upper", "starts"):
        if name in options:
            raise TypeError(f"`{name}` is set by `find_all_critical_points`; do not pass it")
    if not is_concrete(key, lower, upper):
        raise TypeError(
            "`find_all_critical_points` decides the number of rounds on the host; call it outside "
            "`jit`/`vmap` (or use `find_critical_points` there)"
        )
    starts = uniform_starts(key, lower, upper, refinement.max_starts)
    check_starts = _check_starts(starts)
    lower, upper = jnp.asarray(lower, starts.dtype), jnp.asarray(upper, starts.dtype)
    cps, previous = None, None
    for k in refinement.rounds():
        # All rounds share one compilation: the first `k` starts are active, the rest stop at once.
        active = np.arange(refinement.max_starts) < k
        cps = _search(
            fn,
            starts,
            active,
            lower=lower,
            upper=upper,
            throw=False,
            check_starts=check_starts,
            **options,
        )
        if cps.result != RESULTS.successful or cps.check == RESULTS.check_undecided:
            break  # more starts cannot cure an error or an undecidable check
        if cps.check == RESULTS.successful:
            if previous is not None and int(previous) == int(cps.count):
                break  # the check holds and the last doubling found no new point
            previous = cps.count
        else:
            previous = None
    assert cps is not None
    if throw:
        cps = cps.result.error_if(cps, cps.result != RESULTS.successful)
    return cps
