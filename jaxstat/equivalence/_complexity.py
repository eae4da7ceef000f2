"""Complexity figures of a network from its sparse geometry.

For a graph Hamiltonian `H = L_{w,U} + diag(V)` with weighted degrees `deg_i = sum_{j ~ i} w_ij`:

- parameters: `E` weights, `E` phases (U(1)), `E dim U(k)` (`k^2`, or `k(k-1)/2` for O(k)) for a
  block connection, `n` potentials, against `N^2` (complex) or `N(N+1)/2` (real) for a dense
  Hermitian `A` of size `N = n k`;
- spectral bound (block Gershgorin, `|U_ij| = 1`):
  `|H|_2 <= max_i (|deg_i + V_i| + deg_i) <= 2 max_i deg_i + max_i |V_i|`;
- strong monotonicity `m` of a layer: `Re <F(psi) - F(phi), psi - phi> >= m |psi - phi|^2`, so
  `|psi*(s) - psi*(s')| <= |s - s'| / m`: `m = gamma` for the linear driven-damped model (since
  `Re <(gamma + i H) v, v> = gamma |v|^2`), `m = lambda_min(H) + mu >= min_i V_i + mu` for the
  gradient model with a `mu`-strongly convex potential (`L >= 0`), `m = |Im z|` (or
  `lambda_min(A) - z` for real `z`) for a resolvent layer;
- Lipschitz bound of a layer `x -> rho(psi*(B x + b))`: `Lip(rho) |B|_2 / m`, and of a network the
  product over its layers, `prod_l Lip(rho_l) |B_l|_2 / m_l`.

All norms are Euclidean (Frobenius over nodes and channels); a source `B` acts on the node axis,
so `|B x|_F <= |B|_2 |x|_F` for any number of channels.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jaxtyping import Array, Float

from .._checks import is_concrete
from ..graphs import BlockConnection, Graph, PhaseConnection
from ..stationary import (
    DrivenDampedModel,
    FeatureSource,
    GradientModel,
    Identity,
    Intensity,
    LinearReadout,
    NodeSource,
    Quadratic,
    Quartic,
    ReIm,
    ReLUPotential,
    StationaryLayer,
)
from ..supragraph import StationaryNetwork
from ._adapters import BlockSource, FlattenFiber, Visible
from ._resolvent import hermitian_part, ResolventLayer, ResolventNetwork


# ----------------------------------------------------------------------------------------------
# Graph geometry


def max_degree(graph: Graph) -> int:
    """The maximum number of distinct neighbours of a node (the unweighted degree of the sparsity
    pattern of `H`; parallel edges count once)."""
    s, r = np.asarray(graph.senders), np.asarray(graph.receivers)
    if s.size == 0:
        return 0
    n = graph.num_nodes
    pairs = np.unique(np.concatenate([s * n + r, r * n + s]))
    return int(np.bincount(pairs // n, minlength=n).max())


def _diagonal(graph: Graph) -> Array:
    d = graph.degree()
    return d if graph.potential is None else d + graph.potential


def spectral_bound(
    obj: Graph | StationaryLayer | ResolventLayer, *, coarse: bool = False
) -> Float[Array, ""]:
    """An upper bound on the spectral norm `|H|_2` of a layer's operator.

    Graphs: `max_i (|deg_i + V_i| + deg_i)` (block Gershgorin; `coarse=True`: the weaker
    `2 max_i deg_i + max_i |V_i|`). Resolvent layers: `max_i sum_j |A_ij|` (Gershgorin).
    Differentiable, jit-compatible. Tight for a bipartite regular graph with `V = 0`.
    """
    if isinstance(obj, StationaryLayer):
        obj = obj.graph
    if isinstance(obj, ResolventLayer):
        return jnp.max(jnp.sum(jnp.abs(hermitian_part(obj.A)), axis=1))
    if not isinstance(obj, Graph):
        raise TypeError(f"expected a Graph or a layer, got {type(obj).__name__}")
    deg = obj.degree()
    if coarse:
        v = 0.0 if obj.potential is None else jnp.max(jnp.abs(obj.potential))
        return 2 * jnp.max(deg, initial=0.0) + v
    return jnp.max(jnp.abs(_diagonal(obj)) + deg, initial=0.0)


# ----------------------------------------------------------------------------------------------
# Strong monotonicity and Lipschitz constants


def _strong_convexity(potential) -> Array:
    if isinstance(potential, Quadratic):
        return jnp.asarray(potential.mu)
    if isinstance(potential, Quartic):
        return jnp.asarray(potential.mu)
    if isinstance(potential, ReLUPotential):
        return jnp.asarray(1.0)
    raise ValueError(
        f"{type(potential).__name__} is not strongly convex: the gradient layer has no "
        "strong-monotonicity constant (several stationary states can coexist)"
    )


def _require_positive(m: Array, what: str) -> Array:
    if is_concrete(m):
        if not float(m) > 0:
            raise ValueError(
                f"{what} is not strongly monotone: the bound on its modulus is {float(m):.6g} <= 0"
            )
        return m
    return eqx.error_if(m, ~(m > 0), f"{what} is not strongly monotone")


def monotonicity(
    layer: StationaryLayer | ResolventLayer, *, exact: bool = False
) -> Float[Array, ""]:
    """The strong-monotonicity modulus `m` of a layer's stationarity map (module docstring), so
    that `|psi*(s) - psi*(s')| <= |s - s'| / m`.

    - `DrivenDampedModel(gamma, kappa=0)`: `gamma`.
    - `GradientModel` with a potential of strong convexity `mu` (`Quadratic(mu)`, `Quartic(mu, .)`,
      `ReLUPotential`: 1): `min_i V_i + mu` (`exact=True`: `lambda_min(H) + mu` from the dense
      matrix, for small graphs and hidden-node lifts, whose hidden potentials are negative).
    - `ResolventLayer`: `|Im z|`, or `lambda_min(A) - z` for real `z`.

    **Raises:** `ValueError` (concrete) / `eqx.error_if` (traced) when `m <= 0`, and for models
    without a modulus (Kerr, saturable, double well).
    """
    if isinstance(layer, ResolventLayer):
        im = jnp.abs(jnp.imag(layer.z))
        if is_concrete(im) and float(im) == 0:
            lam = jnp.linalg.eigvalsh(hermitian_part(layer.A))[0]
            return _require_positive(lam - jnp.real(layer.z), "the resolvent layer")
        return _require_positive(im, "the resolvent layer")
    model = layer.model
    if isinstance(model, DrivenDampedModel):
        kappa = model.kappa
        if not (is_concrete(kappa) and not np.any(np.asarray(kappa) != 0)):
            raise ValueError(
                "a driven-damped layer with kappa != 0 (Kerr/saturable) is not strongly monotone "
                "(optical bistability); the Lipschitz bound needs kappa = 0"
            )
        return _require_positive(jnp.asarray(model.gamma), "the driven-damped layer")
    if isinstance(model, GradientModel):
        mu = _strong_convexity(model.potential)
        g = layer.graph
        if exact:
            lam = jnp.linalg.eigvalsh(g.as_dense())[0]
        else:
            lam = jnp.zeros(()) if g.potential is None else jnp.min(g.potential)
        return _require_positive(lam + mu, "the gradient layer")
    raise TypeError(f"no monotonicity constant for {type(model).__name__}")


@functools.singledispatch
def source_norm(source) -> Float[Array, ""]:
    """`|B|_2`, the Lipschitz constant of the affine source `x -> B x + b` (`|W|_2` for a
    `FeatureSource`). Register new sources with `source_norm.register`."""
    raise TypeError(f"no Lipschitz constant for the source {type(source).__name__}")


@source_norm.register
def _(source: NodeSource):
    return jnp.linalg.norm(source.B, 2)


@source_norm.register
def _(source: BlockSource):
    return jnp.linalg.norm(source.B, 2)


@source_norm.register
def _(source: FeatureSource):
    return jnp.linalg.norm(source.W, 2)


@functools.singledispatch
def readout_lipschitz(readout) -> Float[Array, ""]:
    """The Lipschitz constant of a readout `rho` (Euclidean norms): 1 for `Identity` and `ReIm`
    (an isometry), `|W|_2` for `LinearReadout`, that of the inner readout for `FlattenFiber` and
    `Visible`. `Intensity` (`|psi|^2`) is not globally Lipschitz: `ValueError`. Register new
    readouts with `readout_lipschitz.register`."""
    raise TypeError(f"no Lipschitz constant for the readout {type(readout).__name__}")


@readout_lipschitz.register(Identity)
@readout_lipschitz.register(ReIm)
def _(readout):
    return jnp.asarray(1.0)


@readout_lipschitz.register
def _(readout: LinearReadout):
    return jnp.linalg.norm(readout.W, 2)


@readout_lipschitz.register(FlattenFiber)
@readout_lipschitz.register(Visible)
def _(readout):
    return readout_lipschitz(readout.inner)


@readout_lipschitz.register
def _(readout: Intensity):
    raise ValueError("the Intensity readout |psi|^2 is not globally Lipschitz")


def _layers(obj) -> tuple:
    if isinstance(obj, StationaryLayer | ResolventLayer):
        return (obj,)
    if isinstance(obj, StationaryNetwork | ResolventNetwork):
        return obj.layers
    layer_types = StationaryLayer | ResolventLayer
    if isinstance(obj, Sequence) and not isinstance(obj, str):
        if all(isinstance(layer, layer_types) for layer in obj):
            return tuple(obj)
        bad = next(type(layer).__name__ for layer in obj if not isinstance(layer, layer_types))
        raise TypeError(f"expected a layer or a network, got a sequence holding a {bad}")
    raise TypeError(f"expected a layer or a network, got {type(obj).__name__}")


def layer_lipschitz(
    layer: StationaryLayer | ResolventLayer, *, exact_monotonicity: bool = False
) -> Float[Array, ""]:
    """`Lip(rho) |B|_2 / m`: a Lipschitz bound of `x -> rho(psi*(B x + b))`."""
    if isinstance(layer, ResolventLayer):
        b_norm = jnp.linalg.norm(layer.B, 2)
    else:
        b_norm = source_norm(layer.source)
    m = monotonicity(layer, exact=exact_monotonicity)
    return readout_lipschitz(layer.readout) * b_norm / m


def lipschitz_bound(obj, *, exact_monotonicity: bool = False) -> Float[Array, ""]:
    """An upper bound on the Lipschitz constant of a network in its input,

        Lip(f) <= prod_l Lip(rho_l) |B_l|_2 / m_l,

    `m_l` the strong-monotonicity modulus of layer `l` (`gamma_l` for linear driven-damped layers,
    using `|(gamma + i H)^{-1}|_2 <= 1 / gamma`); see [`jaxstat.equivalence.monotonicity`][].
    Holds for every input pair, any graph. Equality for one linear driven-damped layer when the
    top right singular vector of `B` is mapped into `ker H` (e.g. `V = 0`, a connected graph
    without connection and `B = 1 a^T`) and `rho` is `Identity`/`ReIm`.

    Differentiable and jit-compatible (usable as a regulariser).

    **Arguments:**

    - `obj`: a layer (`StationaryLayer`, `ResolventLayer`) or a network (`StationaryNetwork`,
      `ResolventNetwork`, a sequence of layers).
    - `exact_monotonicity`: see `monotonicity(exact=...)`.

    **Example:**

    ```python
    lipschitz_bound(network)        # = prod_l |B_l|_2 / gamma_l for linear ReIm layers
    ```
    """
    out = jnp.asarray(1.0)
    for layer in _layers(obj):
        out = out * layer_lipschitz(layer, exact_monotonicity=exact_monotonicity)
    return out


# ----------------------------------------------------------------------------------------------
# Parameter counts


def _real_size(x) -> int:
    return int(np.size(x)) * (2 if jnp.iscomplexobj(x) else 1)


def _leaf_count(tree) -> int:
    return sum(_real_size(x) for x in jtu.tree_leaves(eqx.filter(tree, eqx.is_inexact_array)))


def hermitian_dof(size: int, complex_: bool) -> int:
    """Real degrees of freedom of a Hermitian `N x N` matrix: `N^2` complex, `N(N+1)/2` real."""
    return size * size if complex_ else size * (size + 1) // 2


def graph_parameters(graph: Graph) -> int:
    """Real degrees of freedom of a graph's operator: `E` weights, plus `E` phases (U(1)) or
    `E dim U(k)` (`k^2`; `k(k-1)/2` for real O(k) blocks) for the connection, plus `n`
    potentials."""
    E, k = graph.num_edges, graph.fiber
    count = E
    if isinstance(graph.connection, PhaseConnection):
        count += E
    elif isinstance(graph.connection, BlockConnection):
        blocks = graph.connection.blocks
        count += E * (k * k if jnp.iscomplexobj(blocks) else k * (k - 1) // 2)
    if graph.potential is not None:
        count += graph.num_nodes
    return count


def _complex_operator(graph: Graph) -> bool:
    c = graph.connection
    return isinstance(c, PhaseConnection) or (
        isinstance(c, BlockConnection) and jnp.iscomplexobj(c.blocks)
    )


def _visible_size(layer: StationaryLayer) -> int:
    n = layer.graph.num_nodes
    if isinstance(layer.readout, Visible):
        n = layer.readout.num_visible
    return n * layer.graph.fiber


def _layer_parameters(layer, dense: bool) -> int:
    if isinstance(layer, ResolventLayer):
        op = hermitian_dof(layer.size, jnp.iscomplexobj(layer.A))
        return op + _leaf_count((layer.z, layer.B, layer.b, layer.readout))
    if dense:
        op = hermitian_dof(_visible_size(layer), _complex_operator(layer.graph))
    else:
        op = graph_parameters(layer.graph)
    return op + _leaf_count((layer.model, layer.source, layer.readout))


def count_parameters(obj, *, dense: bool = False) -> int:
    """The number of real parameters of a layer or network.

    The operator counts its degrees of freedom: `graph_parameters` for a graph (from its edges,
    not `n^2`), `hermitian_dof(N)` for a dense `A`; every other parameter (source `B, b`, model
    `gamma`, `kappa`, `mu`, `z`, readout) counts its real entries (complex: 2) when it is an
    inexact JAX array (model parameters are stored as arrays, so they count, Python floats
    included).

    **Arguments:**

    - `obj`: a layer or a network.
    - `dense`: count the equivalent dense resolvent layer instead: the graph replaced by a
      Hermitian `A` on the visible coordinates, complex when the connection is, all else equal.

    **Returns:** an `int`.
    """
    return sum(_layer_parameters(layer, dense) for layer in _layers(obj))


# ----------------------------------------------------------------------------------------------
# The report


class LayerComplexity(eqx.Module):
    """Figures of one layer (see [`jaxstat.equivalence.complexity`][])."""

    size: int
    num_edges: int
    max_degree: int
    inter_edges: int
    num_params: int
    num_params_dense: int
    spectral_bound: float
    monotonicity: float
    lipschitz: float


class Complexity(eqx.Module):
    """Complexity figures of a network: per layer and in total.

    **Attributes:**

    - `layers`: a `LayerComplexity` per layer: `size` (coordinates `N = n k`), `num_edges`
      (intra-layer edges; a dense `A` counts its non-zero off-diagonal pairs), `max_degree`,
      `inter_edges` (non-zeros of `B_l`: the supra-graph's edges into the layer), `num_params`,
      `num_params_dense`, `spectral_bound`, `monotonicity`, `lipschitz`.
    - `num_params`, `num_params_dense`: totals; `supra_edges`: intra plus inter edges;
      `max_degree`: over layers; `lipschitz`: the network's bound (product).
    """

    layers: tuple[LayerComplexity, ...]
    num_params: int
    num_params_dense: int
    supra_edges: int
    max_degree: int
    lipschitz: float

    def table(self) -> str:
        """The figures as a markdown table."""
        cols = [f.name for f in LayerComplexity.__dataclass_fields__.values()]
        rows = ["| layer | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
        for i, lc in enumerate(self.layers):
            vals = [getattr(lc, c) for c in cols]
            rows.append(
                f"| {i} | "
                + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in vals)
                + " |"
            )
        return "\n".join(rows)


def _nnz(x) -> int:
    return int(np.count_nonzero(np.asarray(x)))


def _layer_complexity(layer, exact_monotonicity: bool) -> LayerComplexity:
    if isinstance(layer, ResolventLayer):
        A = np.asarray(hermitian_part(layer.A))
        pattern = (A != 0) & ~np.eye(A.shape[0], dtype=bool)
        size, edges, deg = layer.size, int(pattern.sum()) // 2, int(pattern.sum(1).max(initial=0))
        inter = _nnz(layer.B)
    else:
        g = layer.graph
        size, edges, deg = g.num_nodes * g.fiber, g.num_edges, max_degree(g)
        src = layer.source
        inter = _nnz(src.B) if isinstance(src, NodeSource | BlockSource) else g.num_nodes
    return LayerComplexity(
        size=size,
        num_edges=edges,
        max_degree=deg,
        inter_edges=inter,
        num_params=_layer_parameters(layer, False),
        num_params_dense=_layer_parameters(layer, True),
        spectral_bound=float(spectral_bound(layer)),
        monotonicity=float(monotonicity(layer, exact=exact_monotonicity)),
        lipschitz=float(layer_lipschitz(layer, exact_monotonicity=exact_monotonicity)),
    )


def complexity(obj, *, exact_monotonicity: bool = False) -> Complexity:
    """Complexity figures of a layer or network from its sparse geometry (module docstring):
    edges, degrees, supra-graph edges, parameter counts (sparse and dense), spectral,
    monotonicity and Lipschitz bounds. Eager (concrete values); use the individual functions
    inside `jit`.

    **Example:**

    ```python
    c = complexity(network)
    c.num_params, c.num_params_dense, c.lipschitz
    print(c.table())
    ```
    """
    layers = tuple(_layer_complexity(layer, exact_monotonicity) for layer in _layers(obj))
    lip = 1.0
    for lc in layers:
        lip *= lc.lipschitz
    return Complexity(
        layers=layers,
        num_params=sum(lc.num_params for lc in layers),
        num_params_dense=sum(lc.num_params_dense for lc in layers),
        supra_edges=sum(lc.num_edges + lc.inter_edges for lc in layers),
        max_degree=max(lc.max_degree for lc in layers),
        lipschitz=lip,
    )
