"""Batched critical-point search for scalar maps `f: R^n -> R` (SPEC section H).

From every start `x_0` in a batch: Newton's method on `grad f(x) = 0` (`optimistix.root_find`,
the Jacobian of `grad f` being `hess f`); where Newton fails (a singular or ill-conditioned
Hessian, divergence) a Levenberg-Marquardt least-squares solve of `min |grad f(x)|^2`
(`optimistix.least_squares`), which stays well defined when `hess f` is singular, polished by a
few Gauss-Newton steps with the pseudo-inverse of `hess f` (`lineax.SVD`). A point is accepted
when it is finite, lies in the box and `|grad f(x)|_2 <= residual_tol`. Accepted points are
deduplicated (greedy clustering within `distinct_tol`) and each distinct point is certified by the
spectrum of `hess f`: Morse index, degeneracy test, residual, smallest `|eigenvalue|`.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.lax as lax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import optimistix as optx
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ._network import as_scalar_map
from ._solution import Certificate, CriticalPoints, RESULTS


def _derivatives(fn) -> tuple[Callable, Callable]:
    """`grad f` and `x -> (f, grad f, hess f)` of a scalar map or a plain function."""
    smap = as_scalar_map(fn)
    if smap is not None:
        return smap.gradient, smap.value_gradient_hessian
    if not callable(fn):
        raise TypeError(f"expected a callable scalar map, got {type(fn).__name__}")

    def vgh(x):
        return fn(x), jax.grad(fn)(x), jax.hessian(fn)(x)

    return jax.grad(fn), vgh


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
    cert = certify_critical_point(lambda x: x[0] ** 2 - x[1] ** 2, jnp.zeros(2))
    cert.index, cert.degenerate   # 1, False
    ```
    """
    _, vgh = _derivatives(fn)
    if degeneracy_rtol is None:
        degeneracy_rtol = _eps(x.dtype) ** (1 / 3)
    _, g, h = vgh(x)
    return _certify(g, h, degeneracy_rtol)


def uniform_starts(
    key: PRNGKeyArray, lower: Float[ArrayLike, " n"], upper: Float[ArrayLike, " n"], num: int
) -> Float[Array, "num n"]:
    """`num` start points drawn uniformly from the box `lower <= x <= upper`.

    ```python
    starts = uniform_starts(jr.key(0), -3 * jnp.ones(2), 3 * jnp.ones(2), 10_000)
    ```
    """
    lower, upper = jnp.asarray(lower), jnp.asarray(upper)
    if lower.ndim != 1 or lower.shape != upper.shape:
        raise ValueError(
            f"`lower` and `upper` must be vectors of one shape, got {lower.shape}, {upper.shape}"
        )
    if not bool(jnp.all(upper > lower)):
        raise ValueError("need `upper > lower` in every coordinate")
    dtype = jnp.result_type(lower, upper, jnp.zeros(()).dtype)
    u = jr.uniform(key, (num, lower.shape[0]), dtype)
    return lower + u * (upper - lower)


def _escaped(y, lower, upper):
    return ~jnp.all(jnp.isfinite(y)) | jnp.any(y < lower) | jnp.any(y > upper)


# Wrappers that end a solve as soon as the iterate leaves a region (or stops being finite), so that
# starts which drift away (to critical points outside the box, or to infinity where the gradient of
# a saturating network decays) stop early instead of holding the whole vmapped batch for
# `max_steps` iterations. Everything else is delegated to the wrapped optimistix solver.
class _GuardedRootFinder(optx.AbstractRootFinder):
    solver: optx.AbstractRootFinder
    lower: Array
    upper: Array

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
        return self.solver.init(fn, y, args, options, f_struct, aux_struct, tags)

    def step(self, fn, y, args, options, state, tags):
        return self.solver.step(fn, y, args, options, state, tags)

    def terminate(self, fn, y, args, options, state, tags):
        done, result = self.solver.terminate(fn, y, args, options, state, tags)
        out = _escaped(y, self.lower, self.upper)
        return done | out, optx.RESULTS.where(out, optx.RESULTS.nonlinear_divergence, result)

    def postprocess(self, fn, y, aux, args, options, state, tags, result):
        return self.solver.postprocess(fn, y, aux, args, options, state, tags, result)


class _GuardedLeastSquares(optx.AbstractLeastSquaresSolver):
    solver: optx.AbstractLeastSquaresSolver
    lower: Array
    upper: Array

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
        return self.solver.init(fn, y, args, options, f_struct, aux_struct, tags)

    def step(self, fn, y, args, options, state, tags):
        return self.solver.step(fn, y, args, options, state, tags)

    def terminate(self, fn, y, args, options, state, tags):
        done, result = self.solver.terminate(fn, y, args, options, state, tags)
        out = _escaped(y, self.lower, self.upper)
        return done | out, optx.RESULTS.where(out, optx.RESULTS.nonlinear_divergence, result)

    def postprocess(self, fn, y, aux, args, options, state, tags, result):
        return self.solver.postprocess(fn, y, aux, args, options, state, tags, result)


_POLISH_STEPS = 4


def _polish(vgh, y):
    """A few Gauss-Newton steps `y <- y - H^+ grad f(y)` (`H^+` the pseudo-inverse of `hess f`,
    dropping singular values below `eps * n * s_max`), each kept only if it lowers `|grad f|`.

    Newton's method where `hess f` is invertible (quadratic convergence); on a manifold of critical
    points of constant rank, the minimum-norm step converges quadratically to the manifold
    (Levenberg-Marquardt, damped, stalls there at residuals ~1e-7). A point near a positive local
    minimum of `|grad f|` (no critical point) is not improved, and the residual test rejects it.
    """

    def step(carry, _):
        y, g = carry
        _, g_now, h = vgh(y)
        y_new = y - _min_norm_step(g_now, (h + h.T) / 2)
        g_new = vgh(y_new)[1]
        better = jnp.all(jnp.isfinite(y_new)) & (jnp.linalg.norm(g_new) < jnp.linalg.norm(g))
        return (jnp.where(better, y_new, y), jnp.where(better, g_new, g)), None

    g0 = vgh(y)[1]
    (y, _), _ = lax.scan(step, (y, g0), length=_POLISH_STEPS)
    return y


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


def _cluster(ys, accepted, residual, tol, max_points):
    """Greedy clustering: the first unassigned accepted point seeds a cluster of every unassigned
    point within `tol` (max norm); the member with the smallest residual represents it."""
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


@eqx.filter_jit
def find_critical_points(
    fn,
    starts: Float[Array, "k n"],
    *,
    lower: Float[ArrayLike, " n"] | None = None,
    upper: Float[ArrayLike, " n"] | None = None,
    solver: optx.AbstractRootFinder | None = None,
    fallback: optx.AbstractLeastSquaresSolver | None | bool = None,
    max_steps: int = 100,
    max_fallback: int = 256,
    batch_size: int | None = 256,
    max_points: int = 64,
    residual_tol: float | None = None,
    distinct_tol: float | None = None,
    degeneracy_rtol: float | None = None,
    throw: bool = True,
) -> CriticalPoints:
    """The critical points `grad f(x) = 0` reached from a batch of starts, deduplicated, certified.

    Each start runs Newton's method on `grad f = 0` (vmapped `optimistix.root_find`); where it
    fails, a Levenberg-Marquardt least-squares solve of `min |grad f|^2` from the start (or from
    Newton's last point) takes over: it is well defined where `hess f` is singular, so degenerate
    critical points are found too. Accepted points (finite, in the box, `|grad f| <= residual_tol`)
    are clustered within `distinct_tol` and each distinct point gets a `Certificate` from the
    eigenvalues of `hess f`.

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
    - `lower`, `upper`: the box; points found outside it are discarded (for bounded activations
        `|grad f| -> 0` at infinity, so unbounded searches drift to "critical points at infinity").
    - `solver`: an `optimistix` root finder (default `optx.Newton`).
    - `fallback`: an `optimistix` least-squares solver (default `optx.LevenbergMarquardt`);
        `False` disables the fallback.
    - `max_steps`: iteration cap of each solve.
    - `max_fallback`: the fallback runs from at most this many of the starts where Newton failed
        (static; bounds its cost).
    - `batch_size`: starts are solved in vmapped batches of this size, one batch after another
        (`jax.lax.map`); a vmapped iterative solve costs as many iterations as its slowest member
        needs, so moderate batches waste less. `None` solves all starts in one batch.
    - `max_points`: the number of result slots (static).
    - `residual_tol`, `distinct_tol`, `degeneracy_rtol`: as above.
    - `throw`: raise (`eqx.error_if`) when the result is not successful; else read `result`.

    **Returns:** a `CriticalPoints`.

    ```python
    net = random_mlp(jr.key(0), [2, 16, 16, 1])
    lo, hi = -4 * jnp.ones(2), 4 * jnp.ones(2)
    cps = find_critical_points(net, uniform_starts(jr.key(1), lo, hi, 10_000), lower=lo, upper=hi)
    cps.count, cps.index, cps.certificate.min_abs_eigenvalue
    ```
    """
    grad_fn, vgh = _derivatives(fn)
    starts = jnp.asarray(starts)
    if starts.ndim != 2:
        raise ValueError(f"`starts` must have shape (k, n), got {starts.shape}")
    if not jnp.issubdtype(starts.dtype, jnp.floating):
        raise TypeError(f"`starts` must be real floating, got dtype {starts.dtype}")
    k, n = starts.shape
    smap = as_scalar_map(fn)
    if smap is not None and smap.in_size != n:
        raise ValueError(f"the map has {smap.in_size} inputs but the starts have {n} coordinates")
    if max_points < 1:
        raise ValueError(f"`max_points` must be positive, got {max_points}")
    dtype = starts.dtype
    eps = _eps(dtype)
    tol = eps ** (2 / 3)
    if solver is None:
        solver = optx.Newton(rtol=tol, atol=tol)
    if fallback is None or fallback is True:
        fallback = optx.LevenbergMarquardt(rtol=tol, atol=tol)
    if degeneracy_rtol is None:
        degeneracy_rtol = eps ** (1 / 3)
    if (lower is None) != (upper is None):
        raise ValueError("give both `lower` and `upper`, or neither")
    if lower is not None:
        lower = jnp.broadcast_to(jnp.asarray(lower, dtype), (n,))
        upper = jnp.broadcast_to(jnp.asarray(upper, dtype), (n,))
        # Iterates may leave the box on their way to a point inside it: allow half a box width.
        margin = (upper - lower) / 2
        guard_lower, guard_upper = lower - margin, upper + margin
    else:
        guard_lower = jnp.full((n,), -jnp.inf, dtype)
        guard_upper = jnp.full((n,), jnp.inf, dtype)
    solver = _GuardedRootFinder(solver, guard_lower, guard_upper)

    starts = eqx.error_if(starts, ~jnp.all(jnp.isfinite(starts)), RESULTS[RESULTS.nonfinite_start])

    def residual_fn(y, args):
        del args
        return grad_fn(y)

    def newton(y0):
        sol = optx.root_find(residual_fn, solver, y0, max_steps=max_steps, throw=False)
        return sol.value, sol.result == optx.RESULTS.successful

    def least_squares(y0, active):
        # An inactive slot gets an empty guard region, so that it stops before its first step.
        lo = jnp.where(active, guard_lower, jnp.inf)
        hi = jnp.where(active, guard_upper, -jnp.inf)
        guarded = _GuardedLeastSquares(fallback, lo, hi)
        sol = optx.least_squares(residual_fn, guarded, y0, max_steps=max_steps, throw=False)
        return sol.value

    ys, ok = _batched(newton, starts, batch_size)
    used_fallback = jnp.zeros(k, bool)
    if fallback is not False:
        # The fallback runs, from Newton's last in-region point (or the start), for at most
        # `max_fallback` of the starts where Newton failed: a fixed-size batch, so that its cost is
        # bounded whatever the number of failures.
        m = min(k, max_fallback)
        (idx,) = jnp.nonzero(~ok, size=m, fill_value=0)
        active = jnp.arange(m) < jnp.sum(~ok)
        y_newton = ys[idx]
        escaped = jax.vmap(_escaped, in_axes=(0, None, None))(y_newton, guard_lower, guard_upper)
        y_fb0 = jnp.where(escaped[:, None], starts[idx], y_newton)
        y_fb = _batched(lambda ya: least_squares(*ya), (y_fb0, active), batch_size)
        y_fb = _batched(lambda y: _polish(vgh, y), y_fb, batch_size)
        target = jnp.where(active, idx, k)  # out of range: dropped
        ys = ys.at[target].set(y_fb, mode="drop")
        used_fallback = used_fallback.at[target].set(True, mode="drop")
    finite = jnp.all(jnp.isfinite(ys), axis=1)
    ys = jnp.where(finite[:, None], ys, starts)
    # One batched gradient evaluation gives the residuals and the scale of the gradient field.
    norms = _batched(lambda y: jnp.linalg.norm(grad_fn(y)), jnp.concatenate([starts, ys]), None)
    grad_scale, residual = jnp.max(norms[:k]), norms[k:]
    if residual_tol is None:
        residual_tol = eps ** (2 / 3) * grad_scale
    if distinct_tol is None:
        distinct_tol = eps ** (1 / 3) * jnp.maximum(1.0, jnp.max(jnp.abs(starts)))
    residual_tol = jnp.asarray(residual_tol, dtype)
    distinct_tol = jnp.asarray(distinct_tol, dtype)
    accepted = finite & (residual <= residual_tol)
    if lower is not None:
        accepted = accepted & jnp.all((ys >= lower) & (ys <= upper), axis=1)

    reps, hits, count, labels, overflow = _cluster(ys, accepted, residual, distinct_tol, max_points)
    points = ys[reps]
    values, grads, hessians = jax.vmap(vgh)(points)
    cert = jax.vmap(lambda g, h: _certify(g, h, degeneracy_rtol))(grads, hessians)
    # A converged point has a minimum-norm Newton correction below the clustering radius. A small
    # residual without that is a near miss: e.g. a drift into a saturated region, where the
    # gradient of a tanh network decays exponentially while the iterate keeps moving.
    mask = (jnp.arange(max_points) < count) & (cert.newton_step <= distinct_tol)
    start_ok = jnp.append(mask, False)[labels]  # labels == max_points: in no cluster
    count = jnp.sum(mask)
    order = jnp.argsort(jnp.where(mask, values, jnp.inf))
    points, values, hits, mask = points[order], values[order], hits[order], mask[order]
    cert = jax.tree_util.tree_map(lambda leaf: leaf[order], cert)
    nan = jnp.array(jnp.nan, dtype)
    points = jnp.where(mask[:, None], points, nan)
    values = jnp.where(mask, values, nan)
    hits = jnp.where(mask, hits, 0)

    result = RESULTS.where(overflow, RESULTS.max_points_exceeded, RESULTS.successful)
    out = CriticalPoints(
        points=points,
        values=values,
        certificate=cert,
        hits=hits,
        mask=mask,
        count=count,
        num_starts=k,
        num_converged=jnp.sum(start_ok),
        num_fallback=jnp.sum(start_ok & used_fallback),
        residual_tol=residual_tol,
        distinct_tol=distinct_tol,
        degeneracy_rtol=jnp.asarray(degeneracy_rtol, dtype),
        result=result,
    )
    if throw:
        out = result.error_if(out, result != RESULTS.successful)
    return out
