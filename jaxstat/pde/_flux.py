r"""Convex fluxes / Hamiltonians and the numerical fluxes built on them.

A scalar conservation law `p_t + f(p)_x = 0` and the Hamilton-Jacobi equation
`u_t + H(u_x) = 0` share their numerical machinery: if `p = u_x`, the numerical Hamiltonian of
the HJ scheme evaluated at the one-sided derivatives `(u_x^-, u_x^+)` is the numerical flux of the
conservation law evaluated at the reconstructed states `(p^-, p^+)` of a face. Both need the same
properties: consistency `F(a, a) = f(a)`, monotonicity (`F` nondecreasing in `a`, nonincreasing in
`b`) and Lipschitz continuity. For a convex `f` with minimiser `m` (the sonic point):

- Godunov: `F(a, b) = max(f(max(a, m)), f(min(b, m)))`, the flux of the exact Riemann solution
  at `x / t = 0` (equivalently `min_{[a, b]} f` if `a <= b`, `max_{[b, a]} f` otherwise);
- Engquist-Osher: `F(a, b) = f(max(a, m)) + f(min(b, m)) - f(m)`;
- local Lax-Friedrichs (Rusanov): `F(a, b) = (f(a) + f(b)) / 2 - alpha (b - a) / 2`,
  `alpha = max(|f'(a)|, |f'(b)|)`.

In several dimensions the Hamiltonian is separable, `H(p) = sum_k f(p_k)`, and the numerical
Hamiltonian is the sum of the one-dimensional ones.
"""

import abc
from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array, ArrayLike


class AbstractConvexFlux(eqx.Module):
    r"""A convex scalar flux `f(p)` (or one-dimensional Hamiltonian `H(p)`), applied elementwise.

    Subclasses implement `__call__` and set `argmin`, the minimiser `m` of `f` (the sonic point
    `f'(m) = 0`). `derivative`, `inverse_derivative` and `conjugate` have generic defaults
    (automatic differentiation and an optimistix Newton solve) that subclasses may override with
    closed forms.
    """

    argmin: eqx.AbstractVar[ArrayLike]

    @abc.abstractmethod
    def __call__(self, p: ArrayLike) -> Array:
        """`f(p)`, elementwise."""

    def derivative(self, p: ArrayLike) -> Array:
        """`f'(p)`, elementwise (the characteristic speed)."""
        p = jnp.asarray(p)
        return jnp.vectorize(jax.grad(lambda q: self(q)))(p)

    def inverse_derivative(self, s: ArrayLike) -> Array:
        """The `p` with `f'(p) = s`, elementwise (by Newton's method started at `argmin`)."""
        s = jnp.asarray(s)

        def one(si):
            fn = lambda p, _: self.derivative(p) - si
            tol = 10 * jnp.finfo(si.dtype).eps
            p0 = jnp.asarray(self.argmin, si.dtype)
            return optx.root_find(fn, optx.Newton(rtol=tol, atol=tol), p0, max_steps=256).value

        return jnp.vectorize(one)(s)

    def conjugate(self, q: ArrayLike) -> Array:
        r"""The Legendre transform `f^*(q) = sup_p (p q - f(p)) = q p^* - f(p^*)`, `f'(p^*) = q`."""
        p = self.inverse_derivative(q)
        return q * p - self(p)


class Quadratic(AbstractConvexFlux):
    r"""`f(p) = p^2 / 2`: Burgers' flux, and the Hamiltonian `H(p) = |p|^2 / 2` (separably).

    Closed forms: `f'(p) = p`, `(f')^{-1}(s) = s`, `f^*(q) = q^2 / 2`.

    **Example:** `Quadratic()(jnp.array([1.0, 2.0]))` is `[0.5, 2.0]`.
    """

    @property
    def argmin(self):
        return 0.0

    def __call__(self, p):
        return 0.5 * p * p

    def derivative(self, p):
        return p

    def inverse_derivative(self, s):
        return s

    def conjugate(self, q):
        return 0.5 * q * q


class Convex(AbstractConvexFlux):
    r"""A user-supplied strictly convex, smooth scalar function `f`.

    **Arguments:**

    - `fn`: a scalar function of a scalar, written with `jax.numpy`.
    - `argmin`: its minimiser (where `f'(argmin) = 0`); used by Godunov and Engquist-Osher.

    **Example:** `Convex(lambda p: jnp.cosh(p) - 1, argmin=0.0)`.
    """

    fn: Callable[[Array], Array]
    argmin: ArrayLike = 0.0

    def __call__(self, p):
        return self.fn(p)


class AbstractNumericalFlux(eqx.Module):
    """A two-point monotone numerical flux `F(a, b)` for a convex flux `f`.

    Used by `Burgers` at cell faces (`a`, `b` the left and right reconstructed states) and by
    `HamiltonJacobi` at nodes (`a`, `b` the left- and right-biased derivatives). `system` is the
    same flux for the vector Burgers system of `d >= 2` dimensions, where it exists
    (`solves_systems`).
    """

    solves_systems: eqx.AbstractClassVar[bool]

    @abc.abstractmethod
    def __call__(self, flux: AbstractConvexFlux, a: ArrayLike, b: ArrayLike) -> Array:
        """`F(a, b)`, elementwise."""

    @abc.abstractmethod
    def system(self, flux: AbstractConvexFlux, a: Array, b: Array, axis: int) -> Array:
        """The numerical flux of the system `p_t + sum_k d_k F_k(p) = 0`, `F_k(p) = H(p) e_k`,
        `H(p) = sum_l f(p_l)`, across a face normal to `axis`: `a`, `b` have the `d` components
        first; returns an array of their shape."""


_NO_SYSTEM_SOLVER = (
    "the {d}-D Burgers system `p_t + grad H(p) = nu Lap p` is a system of conservation laws: "
    "only `LocalLaxFriedrichs()` applies (got {flux!r}). For Godunov or Engquist-Osher in "
    "several dimensions solve `HamiltonJacobi` for `u`."
)


class Godunov(AbstractNumericalFlux):
    r"""Godunov's flux: `F(a, b) = max(f(max(a, m)), f(min(b, m)))` for convex `f`.

    The flux of the exact (entropy) Riemann solution; the least dissipative monotone flux.

    **Example:** `Godunov()(Quadratic(), a, b)`.
    """

    solves_systems: ClassVar[bool] = False

    def __call__(self, flux, a, b):
        m = jnp.asarray(flux.argmin, jnp.result_type(a))
        return jnp.maximum(flux(jnp.maximum(a, m)), flux(jnp.minimum(b, m)))

    def system(self, flux, a, b, axis):
        raise TypeError(_NO_SYSTEM_SOLVER.format(d=a.shape[0], flux=self))


class EngquistOsher(AbstractNumericalFlux):
    r"""The Engquist-Osher flux: `F(a, b) = f(max(a, m)) + f(min(b, m)) - f(m)` for convex `f`.

    Continuously differentiable where `f` is (Godunov's is only Lipschitz at sonic points).

    **Example:** `EngquistOsher()(Quadratic(), a, b)`.
    """

    solves_systems: ClassVar[bool] = False

    def __call__(self, flux, a, b):
        m = jnp.asarray(flux.argmin, jnp.result_type(a))
        return flux(jnp.maximum(a, m)) + flux(jnp.minimum(b, m)) - flux(m)

    def system(self, flux, a, b, axis):
        raise TypeError(_NO_SYSTEM_SOLVER.format(d=a.shape[0], flux=self))


class LocalLaxFriedrichs(AbstractNumericalFlux):
    r"""The local Lax-Friedrichs (Rusanov) flux:
    `F(a, b) = (f(a) + f(b)) / 2 - alpha (b - a) / 2`, `alpha = max(|f'(a)|, |f'(b)|)`.

    The most dissipative of the three and the only one that also applies to systems (the
    vector Burgers equation in two or more dimensions): for `F_k(p) = H(p) e_k`, whose Jacobian
    has the eigenvalues `f'(p_k)` and `0`, `F = (F_k(a) + F_k(b)) / 2 - alpha (b - a) / 2` with
    `alpha = max(|f'(a_k)|, |f'(b_k)|)` (`system`).

    **Example:** `LocalLaxFriedrichs()(Quadratic(), a, b)`.
    """

    solves_systems: ClassVar[bool] = True

    def __call__(self, flux, a, b):
        alpha = jnp.maximum(jnp.abs(flux.derivative(a)), jnp.abs(flux.derivative(b)))
        return 0.5 * (flux(a) + flux(b)) - 0.5 * alpha * (b - a)

    def system(self, flux, a, b, axis):
        alpha = jnp.maximum(jnp.abs(flux.derivative(a[axis])), jnp.abs(flux.derivative(b[axis])))
        mean = 0.5 * (jnp.sum(flux(a), axis=0) + jnp.sum(flux(b), axis=0))
        return (-0.5 * alpha * (b - a)).at[axis].add(mean)
