"""Stationary layers and networks: `x -> rho(psi*(B x + b))`."""

from __future__ import annotations

import abc

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import optimistix as optx
from jaxtyping import Array, ArrayLike, Float, Inexact, PRNGKeyArray

from ..graphs import Graph
from ._model import AbstractModel
from ._solution import Solution
from ._solve import solve
from ._stability import AbstractStabilityMethod


class AbstractSource(eqx.Module):
    """The affine map from a layer's input to the source `s = B x + b` on the graph's nodes."""

    @abc.abstractmethod
    def __call__(self, x: Inexact[Array, "..."]) -> Inexact[Array, "n ..."]: ...


class NodeSource(AbstractSource):
    """`s = B x + b` mixing nodes: `B` of shape `(n, m)` maps an input with `m` leading entries
    (shape `(m, ...)`) to the graph's `n` nodes. `b` broadcasts against `(n, ...)`."""

    B: Inexact[Array, "n m"]
    b: Inexact[Array, "n ..."]

    def __call__(self, x):
        if x.shape[0] != self.B.shape[1]:
            raise ValueError(f"input has {x.shape[0]} leading entries, B expects {self.B.shape[1]}")
        return jnp.tensordot(self.B, x, axes=(1, 0)) + self.b


class DirectSource(AbstractSource):
    """`s = x`: the input is the source itself, shape `(n, ...)` (no parameters). For example the
    one-hot labels given to a label-propagation layer `psi* = (L_w + mu I)^{-1} Y_given`."""

    def __call__(self, x):
        return x


class FeatureSource(AbstractSource):
    """`s_i = W x_i + b` per node: a shared linear map of node features, `W` of shape
    `(d_out, d_in)`, input of shape `(n, d_in)`, source `(n, d_out)`."""

    W: Inexact[Array, "d_out d_in"]
    b: Inexact[Array, " d_out"]

    def __call__(self, x):
        if x.shape[-1] != self.W.shape[1]:
            raise ValueError(f"input has {x.shape[-1]} features, W expects {self.W.shape[1]}")
        return x @ self.W.T + self.b


class AbstractReadout(eqx.Module):
    """`rho`: from the state to the layer's output."""

    @abc.abstractmethod
    def __call__(self, psi: Inexact[Array, "n ..."]) -> Array: ...


class Identity(AbstractReadout):
    """`rho(psi) = psi` (real states)."""

    def __call__(self, psi):
        return psi


class ReIm(AbstractReadout):
    """`rho(psi) = [Re psi, Im psi]`, concatenated along the last axis."""

    def __call__(self, psi):
        return jnp.concatenate([jnp.real(psi), jnp.imag(psi)], axis=-1)


class Intensity(AbstractReadout):
    """`rho(psi) = |psi|^2`."""

    def __call__(self, psi):
        return jnp.abs(psi) ** 2


class LinearReadout(AbstractReadout):
    """`rho(psi)_i = W [Re psi_i, Im psi_i] + c` per node (`W` of shape `(out, 2 d)`; for real
    states the imaginary half is zero)."""

    W: Float[Array, "out two_d"]
    c: Float[Array, " out"]

    def __call__(self, psi):
        return ReIm()(psi) @ self.W.T + self.c


class StationaryLayer(eqx.Module):
    """A graph-stationary layer `x -> rho(psi*(s))`, `s = B x + b`, `F(psi*; s, H) = 0`.

    The graph's weights (and connection, potential), the source map and the model's parameters are
    trainable: `eqx.filter_grad` differentiates through the implicit adjoint of
    [`jaxstat.stationary.solve`][].

    **Arguments:**

    - `graph`: a `jaxstat.graphs.Graph`.
    - `model`: an `AbstractModel`.
    - `source`: an `AbstractSource` (`NodeSource`, `FeatureSource`).
    - `readout`: an `AbstractReadout` (default `ReIm` for complex models, `Identity` otherwise).
    - `solver`, `adjoint`, `max_steps`, `stability`: passed to `solve` (by default the layer skips
      the stability certificate, which costs more than the solve; pass a method to compute it).
    """

    graph: Graph
    model: AbstractModel
    source: AbstractSource
    readout: AbstractReadout
    solver: optx.AbstractRootFinder | optx.AbstractLeastSquaresSolver | None = None
    adjoint: optx.AbstractAdjoint | None = None
    stability: AbstractStabilityMethod | None = None
    max_steps: int = eqx.field(static=True, default=256)

    def solve(self, x: Inexact[ArrayLike, "..."], psi0=None, *, throw: bool = True) -> Solution:
        """The full [`jaxstat.stationary.Solution`][] for input `x`."""
        return solve(
            self.model,
            self.graph,
            self.source(jnp.asarray(x)),
            psi0,
            solver=self.solver,
            adjoint=self.adjoint,
            stability=self.stability,
            max_steps=self.max_steps,
            throw=throw,
        )

    def __call__(self, x: Inexact[ArrayLike, "..."], psi0=None) -> Array:
        """`rho(psi*(B x + b))`; `psi0` warm-starts the solve (keeps a branch)."""
        return self.readout(self.solve(x, psi0).value)


def feature_layer(
    graph: Graph,
    model: AbstractModel,
    d_in: int,
    d_out: int,
    *,
    key: PRNGKeyArray,
    readout: AbstractReadout | None = None,
    dtype=None,
    **kwargs,
) -> StationaryLayer:
    """A `StationaryLayer` with a `FeatureSource` initialised like `eqx.nn.Linear` (uniform in
    `+-1/sqrt(d_in)`), node features `(n, d_in) -> (n, d_out)` states."""
    dtype = dtype or jnp.result_type(float)
    kw, kb = jr.split(key)
    lim = 1 / jnp.sqrt(d_in)
    W = jr.uniform(kw, (d_out, d_in), dtype, -lim, lim)
    b = jr.uniform(kb, (d_out,), dtype, -lim, lim)
    if readout is None:
        readout = ReIm() if model.complex_states else Identity()
    return StationaryLayer(graph, model, FeatureSource(W, b), readout, **kwargs)
