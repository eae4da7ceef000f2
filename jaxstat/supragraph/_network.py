"""Stationary networks: a stack of stationary layers, and the global system they define.

A network of `L` stationary layers maps an input `x` to the states `Psi = (psi_1, ..., psi_L)`:

    s_l = B_l rho_{l-1}(psi_{l-1}) + b_l,      psi_0 = x,  rho_0 = identity,
    F_l(psi_l; s_l, H_l) = 0                   (layer l's stationarity residual),

and to the output `rho_L(psi_L)`. Computed layer by layer this is the sequential forward pass;
read as one equation in all the states at once it is the global system on the supra-graph,

    F(Psi) = (F_1(psi_1; s_1(x)), F_2(psi_2; s_2(psi_1)), ..., F_L(psi_L; s_L(psi_{L-1}))) = 0,

whose Jacobian `J = dF/dPsi` is block lower-triangular: diagonal blocks `dF_l/dpsi_l` (the layers'
own Jacobians, sparse like `H_l`), sub-diagonal blocks `dF_l/dpsi_{l-1} = -B_l drho_{l-1}`.

Complex states enter real solvers packed as `(Re psi, Im psi)` pairs (`pack_states`); every
operator here (`jacobian`) acts on packed states, so that transposes are the real adjoints
`J^H` with respect to `Re <., .>`.
"""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
import lineax as lx
from jaxtyping import Array, ArrayLike, Inexact, PRNGKeyArray, PyTree

from ..graphs import Graph
from ..stationary import (
    AbstractModel,
    AbstractReadout,
    feature_layer,
    Solution as LayerSolution,
    StationaryLayer,
)


States = tuple[Inexact[Array, "..."], ...]
"""The states `Psi = (psi_1, ..., psi_L)` of a network, one node-first array per layer."""


def pack_complex(tree: PyTree[Array]) -> PyTree[Array]:
    """Every complex leaf of a pytree as a `(Re, Im)` pair, real leaves unchanged."""
    return jtu.tree_map(lambda v: (jnp.real(v), jnp.imag(v)) if jnp.iscomplexobj(v) else v, tree)


def pack_states(states: States) -> PyTree[Array]:
    """Complex states as `(Re psi, Im psi)` pairs, real ones unchanged: the real vector space on
    which the global system, its Jacobian and its adjoint act."""
    return pack_complex(tuple(states))


def unpack_states(y: PyTree[Array]) -> States:
    """Inverse of [`jaxstat.supragraph.pack_states`][]."""
    return tuple(p[0] + 1j * p[1] if isinstance(p, tuple) else p for p in y)


class StationaryNetwork(eqx.Module):
    """A stack of stationary layers, `s_l = B_l rho_{l-1}(psi_{l-1}) + b_l`, `psi_0 = x`.

    Each layer is a [`jaxstat.stationary.StationaryLayer`][] (graph, model, source `B_l, b_l`,
    readout `rho_l`). Layer `l`'s source reads the readout of layer `l - 1` (layer 1 reads `x`).
    Two ways to evaluate the same function:

    - sequentially, `states(x)`: one stationary solve per layer, each differentiated by its own
      implicit adjoint (this is what `jax.grad` of `network(x)` backpropagates through);
    - globally, [`jaxstat.supragraph.solve`][]: one solve of `F(Psi) = 0` over all layers, with
      `residual` giving `F` and `jacobian` its block lower-triangular Jacobian.

    **Arguments:**

    - `layers`: a non-empty sequence of `StationaryLayer`s.

    **Example:**

    ```python
    import jax.random as jr
    import jaxstat
    import jaxstat.stationary as js
    from jaxstat.supragraph import feature_network

    g = jaxstat.graphs.random_graph(jr.key(0), 50, 150)
    net = feature_network(g, js.DrivenDampedModel(gamma=1.0, kappa=0.3), [4, 8, 8], key=jr.key(1))
    x = jr.normal(jr.key(2), (50, 4))
    y = net(x)                     # x of shape (50, 4): sequential forward pass, ReIm readout
    psi = net.states(x)            # (psi_1, psi_2), complex (50, 8) each
    net.residual(psi, x)           # (F_1, F_2), ~ 0
    ```
    """

    layers: tuple[StationaryLayer, ...]

    def __init__(self, layers: Sequence[StationaryLayer]):
        layers = tuple(layers)
        if not layers:
            raise ValueError("a StationaryNetwork needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, StationaryLayer):
                raise TypeError(
                    f"layer {i} is a {type(layer).__name__}, expected a "
                    "jaxstat.stationary.StationaryLayer"
                )
        self.layers = layers

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def is_linear(self) -> bool:
        """`True` when `F` is provably affine in `Psi`: every model is linear (`model.is_linear`:
        a `Quadratic` potential, or driven-damped with a concrete `kappa = 0`) and every readout
        but the last is real-affine (`readout.is_affine`: `Identity`, `ReIm`, `LinearReadout`).
        Sources are affine by definition."""
        return all(layer.model.is_linear for layer in self.layers) and all(
            layer.readout.is_affine for layer in self.layers[:-1]
        )

    # -- the sequential forward pass ---------------------------------------------------------

    def layer_solutions(
        self, x: Inexact[ArrayLike, "..."], states0: States | None = None, *, throw: bool = True
    ) -> tuple[LayerSolution, ...]:
        """The sequential forward pass: each layer's [`jaxstat.stationary.Solution`][] in turn,
        `psi_l = psi*(s_l)` with `s_l` computed from `psi_{l-1}`. `states0` warm-starts each
        layer (keeps a branch)."""
        states0 = self._check_states0(states0)
        h = jnp.asarray(x)
        self.state_structure(h)  # shape errors before any solve
        sols = []
        for i, layer in enumerate(self.layers):
            sol = layer.solve(h, None if states0 is None else states0[i], throw=throw)
            sols.append(sol)
            h = layer.readout(sol.value)
        return tuple(sols)

    def states(self, x: Inexact[ArrayLike, "..."], states0: States | None = None) -> States:
        """`Psi = (psi_1, ..., psi_L)` by the sequential forward pass."""
        return tuple(sol.value for sol in self.layer_solutions(x, states0))

    def output(self, states: States) -> Array:
        """The network's output `rho_L(psi_L)`."""
        return self.layers[-1].readout(states[-1])

    def __call__(self, x: Inexact[ArrayLike, "..."], states0: States | None = None) -> Array:
        """`rho_L(psi_L)` by the sequential forward pass; differentiable (implicit adjoints)."""
        return self.output(self.states(x, states0))

    # -- the global system ---------------------------------------------------------------------

    def sources(self, states: States, x: Inexact[ArrayLike, "..."]) -> States:
        """`(s_1, ..., s_L)`, `s_l = B_l rho_{l-1}(psi_{l-1}) + b_l`, `psi_0 = x`."""
        self._check_structure(states)
        h = jnp.asarray(x)
        out = []
        for i, (layer, psi) in enumerate(zip(self.layers, states)):
            _check_source(layer, h, i)
            out.append(layer.source(h))
            h = layer.readout(psi)
        return tuple(out)

    def residual(self, states: States, x: Inexact[ArrayLike, "..."]) -> States:
        """The global residual `F(Psi) = (F_1(psi_1; s_1), ..., F_L(psi_L; s_L))`, each
        `F_l` layer `l`'s stationarity residual with its source computed from `psi_{l-1}`."""
        sources = self.sources(states, x)
        return tuple(
            layer.model.residual(psi, s, layer.graph.assemble()).astype(psi.dtype)
            for layer, psi, s in zip(self.layers, states, sources)
        )

    def packed_residual(self, y: PyTree[Array], x: Inexact[ArrayLike, "..."]) -> PyTree[Array]:
        """`F` on packed states: `pack_states(residual(unpack_states(y), x))`."""
        return pack_states(self.residual(unpack_states(y), x))

    def jacobian(
        self, states: States, x: Inexact[ArrayLike, "..."], *, linearise: bool = True
    ) -> lx.AbstractLinearOperator:
        """The Jacobian `J = dF/dPsi` at `states` as one matrix-free `lineax` operator on packed
        states (see [`jaxstat.supragraph.pack_states`][]); block lower-triangular.

        `J.mv(v)` is a Jacobian-vector product (one sparse pass per layer), `J.T.mv(u)` a
        vector-Jacobian product, so `lx.linear_solve(J.T, g)` is the adjoint solve. With
        `linearise=True` the primal computation is cached (`lineax.linearise`).
        """
        op = lx.JacobianLinearOperator(
            lambda y, args: args[0].packed_residual(y, args[1]),
            pack_states(states),
            (self, jnp.asarray(x)),
        )
        return lx.linearise(op) if linearise else op

    def state_structure(self, x: Inexact[ArrayLike, "..."]) -> tuple[jax.ShapeDtypeStruct, ...]:
        """Shapes and dtypes of `(psi_1, ..., psi_L)` for input `x` (no computation).

        Raises `ValueError`/`TypeError` when a layer's source does not accept the previous
        layer's readout, or a real-only model would get complex states."""

        def zeros(x):
            h, out = x, []
            for i, layer in enumerate(self.layers):
                _check_source(layer, h, i)
                s = layer.source(h)
                H = layer.graph.assemble()
                _check_nodes(layer, s, i)
                psi = jnp.zeros(s.shape, layer.model.state_dtype(H, s))
                out.append(psi)
                h = layer.readout(psi)
            return tuple(out)

        return jax.eval_shape(zeros, jnp.asarray(x))

    def zeros(self, x: Inexact[ArrayLike, "..."]) -> States:
        """All-zero states shaped like `(psi_1, ..., psi_L)`."""
        return tuple(jnp.zeros(s.shape, s.dtype) for s in self.state_structure(x))

    # -- checks -------------------------------------------------------------------------------

    def _check_structure(self, states) -> None:
        if not isinstance(states, tuple | list) or len(states) != self.num_layers:
            raise ValueError(
                f"states must be a tuple of {self.num_layers} arrays (one per layer), got "
                f"{type(states).__name__}"
                + (f" of length {len(states)}" if isinstance(states, tuple | list) else "")
            )

    def _check_states0(self, states0):
        if states0 is None:
            return None
        self._check_structure(states0)
        return tuple(jnp.asarray(p) for p in states0)


def _check_source(layer: StationaryLayer, h, i: int) -> None:
    """A clear message when layer `i`'s source cannot read its input `h` (for sources that
    expose their matrix; any other source raises its own error)."""
    src, shape = layer.source, jnp.shape(h)
    B = src.matrix
    if B is None:
        return
    axis, entries = (0, "leading entries") if src.mixes_nodes else (-1, "features")
    if len(shape) == 0 or shape[axis] != B.shape[1]:
        what = "the input x" if i == 0 else f"layer {i - 1}'s readout"
        raise ValueError(
            f"layer {i}'s {type(src).__name__} has a matrix of shape {B.shape} (expects "
            f"{B.shape[1]} {entries}), but {what} has shape {shape}"
        )


def _check_nodes(layer: StationaryLayer, s, i: int) -> None:
    n, k = layer.graph.num_nodes, layer.graph.fiber
    lead = (n,) if k == 1 else (n, k)
    if s.shape[: len(lead)] != lead:
        raise ValueError(
            f"layer {i}'s source has shape {s.shape}, but its graph needs node-first sources "
            f"of shape ({', '.join(map(str, lead))}, ...)"
        )


def feature_network(
    graph: Graph | Sequence[Graph],
    model: AbstractModel | Sequence[AbstractModel],
    features: Sequence[int],
    *,
    key: PRNGKeyArray,
    readout: AbstractReadout | None = None,
    dtype=None,
    **kwargs,
) -> StationaryNetwork:
    """A network of feature layers (`s_{l,i} = W_l rho(psi_{l-1})_i + b_l` per node, see
    [`jaxstat.stationary.feature_layer`][]), with state widths `features[1:]` on input features
    `features[0]`.

    **Arguments:**

    - `graph`: one `Graph` shared by all layers, or one per layer (same number of nodes).
    - `model`: one model for all layers, or one per layer.
    - `features`: `[d_in, d_1, ..., d_L]`; layer `l`'s input width is the width of layer
      `l - 1`'s readout (`2 d_{l-1}` for `ReIm`).
    - `key`: PRNG key for the source weights.
    - `readout`: the readout of every layer (default `ReIm` for complex models, `Identity`
      otherwise).
    - `dtype`: real dtype of the weights (default float32, or float64 with x64 enabled).
    - `**kwargs`: passed to each `StationaryLayer` (`solver`, `adjoint`, `stability`, ...).

    **Returns:** a [`jaxstat.supragraph.StationaryNetwork`][].
    """
    features = list(features)
    L = len(features) - 1
    if L < 1:
        raise ValueError(f"features must list the input width and >= 1 layer, got {features}")
    graphs = [graph] * L if isinstance(graph, Graph) else list(graph)
    models = [model] * L if isinstance(model, AbstractModel) else list(model)
    if len(graphs) != L or len(models) != L:
        raise ValueError(f"need {L} graphs and models, got {len(graphs)} and {len(models)}")
    layers, d_in = [], features[0]
    for i, (g, m, k) in enumerate(zip(graphs, models, jr.split(key, L))):
        layer = feature_layer(
            g, m, d_in, features[i + 1], key=k, readout=readout, dtype=dtype, **kwargs
        )
        layers.append(layer)
        H = eqx.filter_eval_shape(g.assemble)  # its dtype only: nothing computed
        psi = jax.ShapeDtypeStruct((g.num_nodes, features[i + 1]), m.state_dtype(H, layer.source.W))
        d_in = jax.eval_shape(layer.readout, psi).shape[-1]
    return StationaryNetwork(layers)
