"""Stability certificates: the spectral abscissa of the linearised dynamics at a stationary state.

At a stationary state `psi*` of `d psi/dt = f(psi)`, with `A = Df(psi*)` as a real-linear map
(complex states as pairs of reals), the state is linearly stable when every eigenvalue of `A` has
negative real part. The certificate is `alpha(A) = max Re lambda(A)`:

- `DenseSpectrum`: all eigenvalues of the dense `A` (small problems; `O(N^2)` memory).
- `CayleyArnoldi`: matrix-free. Arnoldi on the Cayley transform
  `C = (I - h/2 A)^{-1} (I + h/2 A)`, which maps `Re lambda < 0` to `|mu| < 1` and `Re lambda > 0`
  to `|mu| > 1`, so its dominant eigenvalues are the rightmost of `A`; each Krylov step is one
  matrix-free `lineax` solve. Ritz values are mapped back by `lambda = (2/h) (mu - 1) / (mu + 1)`.
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

from .._krylov import _dot
from ._solution import Stability


def _eigvals_host(m):
    """Eigenvalues of a small dense real matrix, on the host (works on every backend)."""
    dtype = jnp.result_type(m.dtype, jnp.complex64)
    out = jax.ShapeDtypeStruct(m.shape[:1], dtype)

    def eigvals(a):
        a = np.asarray(a)
        if not np.all(np.isfinite(a)):  # reported by the caller's result code, not raised here
            return np.full(a.shape[:1], np.nan, dtype)
        return np.linalg.eigvals(a).astype(dtype)

    return jax.pure_callback(eigvals, out, m, vmap_method="sequential")


class AbstractStabilityMethod(eqx.Module):
    """Computes a [`jaxstat.stationary.Stability`][] certificate from the dynamics."""

    @abc.abstractmethod
    def __call__(self, vector_field: Callable[[PyTree], PyTree], y: PyTree) -> Stability:
        """`vector_field` maps real states (pytrees) to their time derivative; `y` is the state."""


class DenseSpectrum(AbstractStabilityMethod):
    """Exact: every eigenvalue of the dense Jacobian. For states of up to a few thousand reals.

    **Arguments:**

    - `tol`: the state is reported stable when `alpha < -tol`.
    """

    tol: float = 0.0

    def __call__(self, vector_field, y):
        flat, unravel = jfu.ravel_pytree(y)

        def f(v):
            return jfu.ravel_pytree(vector_field(unravel(v)))[0]

        jac = jax.jacfwd(f)(flat)
        lam = _eigvals_host(jac)
        alpha = jnp.max(jnp.real(lam)).astype(flat.dtype)
        return Stability(
            abscissa=alpha, ritz_residual=jnp.zeros((), flat.dtype), stable=alpha < -self.tol
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

    krylov_dim: int = 30
    h: float = 1.0
    tol: float = 0.0
    linear_solver: lx.AbstractLinearSolver | None = None
    seed: int = 0

    def __call__(self, vector_field, y):
        flat, unravel = jfu.ravel_pytree(y)
        dtype = flat.dtype
        _, lin = jax.linearize(lambda v: jfu.ravel_pytree(vector_field(unravel(v)))[0], flat)
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
        mu = _eigvals_host(hess[:m])
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
