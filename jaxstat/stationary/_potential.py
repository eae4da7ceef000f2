"""Local potentials `Phi(psi) = sum_i phi(psi_i)` of the gradient model.

A smooth potential is radial, `phi(u) = f(|u|^2)`, with real gradient `2 f'(|u|^2) u`; the ReLU
potential `1/2 u^2 + indicator(u >= 0)` is not smooth and enters through its proximal map.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Inexact

from .._checks import is_concrete


def as_parameter(x: Float[ArrayLike, "..."] | int) -> Float[Array, "..."]:
    """The converter of model and potential parameters: an array (a Python float stays weakly
    typed, so it does not promote single-precision states; a Python int becomes a float)."""
    if isinstance(x, int) and not isinstance(x, bool):
        x = float(x)
    return jnp.asarray(x)


def check_positive(name: str, x) -> None:
    """`ValueError` unless every entry of a concrete parameter `x` is `> 0` (traced values are
    checked inside `solve`, by the model's `check`)."""
    if is_concrete(x) and not np.all(np.asarray(x) > 0):
        raise ValueError(f"{name} must be positive, got {x}")


class AbstractPotential(eqx.Module):
    """A local potential. Subclasses give its value and the stationarity residual.

    Parameters are stored as arrays (`converter=as_parameter`, also for Python floats): they are
    trainable leaves (`eqx.filter_grad` reaches them) and a new value does not recompile a
    `filter_jit`-ed function.
    """

    @abc.abstractmethod
    def value(self, psi: Inexact[Array, "n ..."]) -> Float[Array, ""]:
        """`Phi(psi) = sum_i phi(psi_i)` (finite part)."""

    @abc.abstractmethod
    def stationarity(
        self, psi: Inexact[Array, "n ..."], r: Inexact[Array, "n ..."]
    ) -> Inexact[Array, "n ..."]:
        """A residual vanishing exactly when `0 in r + d Phi(psi)`, where `r = H psi - s`."""

    @property
    def real_only(self) -> bool:
        """`True` if the potential is defined for real states only."""
        return False

    @property
    def is_linear(self) -> bool:
        """`True` if `grad Phi` is linear (`Phi` quadratic): the gradient layer is then the
        affine map `psi* = (H + M)^{-1} s` of its source."""
        return False

    @property
    def linear_part(self) -> Float[Array, ""]:
        """For a linear potential (`is_linear`), the `mu` with `grad Phi(psi) = mu psi`.

        **Raises:** `ValueError` for a potential whose gradient is not linear."""
        raise ValueError(
            f"{type(self).__name__} is not quadratic: grad Phi is not linear in psi, so the "
            "gradient layer is not a resolvent layer"
        )

    @property
    def strong_convexity(self) -> Float[Array, ""]:
        """The modulus `c` of strong convexity, `Re <grad Phi(u) - grad Phi(v), u - v> >=
        c |u - v|^2` (subgradients for a non-smooth `Phi`). It makes the gradient layer strongly
        monotone with modulus `lambda_min(H) + c`.

        **Raises:** `ValueError` for a potential that is not strongly convex."""
        raise ValueError(
            f"{type(self).__name__} is not strongly convex: the gradient layer has no "
            "strong-monotonicity constant (several stationary states can coexist)"
        )


class AbstractRadialPotential(AbstractPotential):
    """A smooth potential `phi(u) = f(|u|^2)`: `stationarity = r + 2 f'(|u|^2) u`."""

    @abc.abstractmethod
    def f(self, rho: Float[Array, "..."]) -> Float[Array, "..."]:
        """`f(rho)`, `rho = |u|^2`."""

    @abc.abstractmethod
    def df(self, rho: Float[Array, "..."]) -> Float[Array, "..."]:
        """`f'(rho)`."""

    def value(self, psi):
        return jnp.sum(self.f(jnp.abs(psi) ** 2))

    def grad(self, psi):
        """The real gradient `2 f'(|psi|^2) psi` (complex numbers as pairs of reals)."""
        return 2 * self.df(jnp.abs(psi) ** 2) * psi

    def stationarity(self, psi, r):
        return r + self.grad(psi)


class Quadratic(AbstractRadialPotential):
    """`phi(u) = mu/2 |u|^2`: the layer is linear, `psi* = (H + mu I)^{-1} s`."""

    mu: Float[Array, ""] = eqx.field(default=1.0, converter=as_parameter)

    def f(self, rho):
        return 0.5 * self.mu * rho

    def df(self, rho):
        return 0.5 * self.mu * jnp.ones_like(rho)

    @property
    def is_linear(self) -> bool:
        return True

    @property
    def linear_part(self):
        # grad Phi(psi) = 2 f'(|psi|^2) psi = mu psi.
        return self.mu

    @property
    def strong_convexity(self):
        return self.mu


class Quartic(AbstractRadialPotential):
    """`phi(u) = mu/2 |u|^2 + beta/4 |u|^4` (Gross-Pitaevskii), convex for `mu, beta >= 0`."""

    mu: Float[Array, ""] = eqx.field(default=1.0, converter=as_parameter)
    beta: Float[Array, ""] = eqx.field(default=1.0, converter=as_parameter)

    def __check_init__(self):
        if is_concrete(self.beta) and not bool(jnp.asarray(self.beta) >= 0):
            raise ValueError(f"beta must be non-negative, got {self.beta}")

    def f(self, rho):
        return 0.5 * self.mu * rho + 0.25 * self.beta * rho**2

    def df(self, rho):
        return 0.5 * self.mu + 0.5 * self.beta * rho

    @property
    def strong_convexity(self):
        # mu/2 |u|^2 is mu-strongly convex and beta/4 |u|^4 convex (beta >= 0).
        return self.mu


class DoubleWell(AbstractRadialPotential):
    """`phi(u) = beta/4 (|u|^2 - a^2)^2`: non-convex, minima on `|u| = a`; several branches."""

    beta: Float[Array, ""] = eqx.field(default=1.0, converter=as_parameter)
    a: Float[Array, ""] = eqx.field(default=1.0, converter=as_parameter)

    def __check_init__(self):
        check_positive("beta", self.beta)

    def f(self, rho):
        return 0.25 * self.beta * (rho - self.a**2) ** 2

    def df(self, rho):
        return 0.5 * self.beta * (rho - self.a**2)


class ReLUPotential(AbstractPotential):
    """`phi(u) = 1/2 u^2 + indicator(u >= 0)` for real states.

    Stationarity `0 in H psi - s + psi + N_{>=0}(psi)` is the complementarity problem
    `psi = ReLU(s - H psi)` (its natural-map residual `psi - ReLU(s - H psi)` is what is solved).
    With no edges (`H = 0`) the layer is exactly `ReLU(s)`.
    """

    def value(self, psi):
        return 0.5 * jnp.sum(psi**2)

    def stationarity(self, psi, r):
        return psi - jnp.maximum(-r, 0)

    @property
    def real_only(self) -> bool:
        return True

    @property
    def strong_convexity(self):
        # 1/2 u^2 is 1-strongly convex; adding the indicator of a convex set keeps it so.
        return jnp.asarray(1.0)
