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
from ..graphs import Graph
from ..stationary import StationaryLayer
from ..supragraph import StationaryNetwork
from ._adapters import visible_nodes
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
    operator: Graph | StationaryLayer | ResolventLayer, *, coarse: bool = False
) -> Float[Array, ""]:
    """An upper bound on the spectral norm `|H|_2` of a layer's operator.

    Graphs: `max_i (|deg_i + V_i| + deg_i)` (block Gershgorin; `coarse=True`: the weaker
    `2 max_i deg_i + max_i |V_i|`). Resolvent layers: `max_i sum_j |A_ij|` (Gershgorin).
    Differentiable, jit-compatible. Tight for a bipartite regular graph with `V = 0`.
    """
    if isinstance(operator, StationaryLayer):
        operator = operator.graph
    if isinstance(operator, ResolventLayer):
        return jnp.max(jnp.sum(jnp.abs(hermitian_part(operator.A)), axis=1))
    if not isinstance(operator, Graph):
        raise TypeError(f"expected a Graph or a layer, got {type(operator).__name__}")
    deg = operator.degree()
    if coarse:
        v = 0.0 if operator.potential is None else jnp.max(jnp.abs(operator.potential))
        return 2 * jnp.max(deg, initial=0.0) + v
    return jnp.max(jnp.abs(_diagonal(operator)) + deg, initial=0.0)


# ----------------------------------------------------------------------------------------------
# Strong monotonicity and Lipschitz constants


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
    g = layer.graph

    def lambda_min():
        # A lower bound on lambda_min(H): exact from the dense matrix, or min_i V_i (L >= 0).
        if exact:
            return jnp.linalg.eigvalsh(g.as_dense())[0]
        return jnp.zeros(()) if g.potential is None else jnp.min(g.potential)

    m = layer.model.monotonicity(lambda_min)
    return _require_positive(m, f"the {type(layer.model).__name__} layer")


@functools.singledispatch
def source_norm(source) -> Float[Array, ""]:
    """`|B|_2`, the Lipschitz constant of the affine source `x -> B x + b` (`|W|_2` for a
    `FeatureSource`): the source's `norm`. `TypeError` for a source that does not know it."""
    return jnp.asarray(source.norm)


@functools.singledispatch
def readout_lipschitz(readout) -> Float[Array, ""]:
    """The Lipschitz constant of a readout `rho` (Euclidean norms), the readout's `lipschitz`:
    1 for `Identity` and `ReIm` (an isometry), `|W|_2` for `LinearReadout`, that of the inner
    readout for `FlattenFiber` and `Visible`. `Intensity` (`|psi|^2`) is not globally Lipschitz:
    `ValueError`; a readout that does not know its constant: `TypeError`."""
    return jnp.asarray(readout.lipschitz)


def _layers(network) -> tuple:
    if isinstance(network, StationaryLayer | ResolventLayer):
        return (network,)
    if isinstance(network, StationaryNetwork | ResolventNetwork):
        return network.layers
    layer_types = StationaryLayer | ResolventLayer
    if isinstance(network, Sequence) and not isinstance(network, str):
        if all(isinstance(layer, layer_types) for layer in network):
            return tuple(network)
        bad = next(type(layer).__name__ for layer in network if not isinstance(layer, layer_types))
        raise TypeError(f"expected a layer or a network, got a sequence holding a {bad}")
    raise TypeError(f"expected a layer or a network, got {type(network).__name__}")


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


def lipschitz_bound(network, *, exact_monotonicity: bool = False) -> Float[Array, ""]:
    """An upper bound on the Lipschitz constant of a network in its input,

        Lip(f) <= prod_l Lip(rho_l) |B_l|_2 / m_l,

    `m_l` the strong-monotonicity modulus of layer `l` (`gamma_l` for linear driven-damped layers,
    using `|(gamma + i H)^{-1}|_2 <= 1 / gamma`); see [`jaxstat.equivalence.monotonicity`][].
    Holds for every input pair, any graph. Equality for one linear driven-damped layer when the
    top right singular vector of `B` is mapped into `ker H` (e.g. `V = 0`, a connected graph
    without connection and `B = 1 a^T`) and `rho` is `Identity`/`ReIm`.

    Differentiable and jit-compatible (usable as a regulariser).

    **Arguments:**

    - `network`: a network (`StationaryNetwork`, `ResolventNetwork`, a sequence of layers) or
      one layer (`StationaryLayer`, `ResolventLayer`).
    - `exact_monotonicity`: see `monotonicity(exact=...)`.

    **Example:**

    ```python
    import jax.random as jr
    import jaxstat
    import jaxstat.graphs as jg
    import jaxstat.stationary as js
    from jaxstat.equivalence import lipschitz_bound

    graph = jg.random_graph(jr.key(0), 50, 150)
    network = jaxstat.supragraph.feature_network(
        graph, js.DrivenDampedModel(gamma=1.0), [4, 8, 8], key=jr.key(1)
    )
    lipschitz_bound(network)        # = prod_l |B_l|_2 / gamma_l for linear ReIm layers
    ```
    """
    out = jnp.asarray(1.0)
    for layer in _layers(network):
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
    count = graph.num_edges
    if graph.connection is not None:
        count += graph.num_edges * graph.connection.dof_per_edge
    if graph.potential is not None:
        count += graph.num_nodes
    return count


def complex_operator(graph: Graph) -> bool:
    """`True` when the graph's Hamiltonian is complex (its connection's transports are)."""
    return graph.connection is not None and graph.connection.is_complex


def visible_size(layer: StationaryLayer) -> int:
    """The coordinates `N = n_visible k` of the dense resolvent layer equivalent to `layer`."""
    return visible_nodes(layer.readout, layer.graph.num_nodes) * layer.graph.fiber


def _layer_parameters(layer, dense: bool) -> int:
    if isinstance(layer, ResolventLayer):
        op = hermitian_dof(layer.size, jnp.iscomplexobj(layer.A))
        return op + _leaf_count((layer.z, layer.B, layer.b, layer.readout))
    if dense:
        op = hermitian_dof(visible_size(layer), complex_operator(layer.graph))
    else:
        op = graph_parameters(layer.graph)
    return op + _leaf_count((layer.model, layer.source, layer.readout))


def count_parameters(network, *, dense: bool = False) -> int:
    """The number of real parameters of a layer or network.

    The operator counts its degrees of freedom: `graph_parameters` for a graph (from its edges,
    not `n^2`), `hermitian_dof(N)` for a dense `A`; every other parameter (source `B, b`, model
    `gamma`, `kappa`, `mu`, `z`, readout) counts its real entries (complex: 2) when it is an
    inexact JAX array (model parameters are stored as arrays, so they count, Python floats
    included).

    **Arguments:**

    - `network`: a layer or a network.
    - `dense`: count the equivalent dense resolvent layer instead: the graph replaced by a
      Hermitian `A` on the visible coordinates, complex when the connection is, all else equal.

    **Returns:** an `int`.
    """
    return sum(_layer_parameters(layer, dense) for layer in _layers(network))


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
        inter = _nnz(src.matrix) if src.mixes_nodes else g.num_nodes
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


def complexity(network, *, exact_monotonicity: bool = False) -> Complexity:
    """Complexity figures of a layer or network from its sparse geometry (module docstring):
    edges, degrees, supra-graph edges, parameter counts (sparse and dense), spectral,
    monotonicity and Lipschitz bounds. Eager (concrete values); use the individual functions
    inside `jit`.

    **Example:**

    ```python
    import jax.random as jr
    import jaxstat
    import jaxstat.graphs as jg
    import jaxstat.stationary as js
    from jaxstat.equivalence import complexity

    graph = jg.random_graph(jr.key(0), 50, 150)
    network = jaxstat.supragraph.feature_network(
        graph, js.DrivenDampedModel(gamma=1.0), [4, 8, 8], key=jr.key(1)
    )
    c = complexity(network)
    c.num_params, c.num_params_dense, c.lipschitz
    print(c.table())
    ```
    """
    layers = tuple(_layer_complexity(layer, exact_monotonicity) for layer in _layers(network))
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
