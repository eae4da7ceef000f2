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
from ..stationary import DrivenDampedModel, GradientModel, NodeSource, Quadratic, StationaryLayer
from ..supragraph import StationaryNetwork
from ._adapters import BlockSource, flat_readout, FlattenFiber, Visible
from ._hidden import hidden_node_lift
from ._lift import hermitian_lift, scalar_to_sheaf, sheaf_to_scalar
from ._resolvent import dense_solve, hermitian_part, ResolventLayer, ResolventNetwork


# ----------------------------------------------------------------------------------------------
# Stationary -> resolvent


def _node_source(layer: StationaryLayer) -> tuple[Array, Array]:
    """`(B, b)` of the layer's source in flat coordinates, `B` of shape `(n k, m)`."""
    src, g = layer.source, layer.graph
    name = type(src).__name__
    if src.matrix is None or src.bias is None:
        raise TypeError(f"cannot convert a layer with source {name}: it does not expose B and b")
    if not src.mixes_nodes:
        raise TypeError(
            f"a {name} mixes features per node (s_i = W x_i + b), not nodes; its resolvent "
            "form acts on n d coordinates with A (x) I_d. Convert layers with a NodeSource"
        )
    B, b, k = src.matrix, src.bias, g.fiber
    if B.shape[0] != g.num_nodes * k:
        if k > 1 and B.shape[0] == g.num_nodes:
            raise TypeError(
                f"a {name} with B of shape {B.shape} on a sheaf graph acts as B (x) I_k on "
                "inputs (m, k, ...): use BlockSource(kron(B, I_k), b, k) for a layer in flat "
                "n k coordinates"
            )
        raise ValueError(
            f"the {name}'s B has shape {B.shape}, but the graph has {g.num_nodes} nodes of "
            f"fibre {k}"
        )
    return B, b


def _layer_to_resolvent(layer: StationaryLayer) -> ResolventLayer:
    # F = c (H - z) psi - s: psi = (H - z)^{-1} (s / c). A real z is a shift below the spectrum.
    c, z = layer.model.linear_part
    phase = 1 / c
    mu = None if jnp.iscomplexobj(z) else -z
    B, b = _node_source(layer)
    g = layer.graph
    readout, nv = flat_readout(layer.readout, g.num_nodes, g.fiber)
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


def to_resolvent(stationary: StationaryLayer | StationaryNetwork | Sequence[StationaryLayer]):
    """The resolvent layer (network) representing a linear graph-stationary (sheaf, hidden-node)
    layer (network): `A = H` (dense), `z = i gamma`, `B_res = -i B` (driven-damped) or `z = -mu`
    (`Quadratic(mu)`); hidden nodes (a `Visible` readout) are eliminated by the Schur complement,
    which also folds their sources into `B`. See the module docstring.

    **Arguments:**

    - `stationary`: a `jaxstat.stationary.StationaryLayer`, a
      `jaxstat.supragraph.StationaryNetwork` or a sequence of layers. Layers must be linear
      (`model.is_linear`: `DrivenDampedModel(kappa=0)`, `GradientModel(Quadratic(mu))`, or any
      model giving its `linear_part`), with a source that exposes its node matrix `B`
      (`NodeSource` on fibre 1, `BlockSource`).

    **Returns:** a [`jaxstat.equivalence.ResolventLayer`][] or
    [`jaxstat.equivalence.ResolventNetwork`][] computing the same function.

    **Raises:** `ValueError` for a nonlinear or not strongly monotone layer, or a driven-damped
    layer with hidden nodes; `TypeError` for sources and readouts outside the convention.

    **Example:**

    ```python
    import jax.numpy as jnp
    import jax.random as jr
    import jaxstat.graphs as jg
    import jaxstat.stationary as js
    from jaxstat.equivalence import to_resolvent

    graph = jg.random_graph(jr.key(0), 20, 60)
    B, b = jr.normal(jr.key(1), (20, 3)), jnp.zeros((20, 1))
    layer = js.StationaryLayer(graph, js.DrivenDampedModel(0.5), js.NodeSource(B, b), js.ReIm())
    res = to_resolvent(layer)          # res(x) == layer(x)
    ```
    """
    if isinstance(stationary, StationaryLayer):
        return _layer_to_resolvent(stationary)
    layers = stationary.layers if isinstance(stationary, StationaryNetwork) else stationary
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
    resolvent: ResolventLayer | ResolventNetwork,
    lift: AbstractLift | Sequence[AbstractLift] = AdmissibleLift(),
    **kwargs,
) -> StationaryLayer | StationaryNetwork:
    """The graph-stationary layer (network) computing the same function as a resolvent layer
    (network), by a lift of each `A_l` to a graph. See the module docstring for the model.

    **Arguments:**

    - `resolvent`: a [`jaxstat.equivalence.ResolventLayer`][] or `ResolventNetwork` (concrete `z`).
    - `lift`: an `AbstractLift` (`AdmissibleLift(fiber=k)`, `HiddenNodeLift()`), or one per layer.
    - `**kwargs`: passed to each `StationaryLayer` (`solver`, `adjoint`, `stability`, ...).

    **Returns:** a `jaxstat.stationary.StationaryLayer` or a `jaxstat.supragraph.StationaryNetwork`
    (whose global solve `jaxstat.supragraph.solve` is the supra-graph system).

    **Raises:** `ValueError` when a hypothesis fails (see the lifts).

    **Example:**

    ```python
    import jax.numpy as jnp
    import jax.random as jr
    import jaxstat
    import jaxstat.stationary as js
    from jaxstat.equivalence import ResolventLayer, ResolventNetwork, to_stationary

    A = jnp.array([[0.0, 1.0, 0.5], [1.0, 0.0, 0.2], [0.5, 0.2, 0.0]])
    resolvent_network = ResolventNetwork(
        [ResolventLayer(A, 0.3 + 1.0j, jnp.eye(3), jnp.zeros((3, 1)), readout=js.ReIm())]
    )
    x = jr.normal(jr.key(0), (3, 2))
    net = to_stationary(resolvent_network)            # admissible lift, one edge per entry
    jaxstat.supragraph.solve(net, x).value            # == resolvent_network.states(x)
    ```
    """
    if isinstance(resolvent, ResolventLayer):
        if not isinstance(lift, AbstractLift):
            raise TypeError("pass one AbstractLift for one layer")
        return lift(resolvent, **kwargs)
    if not isinstance(resolvent, ResolventNetwork):
        raise TypeError(
            f"expected a ResolventLayer or ResolventNetwork, got {type(resolvent).__name__}"
        )
    lifts = [lift] * resolvent.num_layers if isinstance(lift, AbstractLift) else list(lift)
    if len(lifts) != resolvent.num_layers:
        raise ValueError(f"need {resolvent.num_layers} lifts, got {len(lifts)}")
    return StationaryNetwork([f(layer, **kwargs) for f, layer in zip(lifts, resolvent.layers)])


# ----------------------------------------------------------------------------------------------
# Sheaf <-> scalar layers


def sheaf_layer_to_scalar(stationary: StationaryLayer | StationaryNetwork):
    """A sheaf layer (fibre `k`, `BlockSource`, `FlattenFiber` readout) as the scalar-graph layer
    on `n k` nodes with the same function ([`jaxstat.equivalence.sheaf_to_scalar`][] graph,
    `NodeSource` with the same `B`, the inner readout). Scalar layers are returned unchanged;
    networks convert layer by layer."""
    if isinstance(stationary, StationaryNetwork):
        return StationaryNetwork([sheaf_layer_to_scalar(layer) for layer in stationary.layers])
    g = stationary.graph
    if g.fiber == 1:
        return stationary
    B, b = _node_source(stationary)
    readout, nv = flat_readout(stationary.readout, g.num_nodes, g.fiber)
    if nv != g.num_nodes * g.fiber:
        readout = Visible(nv, readout)
    return dataclasses.replace(
        stationary, graph=sheaf_to_scalar(g), source=NodeSource(B, b), readout=readout
    )


def scalar_layer_to_sheaf(stationary: StationaryLayer | StationaryNetwork, fiber: int, **kwargs):
    """Inverse of [`jaxstat.equivalence.sheaf_layer_to_scalar`][]: groups the `n k` nodes of a
    scalar layer into `n` nodes with fibre `k` ([`jaxstat.equivalence.scalar_to_sheaf`][], which
    raises when the blocks are not admissible); `kwargs` go to `scalar_to_sheaf`."""
    if isinstance(stationary, StationaryNetwork):
        return StationaryNetwork(
            [scalar_layer_to_sheaf(x, fiber, **kwargs) for x in stationary.layers]
        )
    B, b = _node_source(stationary)
    readout, nv = flat_readout(stationary.readout, stationary.graph.num_nodes, 1)
    if nv % fiber:
        raise ValueError(f"{nv} visible nodes cannot be grouped by {fiber}")
    readout = FlattenFiber(readout)
    if nv != stationary.graph.num_nodes:
        readout = Visible(nv // fiber, readout)
    graph = scalar_to_sheaf(stationary.graph, fiber, **kwargs)
    return dataclasses.replace(
        stationary, graph=graph, source=BlockSource(B, b, fiber), readout=readout
    )


def dense_hamiltonian(graph: Graph) -> Inexact[Array, "nk nk"]:
    """The inverse of the admissible lift: the dense Hermitian `H = L_{w,U} + diag(V)` of a graph
    (`graph.as_dense()`), shape `(n k, n k)`."""
    return graph.as_dense()
