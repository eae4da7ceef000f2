"""Stability certificates: the spectral abscissa of the linearised dynamics at a stationary state.

At a stationary state `psi*` of `d psi/dt = f(psi)`, with `A = Df(psi*)` as a real-linear map
(complex states as pairs of reals), the state is linearly stable when every eigenvalue of `A` has
negative real part. The certificate is `alpha(A) = max Re lambda(A)`:

- `DenseSpectrum`: all eigenvalues of the dense `A` (small problems; `O(N^2)` memory).
- `CayleyArnoldi`: matrix-free. Arnoldi on the Cayley transform
  `C = (I - h/2 A)^{-1} (I + h/2 A)`, which maps `Re lambda < 0` to `|mu| < 1` and `Re lambda > 0`
  to `|mu| > 1`, so its dominant eigenvalues are the rightmost of `A`; each Krylov step is one
  matrix-free `lineax` solve. Ritz values are mapped back by `lambda = (2/h) (mu - 1) / (mu + 1)`.
- `AutoStability` (the default of `solve`): the structure of `A` read off three products
  (a rotated gradient flow `-(1 + t J) S / (1 + t^2)`, a damped Hamiltonian `-gamma I - J M`,
  or neither), then Lanczos on the symmetric `S`, `M` or `(A + A^T) / 2` in a few dozen
  products; one of the two above only where that cannot decide.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.flatten_util as jfu
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jaxtyping import PyTree

from .._lanczos import lanczos_extremes
from .._numerics import full_precision_dot as _dot
from ._solution import Stability


def _eigvals(m):
    """Eigenvalues of a small dense real matrix `m`: LAPACK (`geev`) inside the compiled program
    on CPU, numpy on the host elsewhere (works on every backend). All NaN when `m` has a
    non-finite entry (reported by the caller's result code, not raised here).

    On CPU the program keeps no host callback, so JAX's persistent compilation cache can store
    it (it skips programs that call back to Python)."""
    dtype = jnp.result_type(m.dtype, jnp.complex64)

    def host(a):
        def eigvals(a):
            a = np.asarray(a)
            if not np.all(np.isfinite(a)):
                return np.full(a.shape[:1], np.nan, dtype)
            return np.linalg.eigvals(a).astype(dtype)

        out = jax.ShapeDtypeStruct(a.shape[:1], dtype)
        return jax.pure_callback(eigvals, out, a, vmap_method="sequential")

    def lapack(a):
        finite = jnp.all(jnp.isfinite(a))
        lam = jnp.linalg.eigvals(jnp.where(finite, a, 0)).astype(dtype)
        return jnp.where(finite, lam, jnp.nan)

    return jax.lax.platform_dependent(m, cpu=lapack, default=host)


def real_system(vector_field: Callable[[PyTree], PyTree], y: PyTree):
    """The dynamics on flat real vectors: complex leaves as their `(Re, Im)` halves.

    Returns `(x, f, J)`: the state `x`, the map `f` on flat real vectors, and `J` (multiplication
    by `i` as a real map, `(a, b) -> (-b, a)`; `None` for real states). The Jacobian `A = Df(x)`
    is the real-linear map whose spectrum decides stability."""
    flat, unravel = jfu.ravel_pytree(y)
    real_dtype = jnp.finfo(flat.dtype).dtype
    if not jnp.iscomplexobj(flat):

        def f(v):
            return jfu.ravel_pytree(vector_field(unravel(v)))[0].astype(real_dtype)

        return flat, f, None
    n = flat.size

    def f(v):
        out = jfu.ravel_pytree(vector_field(unravel((v[:n] + 1j * v[n:]).astype(flat.dtype))))[0]
        return jnp.concatenate([jnp.real(out), jnp.imag(out)]).astype(real_dtype)

    def J(v):
        return jnp.concatenate([-v[n:], v[:n]])

    return jnp.concatenate([jnp.real(flat), jnp.imag(flat)]), f, J


class AbstractStabilityMethod(eqx.Module):
    """Computes a [`jaxstat.stationary.Stability`][] certificate from the dynamics."""

    @abc.abstractmethod
    def __call__(self, vector_field: Callable[[PyTree], PyTree], y: PyTree) -> Stability:
        """`vector_field` maps states (pytrees, real or complex) to their time derivative; `y` is
        the state. Complex states are linearised as real maps (pairs of reals)."""


class DenseSpectrum(AbstractStabilityMethod):
    """Exact: every eigenvalue of the dense Jacobian. For states of up to a few thousand reals.

    **Arguments:**

    - `tol`: the state is reported stable when `alpha < -tol`.
    """

    tol: float = eqx.field(static=True, default=0.0)

    def __call__(self, vector_field, y):
        x, f, _ = real_system(vector_field, y)
        jac = jax.jacfwd(f)(x)
        lam = _eigvals(jac)
        alpha = jnp.max(jnp.real(lam)).astype(x.dtype)
        return Stability(
            abscissa=alpha, ritz_residual=jnp.zeros((), x.dtype), stable=alpha < -self.tol
        )


class CayleyArnoldi(AbstractStabilityMethod):
    """Matrix-free: Arnoldi on the Cayley transform of the Jacobian (see the module docstring).

    **Arguments:**

    - `krylov_dim`: Arnoldi steps `m` (memory: `m + 1` state-sized vectors).
    - `h`: Cayley step; eigenvalues with `|Im lambda| ~ 2 / h` are resolved best.
    - `tol`: the state is reported stable when `alpha < -tol`.
    - `linear_solver`: for `(I - h/2 A) x = b` (default GMRES).
    - `seed`: of the random starting vector.
    """

    krylov_dim: int = eqx.field(static=True, default=30)
    h: float = eqx.field(static=True, default=1.0)
    tol: float = eqx.field(static=True, default=0.0)
    linear_solver: lx.AbstractLinearSolver | None = None
    seed: int = eqx.field(static=True, default=0)

    def __call__(self, vector_field, y):
        flat, f, _ = real_system(vector_field, y)
        dtype = flat.dtype
        _, lin = jax.linearize(f, flat)
        h = self.h
        structure = jax.ShapeDtypeStruct(flat.shape, dtype)
        lhs = lx.FunctionLinearOperator(lambda v: v - 0.5 * h * lin(v), structure)
        solver = self.linear_solver
        if solver is None:
            tol = float(jnp.finfo(dtype).eps) ** 0.75
            solver = lx.GMRES(rtol=tol, atol=tol, restart=40, max_steps=4000)

        def cayley(v):
            return lx.linear_solve(lhs, v + 0.5 * h * lin(v), solver, throw=False).value

        m = min(self.krylov_dim, flat.size)
        v0 = jax.random.normal(jax.random.key(self.seed), flat.shape, dtype)
        basis = jnp.zeros((m + 1, flat.size), dtype).at[0].set(v0 / jnp.linalg.norm(v0))
        hess = jnp.zeros((m + 1, m), dtype)

        def step(j, carry):
            basis, hess = carry
            w = cayley(basis[j])
            mask = (jnp.arange(m + 1) <= j).astype(dtype)
            # Classical Gram-Schmidt, twice (numerically as good as modified Gram-Schmidt).
            c1 = mask * _dot(basis, w)
            w = w - _dot(c1, basis)
            c2 = mask * _dot(basis, w)
            w = w - _dot(c2, basis)
            norm = jnp.linalg.norm(w)
            safe = jnp.where(norm > 0, norm, 1)
            basis = basis.at[j + 1].set(w / safe)
            hess = hess.at[:, j].set(c1 + c2).at[j + 1, j].set(norm)
            return basis, hess

        basis, hess = jax.lax.fori_loop(0, m, step, (basis, hess))
        mu = _eigvals(hess[:m])
        lam = (2 / h) * (mu - 1) / (mu + 1)
        i = jnp.argmax(jnp.real(lam))
        # Ritz residual of the Cayley eigenpair: |h_{m+1,m}| |last component of its eigenvector|.
        vecs = jnp.linalg.solve(
            hess[:m].astype(mu.dtype)
            - mu[i] * jnp.eye(m, dtype=mu.dtype)
            + 1e3 * jnp.finfo(dtype).eps * jnp.eye(m, dtype=mu.dtype),
            jnp.zeros(m, mu.dtype).at[-1].set(1),
        )
        vecs = vecs / jnp.linalg.norm(vecs)
        resid = jnp.abs(hess[m, m - 1] * vecs[-1]).astype(dtype)
        alpha = jnp.real(lam[i]).astype(dtype)
        return Stability(abscissa=alpha, ritz_residual=resid, stable=alpha < -self.tol)


def not_computed(dtype) -> Stability:
    """A placeholder certificate: nothing was computed (`stability=None`)."""
    nan = jnp.full((), jnp.nan, dtype)
    return Stability(abscissa=nan, ritz_residual=nan, stable=jnp.array(False), computed=False)


def _fallback_for(size: int) -> AbstractStabilityMethod:
    """The spectral method used where the structured certificate cannot decide: the dense
    spectrum up to `DENSE_MAX` reals, else `CayleyArnoldi`."""
    return DenseSpectrum() if size <= DENSE_MAX else CayleyArnoldi()


# Size (in reals) up to which the fallback of `AutoStability` is the dense spectrum (and up to
# which, by default, the dense spectrum is taken directly: exact, and cheap at that size).
# History: the structured path on small complex states once failed to compile inside a jitted
# solve ("Failed to translate module to LLVM IR", LLVM: "Incorrect number of arguments passed to
# called function", XLA CPU fusion emitter, under the tests' --xla_backend_optimization_level=0),
# in tests/stationary/test_solve.py::test_jit_and_vmap_over_sources with `dense_max=0`, and only
# after that test's earlier vmapped and looped solves (the same jitted solve compiled alone, and
# so did that Lanczos alone). It came with the former Lanczos (sorts and argmin/argmax of the
# Ritz values in a `lax.cond` inside the `while_loop`); with `jaxstat._lanczos` (no sort, no
# arg-reduction) that test passes with `dense_max=0`. Which XLA pass fails was not isolated.
DENSE_MAX = 2048


class AutoStability(AbstractStabilityMethod):
    r"""The default certificate: reads the structure of the Jacobian `A = Df(psi*)` (as a real
    map) off three matrix-free products, then runs Lanczos on a symmetric operator built from `A`,
    in at most `max_steps` products and three state-sized vectors. Only where that cannot decide
    does it call `fallback` (the dense spectrum, or `CayleyArnoldi` above 2,048 reals). States of
    up to `dense_max` (2,048) reals take the dense spectrum directly.

    With a random unit `v` (so that a nonzero operator does not vanish on it, almost surely),
    `J` multiplication by `i` (complex states) and `skew(X) = (X - X^T) / 2`, one of three
    structures is recognised, in this order:

    1. **Rotated gradient flow** `A = -(1 + t J) S / (1 + t^2)`, `S` symmetric (`t = 0`: `A`
       symmetric). This is the gradient model, `f = -(gamma + i kappa) grad E`, `S` proportional
       to the Hessian of `E`; `t` solves `skew((1 - t J) A) v = 0` in least squares and the
       structure holds when that residual vanishes (to `1000 eps |A v|`). With `P = S`,
       `A^T P + P A = -2 S^2 / (1 + t^2)`, so by the inertia theorem `A` has as many eigenvalues
       with positive real part as `S` has negative ones: **stable if and only if
       `lambda_min(S) > 0`**. For an eigenpair `A w = lambda w`,
       `Re lambda = -|S w|^2 / ((1 + t^2) w^* S w)`, so on a stable state
       `alpha(A) <= -lambda_min(S) / (1 + t^2)`, with equality when `t = 0` (real states,
       `A = -S`) or when `S` commutes with `J`. Lanczos on `S` for its smallest eigenvalue;
       reported: `abscissa = -theta_min / (1 + t^2)`. A negative Ritz value proves instability
       (Ritz values lie above `lambda_min`).
    2. **Damped Hamiltonian** `A = -gamma I - J M`, `M` symmetric (complex states): the
       driven-damped model, `M = H + kappa g + 2 kappa g' psi psi^T` per node. Recognised by
       `skew(J^T A) v = gamma J v`; then `M = J (A + gamma I)`. `J M` is Hamiltonian; when `M` is
       definite it is similar to the skew matrix `M^{1/2} J M^{1/2}`, so its spectrum is
       imaginary and **`alpha(A) = -gamma` exactly** (the linear model, and a Kerr network whose
       nodes are all on the lower or all on the upper branch). Lanczos on `M` for both ends;
       definite when one end is away from 0 by twice its error estimate. An indefinite `M` goes
       on to 3.
    3. **Any `A`**: the numerical abscissa `omega(A) = lambda_max((A + A^T) / 2) >= alpha(A)`
       (Lanczos, two products per step). `omega < -tol` is a **sufficient** condition for
       stability (the dynamics contracts in the Euclidean norm); then `abscissa` reports the
       bound `omega`, not the abscissa. Exact for normal `A` (e.g. the linear driven-damped
       model, `omega = -gamma`).

    A Lanczos end is trusted when its error estimate `min(r, r^2 / gap)` (Ritz residual `r`,
    `gap` to the next Ritz value; see `jaxstat._lanczos.lanczos_extremes`) is below `rtol`
    relative or below half its distance to the decision boundary. When it is not, or the
    sufficient condition of 3 fails, the certificate is undecided and `fallback` computes it
    (under `jax.vmap`: for the whole batch when any element is undecided, else not at all; the
    structured branches all run: at most `5 max_steps` products). So `stable` and `abscissa`
    are exact for 1 with `t = 0` and for 2 with `M` definite, a bound otherwise, and never
    claim instability without proof or the fallback's spectrum.

    **Arguments:**

    - `max_steps`: bound on Lanczos steps (products with `A`, twice that in case 3).
    - `rtol`: relative Ritz residual at which Lanczos stops (default `sqrt(eps)` of the dtype;
      the eigenvalue error is then about `rtol^2 |A|^2 / gap`).
    - `tol`: the state is reported stable when `abscissa < -tol`.
    - `fallback`: the method used when undecided (default: `DenseSpectrum()` up to 2,048 reals,
      else `CayleyArnoldi()`).
    - `dense_max`: states of up to this many reals take `DenseSpectrum` directly (exact, and at
      that size cheap); `0` to use the structured path at every size.
    - `seed`: of the random probe and start vector.
    """

    max_steps: int = eqx.field(static=True, default=48)
    rtol: float | None = eqx.field(static=True, default=None)
    tol: float = eqx.field(static=True, default=0.0)
    fallback: AbstractStabilityMethod | None = None
    dense_max: int = eqx.field(static=True, default=DENSE_MAX)
    seed: int = eqx.field(static=True, default=0)

    def __call__(self, vector_field, y):
        x, f, J = real_system(vector_field, y)
        if x.size <= self.dense_max:
            return DenseSpectrum(tol=self.tol)(vector_field, y)
        dtype = x.dtype
        eps = float(jnp.finfo(dtype).eps)
        rtol = eps**0.5 if self.rtol is None else self.rtol
        _, A = jax.linearize(f, x)
        transpose = jax.linear_transpose(A, x)

        def At(v):
            return transpose(v)[0]

        def lanczos(matvec, **which):
            return lanczos_extremes(matvec, v, max_steps=self.max_steps, rtol=rtol, **which)

        v = jax.random.normal(jax.random.key(self.seed), x.shape, dtype)
        v = v / jnp.linalg.norm(v)
        a, b = A(v), At(v)
        thresh = 1e3 * eps * (jnp.linalg.norm(a) + jnp.linalg.norm(b))
        p = (a - b) / 2  # skew(A) v
        if J is None:
            t = jnp.zeros((), dtype)
            rotated = jnp.linalg.norm(p) <= thresh
            hamiltonian = jnp.array(False)
            gamma = jnp.zeros((), dtype)
        else:
            r = (J(a) + At(J(v))) / 2  # skew(J A) v = -skew(J^T A) v
            rr = _dot(r, r)
            t = jnp.where(rr > thresh**2, _dot(p, r) / jnp.where(rr > 0, rr, 1), 0)
            rotated = jnp.linalg.norm(p - t * r) <= thresh
            gamma = -_dot(J(v), r)
            hamiltonian = jnp.linalg.norm(-r - gamma * J(v)) <= thresh

        # An end is trusted when it has converged (relative error below `rtol`) or when its
        # error estimate is below half its distance to the decision boundary (the sign is then
        # settled even if the value is not yet accurate to `rtol`).
        def numerical_abscissa():
            ext = lanczos(lambda u: (A(u) + At(u)) / 2, smallest=False)
            bound = ext.largest + 2 * ext.largest_error
            return ext.largest, ext.largest_residual, bound < -self.tol

        def rotated_gradient():
            def S(u):
                Au = A(u)
                return -(Au - t * J(Au)) if J is not None else -Au

            ext = lanczos(S, largest=False)
            scale = 1 + t**2
            # A negative Ritz value proves lambda_min(S) < 0 (Ritz values lie above it).
            decided = ext.converged | (ext.smallest < 0) | (2 * ext.smallest_error < ext.smallest)
            return -ext.smallest / scale, ext.smallest_residual / scale, decided

        def damped_hamiltonian():
            ext = lanczos(lambda u: J(A(u) + gamma * u))
            positive = ext.smallest > 2 * ext.smallest_error
            negative = ext.largest < -2 * ext.largest_error
            exact = (-gamma, jnp.zeros((), dtype), jnp.array(True))
            return jax.lax.cond(positive | negative, lambda: exact, numerical_abscissa)

        branches = [numerical_abscissa, rotated_gradient]
        if J is not None:
            branches.append(damped_hamiltonian)
        index = jnp.where(rotated, 1, jnp.where(hamiltonian, 2, 0))
        abscissa, resid, decided = jax.lax.switch(index, branches)
        abscissa, resid = abscissa.astype(dtype), resid.astype(dtype)

        def certified():
            return Stability(abscissa=abscissa, ritz_residual=resid, stable=abscissa < -self.tol)

        fallback = _fallback_for(x.size) if self.fallback is None else self.fallback
        return _unless(decided, certified, lambda: fallback(vector_field, y))


def _unless(decided, certified: Callable[[], Stability], fallback: Callable[[], Stability]):
    """`lax.cond(decided, certified, fallback)`, but under `jax.vmap` the (expensive) `fallback`
    runs only when some batch element is undecided, not for every element: a batched `lax.cond`
    becomes a select that evaluates both branches, whereas a `lax.while_loop` with a batched
    predicate runs its body while any element needs it (here at most once) and keeps the others'
    carry. Not differentiated: the certificate's inputs are constants (`stop_gradient`)."""
    out = certified()

    def body(carry):
        new = fallback()
        new = jax.tree.map(lambda a, b: jnp.asarray(b, a.dtype), carry[1], new)
        return jnp.array(True), new

    return jax.lax.while_loop(lambda carry: ~carry[0], body, (jnp.asarray(decided), out))[1]
