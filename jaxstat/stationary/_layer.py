"""Stationary layers and networks: `x -> rho(psi*(B x + b))`."""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
import numpy as np
import optimistix as optx
from jaxtyping import Array, ArrayLike, Float, Inexact, PRNGKeyArray

from .._random import draws
from ..graphs import Graph
from ._model import AbstractModel
from ._solution import Solution
from ._solve import solve
from ._stability import AbstractStabilityMethod, AutoStability


class AbstractSource(eqx.Module):
    """The affine map from a layer's input to the source `s = B x + b` on the graph's nodes.

    Only `__call__` is required. A source that exposes its matrix (`matrix`, `bias`,
    `mixes_nodes`) gets, from these defaults, its norm (Lipschitz constant), its node-level
    coupling pattern (`jaxstat.supragraph.supragraph`) and its conversion to a resolvent layer
    (`jaxstat.equivalence`); override `node_pattern` or `norm` where the matrix does not say it.
    """

    @abc.abstractmethod
    def __call__(self, x: Inexact[Array, "..."]) -> Inexact[Array, "n ..."]: ...

    @property
    def matrix(self) -> Inexact[Array, "rows cols"] | None:
        """`B` in `s = B x + b`, or `None` if the source does not expose it. With `mixes_nodes`
        it acts on the node (leading) axis of the input, `s = tensordot(B, x, 1) + b`;
        otherwise on the feature (last) axis of every node, `s_i = B x_i + b`."""
        return None

    @property
    def bias(self) -> Inexact[Array, "..."] | None:
        """`b` in `s = B x + b`, or `None` if the source does not expose it."""
        return None

    @property
    def mixes_nodes(self) -> bool:
        """`True` when `matrix` acts on the node axis (it couples nodes), `False` when it acts on
        each node's features alone."""
        return True

    @property
    def norm(self) -> Float[Array, ""]:
        """`|B|_2`: the Lipschitz constant of `x -> B x + b` in the Frobenius norm (the matrix
        acts on one axis, so `|B x|_F <= |B|_2 |x|_F` for any number of channels).

        **Raises:** `TypeError` when the source does not expose its matrix."""
        if self.matrix is None:
            raise TypeError(f"no Lipschitz constant for the source {type(self).__name__}")
        return jnp.linalg.norm(self.matrix, 2)

    def node_pattern(self, num_inputs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The node-level coupling of the source: `(rows, cols, weights)`, an entry for every
        output node `i` that depends on input node `j`, with a weight that measures it; `None`
        when unknown (then `jaxstat.supragraph.supragraph` probes the dependence).

        Default from `matrix` (concrete): its nonzeros `B_ij` with weights `|B_ij|` when it mixes
        nodes; the pairs `(i, i)` of the `num_inputs` nodes with weight `|B|_F` when it acts
        per node (nothing if `B = 0`)."""
        B = self.matrix
        if B is None:
            return None
        B = np.asarray(B)
        if self.mixes_nodes:
            rows, cols = np.nonzero(B)
            return rows, cols, np.abs(B[rows, cols])
        norm = float(np.linalg.norm(B))
        if norm == 0:
            return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
        idx = np.arange(num_inputs)
        return idx, idx, np.full(num_inputs, norm)


class NodeSource(AbstractSource):
    """`s = B x + b` mixing nodes: `B` of shape `(n, m)` maps an input with `m` leading entries
    (shape `(m, ...)`) to the graph's `n` nodes. `b` broadcasts against `(n, ...)`."""

    B: Inexact[Array, "n m"]
    b: Inexact[Array, "n ..."]

    def __call__(self, x):
        if x.shape[0] != self.B.shape[1]:
            raise ValueError(f"input has {x.shape[0]} leading entries, B expects {self.B.shape[1]}")
        return jnp.tensordot(self.B, x, axes=(1, 0)) + self.b

    @property
    def matrix(self):
        return self.B

    @property
    def bias(self):
        return self.b


class DirectSource(AbstractSource):
    """`s = x`: the input is the source itself, shape `(n, ...)` (no parameters). For example the
    one-hot labels given to a label-propagation layer `psi* = (L_w + mu I)^{-1} Y_given`."""

    def __call__(self, x):
        return x

    @property
    def norm(self):
        return jnp.asarray(1.0)

    def node_pattern(self, num_inputs):
        idx = np.arange(num_inputs)
        return idx, idx, np.ones(num_inputs)


class FeatureSource(AbstractSource):
    """`s_i = W x_i + b` per node: a shared linear map of node features, `W` of shape
    `(d_out, d_in)`, input of shape `(n, d_in)`, source `(n, d_out)`."""

    W: Inexact[Array, "d_out d_in"]
    b: Inexact[Array, " d_out"]

    def __call__(self, x):
        if x.shape[-1] != self.W.shape[1]:
            raise ValueError(f"input has {x.shape[-1]} features, W expects {self.W.shape[1]}")
        return x @ self.W.T + self.b

    @property
    def matrix(self):
        return self.W

    @property
    def bias(self):
        return self.b

    @property
    def mixes_nodes(self) -> bool:
        return False


class AbstractReadout(eqx.Module):
    """`rho`: from the state to the layer's output.

    Only `__call__` is required; the properties tell `jaxstat.supragraph` and
    `jaxstat.equivalence` what they need (their defaults are the cautious answers)."""

    @abc.abstractmethod
    def __call__(self, psi: Inexact[Array, "n ..."]) -> Array: ...

    @property
    def is_affine(self) -> bool:
        """`True` if `rho` is real-affine in `psi` (as a map of `(Re psi, Im psi)`): a network
        whose hidden readouts all are is affine when its models are linear."""
        return False

    @property
    def is_node_local(self) -> bool:
        """`True` if output node `i` depends on state node `i` only (same node numbering): the
        supra-graph then reads the next source's node pattern without probing."""
        return False

    @property
    def lipschitz(self) -> Float[Array, ""] | float:
        """The Lipschitz constant of `rho` in the Frobenius norm.

        **Raises:** `TypeError` when unknown, `ValueError` when `rho` is not globally
        Lipschitz."""
        raise TypeError(f"no Lipschitz constant for the readout {type(self).__name__}")

    @property
    def affine_weights(self) -> tuple[Float[Array, "out in"], Float[Array, " out"]] | None:
        """For an affine readout `rho(psi)_i = W [Re psi_i, Im psi_i] + c` with parameters,
        `(W, c)`; `None` for a linear readout without parameters (`rho(0) = 0`, and `lipschitz`
        bounds it)."""
        return None


class AbstractIsometry(AbstractReadout):
    """A parameter-free readout that keeps norms, `|rho(psi)| = |psi|`, node by node: affine
    (linear), node-local, Lipschitz constant 1."""

    @property
    def is_affine(self) -> bool:
        return True

    @property
    def is_node_local(self) -> bool:
        return True

    @property
    def lipschitz(self):
        return jnp.asarray(1.0)


class Identity(AbstractIsometry):
    """`rho(psi) = psi` (real states)."""

    def __call__(self, psi):
        return psi


class ReIm(AbstractIsometry):
    """`rho(psi) = [Re psi, Im psi]`, concatenated along the last axis (`|Re psi|^2 +
    |Im psi|^2 = |psi|^2`)."""

    def __call__(self, psi):
        return jnp.concatenate([jnp.real(psi), jnp.imag(psi)], axis=-1)


class Intensity(AbstractReadout):
    """`rho(psi) = |psi|^2`."""

    def __call__(self, psi):
        return jnp.abs(psi) ** 2

    @property
    def is_node_local(self) -> bool:
        return True

    @property
    def lipschitz(self):
        raise ValueError("the Intensity readout |psi|^2 is not globally Lipschitz")


class LinearReadout(AbstractReadout):
    """`rho(psi)_i = W [Re psi_i, Im psi_i] + c` per node (`W` of shape `(out, 2 d)`; for real
    states the imaginary half is zero)."""

    W: Float[Array, "out two_d"]
    c: Float[Array, " out"]

    def __call__(self, psi):
        return ReIm()(psi) @ self.W.T + self.c

    @property
    def is_affine(self) -> bool:
        return True

    @property
    def is_node_local(self) -> bool:
        return True

    @property
    def lipschitz(self):
        return jnp.linalg.norm(self.W, 2)

    @property
    def affine_weights(self):
        return self.W, self.c


class AbstractActivation(AbstractReadout):
    """`rho(psi) = sigma(psi)` elementwise for real states, `sigma([Re psi, Im psi])` (along the
    last axis, as `ReIm`) for complex ones. `lipschitz` is the Lipschitz constant of `sigma`, hence
    of `rho` (`ReIm` is an isometry), for the complexity bounds of `jaxstat.equivalence`."""

    @abc.abstractmethod
    def sigma(self, u: Float[Array, "..."]) -> Float[Array, "..."]:
        """The scalar activation, applied elementwise."""

    @property
    @abc.abstractmethod
    def lipschitz(self) -> float:
        """`sup |sigma'|`."""

    def __call__(self, psi):
        return self.sigma(ReIm()(psi) if jnp.iscomplexobj(psi) else psi)

    @property
    def is_node_local(self) -> bool:
        return True


class Tanh(AbstractActivation):
    """`rho(psi) = tanh(psi)` (Lipschitz constant 1)."""

    def sigma(self, u):
        return jnp.tanh(u)

    @property
    def lipschitz(self) -> float:
        return 1.0


class ReLU(AbstractActivation):
    """`rho(psi) = max(psi, 0)` (Lipschitz constant 1)."""

    def sigma(self, u):
        return jax.nn.relu(u)

    @property
    def lipschitz(self) -> float:
        return 1.0


class Softplus(AbstractActivation):
    """`rho(psi) = log(1 + exp(psi))` (Lipschitz constant 1)."""

    def sigma(self, u):
        return jax.nn.softplus(u)

    @property
    def lipschitz(self) -> float:
        return 1.0


class Activation(AbstractActivation):
    """`rho(psi) = fn(psi)` for any elementwise `fn` (e.g. `jax.nn.gelu`), with its Lipschitz
    constant given by the user (`None`: unknown, and the complexity bounds refuse it).

    **Arguments:**

    - `fn`: an elementwise function of real arrays.
    - `lipschitz`: `sup |fn'|`, or `None`.
    """

    fn: Callable[[Array], Array] = eqx.field(static=True)
    lipschitz_constant: float | None = eqx.field(static=True, default=None)

    def sigma(self, u):
        return self.fn(u)

    @property
    def lipschitz(self) -> float:
        if self.lipschitz_constant is None:
            raise ValueError(
                f"the Lipschitz constant of Activation({self.fn!r}) is unknown: pass "
                "`Activation(fn, lipschitz_constant=...)`"
            )
        return float(self.lipschitz_constant)


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
    - `solver`, `adjoint`, `max_steps`: passed to `solve`.
    - `stability`: the stability certificate of each solve, as in `solve` (default
      `AutoStability()`, the same as `solve`: Lanczos on a symmetric operator read off the
      Jacobian's structure, a few dozen matrix-free products; the dense spectrum up to 2,048
      reals). An unstable state raises (or, with `layer.solve(x, throw=False)`, reports
      `RESULTS.unstable` and `solution.stability`). The certificate is not differentiated
      (its inputs are constants), so gradients are those of the state alone; under `jax.vmap`
      its fallback runs only when some element is undecided. Pass `None` to skip it
      (`solution.stability.computed` is then `False`).
    """

    graph: Graph
    model: AbstractModel
    source: AbstractSource
    readout: AbstractReadout
    solver: optx.AbstractRootFinder | optx.AbstractLeastSquaresSolver | None = None
    adjoint: optx.AbstractAdjoint | None = None
    stability: AbstractStabilityMethod | None = AutoStability()
    max_steps: int = eqx.field(static=True, default=256)

    @property
    def is_complex(self) -> bool:
        """`True` when the layer's states are complex: the model needs complex states, or the
        graph or the source map has complex parameters."""
        leaves = jtu.tree_leaves(eqx.filter((self.graph, self.source), eqx.is_inexact_array))
        return self.model.complex_states or any(jnp.iscomplexobj(x) for x in leaves)

    def solve(self, x: Inexact[ArrayLike, "..."], psi0=None, *, throw: bool = True) -> Solution:
        """The full [`jaxstat.stationary.Solution`][] for input `x`."""
        x = jnp.asarray(x)
        if jnp.iscomplexobj(x) and not self.is_complex:
            raise TypeError(
                f"this layer is real (its model, graph and source map are real), but the input "
                f"is complex ({x.dtype}); pass a real input, or give the layer complex "
                "parameters (e.g. a complex source map) to work with complex states"
            )
        return solve(
            self.model,
            self.graph,
            self.source(x),
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


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _linear_init(key, d_out, d_in, dtype, lim):
    """`W` of shape `(d_out, d_in)` and `b` of shape `(d_out,)`, uniform in `+-lim` from the keys
    `split(key)`, in one compiled program."""
    sampler = functools.partial(jr.uniform, minval=-lim, maxval=lim)
    W, b = draws(sampler, jr.split(key), [(d_out, d_in), (d_out,)], dtype)
    return W, b


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
    for name, d in (("d_in", d_in), ("d_out", d_out)):
        if not isinstance(d, int) or isinstance(d, bool) or d < 1:
            raise ValueError(f"{name} must be a positive integer, got {d!r}")
    dtype = dtype or jnp.result_type(float)
    # (The bound computed outside the program: inside, XLA would rewrite `1 / sqrt` as `rsqrt`,
    # rounded differently.)
    W, b = _linear_init(key, d_out, d_in, jnp.dtype(dtype), 1 / jnp.sqrt(d_in))
    if readout is None:
        readout = ReIm() if model.complex_states else Identity()
    return StationaryLayer(graph, model, FeatureSource(W, b), readout, **kwargs)
