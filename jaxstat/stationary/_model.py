"""Dynamics models: a residual `F(psi; s, H)` whose zeros are the stationary states, and the
dynamics `d psi/dt = f(psi)` they are the fixed points of.

1. Driven-damped (Kerr) model, complex states:

       d psi/dt = -(gamma + i H) psi - i kappa g(|psi|^2) psi + s,     gamma > 0,
       F(psi)   = (gamma + i H) psi + i kappa g(|psi|^2) psi - s,       f = -F,

   `g(r) = r` (Kerr) or `r / (1 + r)` (saturable). With `kappa = 0`, `psi* = (gamma + i H)^{-1} s`.

2. Gradient model with a local potential, real or complex states:

       E(psi)   = 1/2 <psi, H psi> + Phi(psi) - Re <s, psi>,
       F(psi)   = H psi + grad Phi(psi) - s   (the real gradient of E),
       d psi/dt = -(gamma + i kappa) F(psi)   (`-gamma F` for real states).

   The `gamma` part dissipates `E`, the `kappa` part conserves it.

A new model subclasses `AbstractModel` and implements `residual` and `vector_field` (and `energy`
if it has one).
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
import jax.lax as lax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Inexact

from .._checks import is_concrete
from ..graphs import SparseHamiltonian
from ._potential import AbstractPotential, as_parameter, check_positive, Quadratic


class AbstractNonlinearity(eqx.Module):
    """An intensity response `g(r)`, `r = |psi|^2`, of the driven-damped model."""

    @abc.abstractmethod
    def __call__(self, r: Float[Array, "..."]) -> Float[Array, "..."]: ...


class Kerr(AbstractNonlinearity):
    """`g(r) = r`."""

    def __call__(self, r):
        return r


class Saturable(AbstractNonlinearity):
    """`g(r) = r / (1 + r)`."""

    def __call__(self, r):
        return r / (1 + r)


class AbstractModel(eqx.Module):
    """A stationary-layer model: residual `F(psi; s, H)` and dynamics `d psi/dt = f(psi)`.

    Numeric parameters are stored as arrays (`converter=as_parameter`, also for Python floats),
    so they are trainable leaves and a new value does not recompile a `filter_jit`-ed function.
    """

    @abc.abstractmethod
    def residual(
        self, psi: Inexact[Array, "n ..."], source: Inexact[Array, "n ..."], H: SparseHamiltonian
    ) -> Inexact[Array, "n ..."]:
        """`F(psi)`; stationary states are its zeros."""

    @abc.abstractmethod
    def vector_field(
        self, psi: Inexact[Array, "n ..."], source: Inexact[Array, "n ..."], H: SparseHamiltonian
    ) -> Inexact[Array, "n ..."]:
        """`f(psi)` with `d psi/dt = f(psi)`; `f = 0` exactly where `F = 0`."""

    @property
    def complex_states(self) -> bool:
        """`True` if states must be complex whatever the graph and source."""
        return False

    @property
    def real_only(self) -> bool:
        """`True` if states must be real."""
        return False

    def state_dtype(self, H: SparseHamiltonian, source) -> jnp.dtype:
        """The dtype of the states: complex if the model, the Hamiltonian or the source is; real
        otherwise. Raises `TypeError` when a real-only model meets complex data."""
        dtype = jnp.result_type(H.dtype, source)
        if self.complex_states:
            dtype = jnp.result_type(dtype, jnp.complex64)
        if self.real_only and jnp.issubdtype(dtype, jnp.complexfloating):
            raise TypeError(
                f"{type(self).__name__} with this potential needs real states, but the graph or "
                "source is complex"
            )
        return dtype

    @property
    def is_linear(self) -> bool:
        """`True` if the residual `F(psi; s, H)` is affine in `psi` for every `H`, so the layer is
        an affine (resolvent) map of its source. Decided from the model's structure and from
        concrete parameter values: a traced parameter that may make the model nonlinear gives
        `False` (freeze it with `eqx.partition` to keep the linear path under `jax.grad`)."""
        return False

    @property
    def linear_part(self) -> tuple[complex | Inexact[Array, ""], Inexact[Array, ""]]:
        """For a linear model (`is_linear`), `(c, z)` with

            F(psi; s, H) = c (H - z I) psi - s,   so   psi* = (H - z I)^{-1} (s / c):

        the layer is the resolvent layer at the spectral parameter `z` with its source divided
        by `c` (`jaxstat.equivalence.to_resolvent`). A real `z` (a shift below the spectrum)
        has a real dtype, a complex `z` a complex dtype.

        **Raises:** `ValueError` for a model that is not linear."""
        raise ValueError(
            f"{type(self).__name__} is not a resolvent layer: its residual is not affine in psi"
        )

    def monotonicity(self, lambda_min: Callable[[], Float[Array, ""]]) -> Float[Array, ""]:
        """The strong-monotonicity modulus `m` of `psi -> F(psi; s, H)`,

            Re <F(psi) - F(phi), psi - phi> >= m |psi - phi|^2,

        so that `|psi*(s) - psi*(s')| <= |s - s'| / m`. `lambda_min()` returns a lower bound on
        the smallest eigenvalue of `H`; it is called only by models whose modulus depends on it.

        **Raises:** `ValueError` for a model without a modulus (several stationary states can
        coexist)."""
        raise ValueError(
            f"{type(self).__name__} has no strong-monotonicity modulus: it does not implement "
            "`monotonicity`"
        )

    def check(self) -> list[tuple[Array, str]]:
        """Value conditions on parameters, `(bad, message)`, checked inside `solve`."""
        return []

    def linear_rate(self, h_radius: Float[Array, ""]) -> Float[Array, ""]:
        """A bound on the spectral radius of the part of the Jacobian `Df(psi)` that comes from
        `H`, given a bound `h_radius >= |H|_2`: the fastest rate of the dynamics, which sets its
        stiffness. `flow` caps its step by it. The default assumes `f = -F` with `F` containing
        `H psi` (rate `h_radius`); a model with another time scale overrides it."""
        return h_radius


class DrivenDampedModel(AbstractModel):
    """The driven-damped (Kerr) model `(gamma + i H) psi + i kappa g(|psi|^2) psi = s` (see
    `jaxstat.stationary`).

    **Arguments:**

    - `gamma`: damping, `> 0` (checked).
    - `kappa`: nonlinearity strength (0: the linear resolvent layer).
    - `nonlinearity`: `Kerr()` or `Saturable()`.
    """

    gamma: Float[Array, ""] = eqx.field(default=1.0, converter=as_parameter)
    kappa: Float[Array, ""] = eqx.field(default=0.0, converter=as_parameter)
    nonlinearity: AbstractNonlinearity = Kerr()

    def __check_init__(self):
        check_positive("gamma", self.gamma)

    @property
    def complex_states(self) -> bool:
        return True

    @property
    def is_linear(self) -> bool:
        # numpy, not jnp: under a trace jnp turns even Python constants into tracers.
        return is_concrete(self.kappa) and not np.any(np.asarray(self.kappa) != 0)

    @property
    def linear_part(self):
        # (gamma + i H) psi = i (H - i gamma) psi.
        if not self.is_linear:
            raise ValueError(
                "only linear driven-damped layers (concrete kappa = 0) are resolvent layers; a "
                f"Kerr/saturable layer (kappa = {self.kappa}) is not an affine map of its source"
            )
        return 1j, 1j * self.gamma

    def monotonicity(self, lambda_min):
        # Re <(gamma + i H) v, v> = gamma |v|^2 for Hermitian H, whatever its spectrum.
        if not self.is_linear:
            raise ValueError(
                "a driven-damped layer with kappa != 0 (Kerr/saturable) is not strongly monotone "
                "(optical bistability); the Lipschitz bound needs kappa = 0"
            )
        return jnp.asarray(self.gamma)

    def residual(self, psi, source, H):
        g = self.nonlinearity(jnp.abs(psi) ** 2)
        return self.gamma * psi + 1j * H.mv(psi) + 1j * self.kappa * g * psi - source

    def vector_field(self, psi, source, H):
        return -self.residual(psi, source, H)

    def check(self):
        return [(jnp.asarray(self.gamma) <= 0, "gamma must be positive")]

    def linear_rate(self, h_radius):
        # Df = -(gamma + i H) + (nonlinear terms): |gamma + i lambda| <= gamma + |H|.
        return self.gamma + h_radius


class GradientModel(AbstractModel):
    """The gradient model `H psi + grad Phi(psi) = s` with a local potential (see
    `jaxstat.stationary`).

    **Arguments:**

    - `potential`: an `AbstractPotential` (`Quadratic`, `ReLUPotential`, `Quartic`, `DoubleWell`).
    - `gamma`: dissipation rate of the dynamics, `> 0` (checked).
    - `kappa`: conservative (Schrödinger) rate of the dynamics, complex states only.
    """

    potential: AbstractPotential = eqx.field(default_factory=Quadratic)
    gamma: Float[Array, ""] = eqx.field(default=1.0, converter=as_parameter)
    kappa: Float[Array, ""] = eqx.field(default=0.0, converter=as_parameter)

    def __check_init__(self):
        check_positive("gamma", self.gamma)

    @property
    def real_only(self) -> bool:
        return self.potential.real_only

    @property
    def is_linear(self) -> bool:
        return self.potential.is_linear

    @property
    def linear_part(self):
        # H psi + mu psi = (H - (-mu)) psi.
        if not self.potential.is_linear:
            raise ValueError(
                f"GradientModel with {type(self.potential).__name__} is not a resolvent layer: "
                "only DrivenDampedModel(kappa=0) and GradientModel(Quadratic(mu)) are linear"
            )
        return 1.0, -self.potential.linear_part

    def monotonicity(self, lambda_min):
        # <H u + grad Phi(u) - H v - grad Phi(v), u - v> >= (lambda_min(H) + c) |u - v|^2.
        c = self.potential.strong_convexity
        return lambda_min() + c

    def residual(self, psi, source, H):
        return self.potential.stationarity(psi, H.mv(psi) - source)

    def vector_field(self, psi, source, H):
        rate = self.gamma + 1j * self.kappa if jnp.iscomplexobj(psi) else self.gamma
        return -rate * self.residual(psi, source, H)

    def energy(self, psi, source, H) -> Float[Array, ""]:
        """`E(psi) = 1/2 <psi, H psi> + Phi(psi) - Re <s, psi>`."""
        hi = lax.Precision.HIGHEST  # not TF32 on GPUs
        quad = 0.5 * jnp.real(jnp.vdot(psi, H.mv(psi), precision=hi))
        return quad + self.potential.value(psi) - jnp.real(jnp.vdot(source, psi, precision=hi))

    def check(self):
        return [(jnp.asarray(self.gamma) <= 0, "gamma must be positive")]

    def linear_rate(self, h_radius):
        # Df = -(gamma + i kappa) (H + Hess Phi): the H part has radius |gamma + i kappa| |H|.
        return jnp.abs(self.gamma + 1j * self.kappa) * h_radius
