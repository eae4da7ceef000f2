"""Exact conversions between resolvent, graph-stationary, supra-graph and sheaf networks.

The correspondence between stationary layers and resolvents. A linear driven-damped layer
(`kappa = 0`) solves `(gamma + i H) psi = s`, and `gamma + i H = i (H - i gamma)`, so

    psi = (gamma + i H)^{-1} s = -i (H - i gamma)^{-1} s:

the resolvent layer with `A = H`, `z = i gamma` and the factor `-i` moved into the source,
`B_res = -i B`, `b_res = -i b` (then `h = psi` exactly, and the readouts agree). Conversely a
resolvent layer with `z = a + i g`, `g != 0`, `sigma = sign(g)`, is the driven-damped layer with

    gamma = |g|,   H = sigma (A - a I),   B = sigma i B_res,   b = sigma i b_res,

since `A - z = -sigma i (gamma + i H)`; `H` becomes a graph by the admissible lift
(`hermitian_lift`). A real `z` below the spectrum of `A` is the gradient-model layer with the
quadratic potential `Quadratic(mu)`, `mu = -z`: `psi = (H + mu I)^{-1} s` with `H = A`, the same
source. Both hypotheses are strong monotonicity: `gamma > 0`, resp. `A - z` positive definite.

A network converts layer by layer; a [`jaxstat.supragraph.StationaryNetwork`][] is at once the
graph-stationary network (sequential forward pass) and the supra-graph system (its global solve
`jaxstat.supragraph.solve`), which represent the same function. Sheaf layers (fibre `k`) use
[`jaxstat.equivalence.BlockSource`][] and [`jaxstat.equivalence.FlattenFiber`][] so that their
coordinates are the resolvent layer's `n k` ones.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Inexact

from .._checks import is_concrete
from ..graphs import Graph
from ..stationary import (
    AbstractReadout,
    DrivenDampedModel,
    FeatureSource,
    GradientModel,
    NodeSource,
    Quadratic,
    StationaryLayer,
)
from ..supragraph import StationaryNetwork
from ._adapters import BlockSource, FlattenFiber, Visible
from ._hidden import hidden_node_lift
from ._lift import hermitian_lift, scalar_to_sheaf, sheaf_to_scalar
from ._resolvent import dense_solve, hermitian_part, ResolventLayer, ResolventNetwork


# ----------------------------------------------------------------------------------------------
# Stationary -> resolvent


def _linear_model(model) -> tuple[Array, complex | float, Array | None]:
    """`(z, phase, mu)` of a linear model: `B_res = phase * B`; `mu` the uniform shift of `M`."""
    if isinstance(model, DrivenDampedModel):
        if not model.is_linear:
            raise ValueError(
                "only linear driven-damped layers (concrete kappa = 0) are resolvent layers; a "
                f"Kerr/saturable layer (kappa = {model.kappa}) is not an affine map of its source"
            )
        return 1j * jnp.asarray(model.gamma), -1j, None
    if isinstance(model, GradientModel) and isinstance(model.potential, Quadratic):
        mu = jnp.asarray(model.potential.mu)
        return -mu, 1.0, mu
    raise ValueError(
        f"{type(model).__name__} with {type(getattr(model, 'potential', None)).__name__} is not a "
        "resolvent layer: only DrivenDampedModel(kappa=0) and GradientModel(Quadratic(mu)) are "
        "linear"
    )


def _unwrap_readout(readout: AbstractReadout, fiber: int, num_nodes: int):
    """`(inner readout, number of visible coordinates)`, checking the sheaf convention."""
    visible = num_nodes
    if isinstance(readout, Visible):
        visible, readout = readout.num_visible, readout.inner
        if not 0 < visible <= num_nodes:
            raise ValueError(f"Visible({visible}) on a graph of {num_nodes} nodes")
    if fiber > 1:
        if not isinstance(readout, FlattenFiber):
            raise TypeError(
                "a sheaf layer (fibre > 1) is a resolvent layer in the n k coordinates only "
                "with a FlattenFiber readout (and a BlockSource); got "
                f"{type(readout).__name__}"
            )
        readout = readout.inner
    return readout, visible * fiber


def _source(layer: StationaryLayer) -> tuple[Array, Array]:
    src, k = layer.source, layer.graph.fiber
    if isinstance(src, BlockSource):
        if src.fiber != k:
            raise ValueError(f"BlockSource has fibre {src.fiber}, the graph {k}")
        return src.B, src.b
    if isinstance(src, NodeSource):
        if k > 1:
            raise TypeError(
                "a NodeSource on a sheaf graph acts as B (x) I_k on inputs (m, k, ...): use "
                "BlockSource(kron(B, I_k), b, k) for a layer in flat n k coordinates"
            )
        return src.B, src.b
    if isinstance(src, FeatureSource):
        raise TypeError(
            "a FeatureSource mixes features per node (s_i = W x_i + b), not nodes; its resolvent "
            "form acts on n d coordinates with A (x) I_d. Convert layers with a NodeSource"
        )
    raise TypeError(f"cannot convert a layer with source {type(src).__name__}")


def _layer_to_resolvent(layer: StationaryLayer) -> ResolventLayer:
    z, phase, mu = _linear_model(layer.model)
    B, b = _source(layer)
    g = layer.graph
    readout, nv = _unwrap_readout(layer.readout, g.fiber, g.num_nodes)
    H = g.as_dense()
    N = H.shape[0]
    if b.ndim == 0 or b.shape[0] != N:
        raise ValueError(f"the source bias must be node-first, shape ({N}, ...), got {b.shape}")
    if mu is not None and is_concrete(H, mu):
        lam = float(jnp.linalg.eigvalsh(H)[0] + mu)
        if not lam > 0:
            raise ValueError(
                "the gradient layer is not strongly monotone: H + mu I has smallest eigenvalue "
                f"{lam:.6g} <= 0"
            )
    if nv < N:
        if mu is None:
            raise ValueError(
                "a driven-damped layer with hidden nodes is not a Hermitian resolvent layer: "
                "eliminating them at damping gamma gives gamma + i H_SS + H_SB (gamma + i "
                "H_BB)^{-1} H_BS, whose Hermitian part exceeds gamma (dissipation through hidden "
                "nodes)"
            )
        M = H + mu * jnp.eye(N, dtype=H.dtype)
        S, R = slice(0, nv), slice(nv, N)
        # Schur complement onto the visible coordinates: K psi_S = s_S - M_SB M_BB^{-1} s_B.
        X = dense_solve(M[R, R], jnp.concatenate([M[R, S], B[R]], axis=1))
        H = M[S, S] - M[S, R] @ X[:, :nv] - mu * jnp.eye(nv, dtype=H.dtype)
        B = B[S] - M[S, R] @ X[:, nv:]
        bb = jnp.broadcast_to(b, (N,) + b.shape[1:])
        b = bb[S] - jnp.tensordot(M[S, R], dense_solve(M[R, R], bb[R]), axes=(1, 0))
        H = hermitian_part(H)
    return ResolventLayer(H, z, phase * B, phase * b, readout)


def to_resolvent(obj: StationaryLayer | StationaryNetwork | Sequence[StationaryLayer]):
    """The resolvent layer (network) representing a linear graph-stationary (sheaf, hidden-node)
    layer (network): `A = H` (dense), `z = i gamma`, `B_res = -i B` (driven-damped) or `z = -mu`
    (`Quadratic(mu)`); hidden nodes (a `Visible` readout) are eliminated by the Schur complement,
    which also folds their sources into `B`. See the module docstring.

    **Arguments:**

    - `obj`: a `jaxstat.stationary.StationaryLayer`, a `jaxstat.supragraph.StationaryNetwork` or a
      sequence of layers. Layers must be linear (`DrivenDampedModel(kappa=0)` or
      `GradientModel(Quadratic(mu))`), with a `NodeSource` (fibre 1) or a `BlockSource`.

    **Returns:** a [`jaxstat.equivalence.ResolventLayer`][] or
    [`jaxstat.equivalence.ResolventNetwork`][] computing the same function.

    **Raises:** `ValueError` for a nonlinear or not strongly monotone layer, or a driven-damped
    layer with hidden nodes; `TypeError` for sources and readouts outside the convention.

    **Example:**

    ```python
    layer = js.StationaryLayer(graph, js.DrivenDampedModel(0.5), js.NodeSource(B, b), js.ReIm())
    res = to_resolvent(layer)          # res(x) == layer(x)
    ```
    """
    if isinstance(obj, StationaryLayer):
        return _layer_to_resolvent(obj)
    layers = obj.layers if isinstance(obj, StationaryNetwork) else obj
    return ResolventNetwork([_layer_to_resolvent(layer) for layer in layers])


# ----------------------------------------------------------------------------------------------
# Resolvent -> stationary: lift strategies


class AbstractLift(eqx.Module):
    """How a resolvent layer becomes a graph-stationary layer (the graph realising `A`)."""

    @abc.abstractmethod
    def __call__(self, layer: ResolventLayer, **kwargs) -> StationaryLayer:
        """The `StationaryLayer` computing `layer`'s function; `kwargs` go to `StationaryLayer`
        (`solver`, `adjoint`, `stability`, `max_steps`)."""


def _spectral_parameter(layer: ResolventLayer) -> tuple[Array, Array]:
    z = layer.z
    if not is_concrete(z):
        raise ValueError(
            "converting a resolvent layer needs a concrete z (its sign picks the model)"
        )
    return jnp.real(z), jnp.imag(z)


class AdmissibleLift(AbstractLift):
    """The admissible lift of `A` (see [`jaxstat.equivalence.hermitian_lift`][]): the graph has an
    edge per non-zero off-diagonal (block) of `A`.

    `Im z != 0`: a `DrivenDampedModel(gamma=|Im z|)` layer on the lift of `sign(Im z) (A - Re z)`
    with source `sign(Im z) i (B x + b)`. Real `z`: a `GradientModel(Quadratic(-z))` layer on the
    lift of `A`. Fibre `k > 1` gives a sheaf layer (`BlockSource`, `FlattenFiber`).

    **Arguments:** `fiber`, `atol`, `rtol`, `project`: as in `hermitian_lift`.
    """

    fiber: int = eqx.field(static=True, default=1)
    atol: float = eqx.field(static=True, default=0.0)
    rtol: float | None = eqx.field(static=True, default=None)
    project: bool = eqx.field(static=True, default=False)

    def __call__(self, layer, **kwargs):
        re, im = _spectral_parameter(layer)
        A = hermitian_part(layer.A)
        N = A.shape[0]
        if float(im) != 0:
            sigma = 1.0 if float(im) > 0 else -1.0
            H = sigma * (A - re * jnp.eye(N, dtype=A.dtype))
            model = DrivenDampedModel(gamma=jnp.abs(im))
            phase = sigma * 1j
        else:
            H, model, phase = A, GradientModel(Quadratic(-re)), 1.0
        graph = hermitian_lift(H, self.fiber, atol=self.atol, rtol=self.rtol, project=self.project)
        B, b = phase * layer.B, phase * layer.b
        if self.fiber == 1:
            source, readout = NodeSource(B, b), layer.readout
        else:
            source, readout = BlockSource(B, b, self.fiber), FlattenFiber(layer.readout)
        return StationaryLayer(graph, model, source, readout, **kwargs)


class HiddenNodeLift(AbstractLift):
    """The sparse lift with hidden nodes (see [`jaxstat.equivalence.hidden_node_lift`][]) for a
    real `z` below the spectrum: a `GradientModel(Quadratic(mu = -z))` layer on a graph whose Kron
    reduction at shift `mu` is `A + mu I`, with the source zero on the hidden nodes and a
    `Visible` readout.

    A driven-damped layer (`Im z != 0`) has no hidden-node lift (see `hidden_node_lift`): a
    `ValueError` says so.

    **Arguments:** `base`, `rtol`: as in `hidden_node_lift`.
    """

    base: Graph | Array | None = None
    rtol: float | None = eqx.field(static=True, default=None)

    def __call__(self, layer, **kwargs):
        re, im = _spectral_parameter(layer)
        if float(im) != 0:
            raise ValueError(
                "a resolvent layer with Im z != 0 (a driven-damped layer) has no exact hidden-node "
                "lift: eliminating hidden nodes at damping gamma adds the dissipative term "
                "sum_k gamma x_k x_k^H / (gamma^2 + tau_k^2) to gamma; use AdmissibleLift, or a "
                "real z below the spectrum (a gradient-model layer)"
            )
        mu = -re
        A = hermitian_part(layer.A)
        m = A.shape[0]
        graph = hidden_node_lift(A, base=self.base, shift=float(mu), rtol=self.rtol)
        hidden = graph.num_nodes - m
        B = jnp.concatenate([layer.B, jnp.zeros((hidden,) + layer.B.shape[1:], layer.B.dtype)])
        b = jnp.broadcast_to(layer.b, (m,) + layer.b.shape[1:])
        b = jnp.concatenate([b, jnp.zeros((hidden,) + b.shape[1:], b.dtype)])
        return StationaryLayer(
            graph,
            GradientModel(Quadratic(mu)),
            NodeSource(B, b),
            Visible(m, layer.readout),
            **kwargs,
        )


def to_stationary(
    obj: ResolventLayer | ResolventNetwork,
    lift: AbstractLift | Sequence[AbstractLift] = AdmissibleLift(),
    **kwargs,
) -> StationaryLayer | StationaryNetwork:
    """The graph-stationary layer (network) computing the same function as a resolvent layer
    (network), by a lift of each `A_l` to a graph. See the module docstring for the model.

    **Arguments:**

    - `obj`: a [`jaxstat.equivalence.ResolventLayer`][] or `ResolventNetwork` (concrete `z`).
    - `lift`: an `AbstractLift` (`AdmissibleLift(fiber=k)`, `HiddenNodeLift()`), or one per layer.
    - `**kwargs`: passed to each `StationaryLayer` (`solver`, `adjoint`, `stability`, ...).

    **Returns:** a `jaxstat.stationary.StationaryLayer` or a `jaxstat.supragraph.StationaryNetwork`
    (whose global solve `jaxstat.supragraph.solve` is the supra-graph system).

    **Raises:** `ValueError` when a hypothesis fails (see the lifts).

    **Example:**

    ```python
    net = to_stationary(resolvent_network)            # admissible lift, one edge per entry
    jaxstat.supragraph.solve(net, x).value            # == resolvent_network.states(x)
    ```
    """
    if isinstance(obj, ResolventLayer):
        if not isinstance(lift, AbstractLift):
            raise TypeError("pass one AbstractLift for one layer")
        return lift(obj, **kwargs)
    if not isinstance(obj, ResolventNetwork):
        raise TypeError(f"expected a ResolventLayer or ResolventNetwork, got {type(obj).__name__}")
    lifts = [lift] * obj.num_layers if isinstance(lift, AbstractLift) else list(lift)
    if len(lifts) != obj.num_layers:
        raise ValueError(f"need {obj.num_layers} lifts, got {len(lifts)}")
    return StationaryNetwork([f(layer, **kwargs) for f, layer in zip(lifts, obj.layers)])


# ----------------------------------------------------------------------------------------------
# Sheaf <-> scalar layers


def sheaf_layer_to_scalar(obj: StationaryLayer | StationaryNetwork):
    """A sheaf layer (fibre `k`, `BlockSource`, `FlattenFiber` readout) as the scalar-graph layer
    on `n k` nodes with the same function ([`jaxstat.equivalence.sheaf_to_scalar`][] graph,
    `NodeSource` with the same `B`, the inner readout). Scalar layers are returned unchanged;
    networks convert layer by layer."""
    if isinstance(obj, StationaryNetwork):
        return StationaryNetwork([sheaf_layer_to_scalar(layer) for layer in obj.layers])
    g = obj.graph
    if g.fiber == 1:
        return obj
    B, b = _source(obj)
    readout, nv = _unwrap_readout(obj.readout, g.fiber, g.num_nodes)
    if nv != g.num_nodes * g.fiber:
        readout = Visible(nv, readout)
    return dataclasses.replace(
        obj, graph=sheaf_to_scalar(g), source=NodeSource(B, b), readout=readout
    )


def scalar_layer_to_sheaf(obj: StationaryLayer | StationaryNetwork, fiber: int, **kwargs):
    """Inverse of [`jaxstat.equivalence.sheaf_layer_to_scalar`][]: groups the `n k` nodes of a
    scalar layer into `n` nodes with fibre `k` ([`jaxstat.equivalence.scalar_to_sheaf`][], which
    raises when the blocks are not admissible); `kwargs` go to `scalar_to_sheaf`."""
    if isinstance(obj, StationaryNetwork):
        return StationaryNetwork([scalar_layer_to_sheaf(x, fiber, **kwargs) for x in obj.layers])
    B, b = _source(obj)
    readout, nv = _unwrap_readout(obj.readout, 1, obj.graph.num_nodes)
    if nv % fiber:
        raise ValueError(f"{nv} visible nodes cannot be grouped by {fiber}")
    readout = FlattenFiber(readout)
    if nv != obj.graph.num_nodes:
        readout = Visible(nv // fiber, readout)
    graph = scalar_to_sheaf(obj.graph, fiber, **kwargs)
    return dataclasses.replace(obj, graph=graph, source=BlockSource(B, b, fiber), readout=readout)


def dense_hamiltonian(graph: Graph) -> Inexact[Array, "nk nk"]:
    """The inverse of the admissible lift: the dense Hermitian `H = L_{w,U} + diag(V)` of a graph
    (`graph.as_dense()`), shape `(n k, n k)`."""
    return graph.as_dense()
