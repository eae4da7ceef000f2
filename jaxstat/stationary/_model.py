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

import equinox as eqx
import jax.lax as lax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Inexact

from .._checks import is_concrete
from ..graphs import SparseHamiltonian
from ._potential import AbstractPotential, as_parameter, Quadratic


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

    @property
    def is_linear(self) -> bool:
        """`True` if the residual `F(psi; s, H)` is affine in `psi` for every `H`, so the layer is
        an affine (resolvent) map of its source. Decided from the model's structure and from
        concrete parameter values: a traced parameter that may make the model nonlinear gives
        `False` (freeze it with `eqx.partition` to keep the linear path under `jax.grad`)."""
        return False

    def check(self) -> list[tuple[Array, str]]:
        """Value conditions on parameters, `(bad, message)`, checked inside `solve`."""
        return []

    def linear_rate(self, h_radius: Float[Array, ""]) -> Float[Array, ""]:
        """A bound on the spectral radius of the part of the Jacobian `Df(psi)` that comes from
        `H`, given a bound `h_radius >= |H|_2`: the fastest rate of the dynamics, which sets its
        stiffness. `flow` caps its step by it. The default assumes `f = -F` with `F` containing
        `H psi` (rate `h_radius`); a model with another time scale overrides it."""
        return h_radius


def _check_positive(name: str, x) -> None:
    if is_concrete(x) and not bool(jnp.all(jnp.asarray(x) > 0)):
        raise ValueError(f"{name} must be positive, got {x}")


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
        _check_positive("gamma", self.gamma)

    @property
    def complex_states(self) -> bool:
        return True

    @property
    def is_linear(self) -> bool:
        # numpy, not jnp: under a trace jnp turns even Python constants into tracers.
        return is_concrete(self.kappa) and not np.any(np.asarray(self.kappa) != 0)

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
        _check_positive("gamma", self.gamma)

    @property
    def real_only(self) -> bool:
        return self.potential.real_only

    @property
    def is_linear(self) -> bool:
        return self.potential.is_linear

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
