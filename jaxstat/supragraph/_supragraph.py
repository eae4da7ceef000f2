"""The supra-graph: the sparsity pattern of a stationary network's global system.

Node `(l, i)` carries the state `psi_{l, i}` (node `i` of layer `l`); numbering layer after layer,
node `(l, i)` is `offsets[l] + i`. Two kinds of edges:

- intra-layer: the edges `(i, j)` of layer `l`'s graph with `w_ij != 0` (they couple `psi_{l,i}`
  and `psi_{l,j}` through `H_l`);
- inter-layer: `(l-1, j) -> (l, i)` wherever `F_{l,i}` depends on `psi_{l-1,j}`: the nonzeros
  `B_{l,ij} != 0` of a `NodeSource`, the pairs `(i, i)` of a `FeatureSource` (weights shared by
  all nodes), in general the source's `node_pattern`; the probed dependence of a source that
  does not know its pattern, or after a readout that is not node-local.

The node-level pattern of the Jacobian `J = dF/dPsi` is the diagonal, the intra-layer edges both
ways, and the inter-layer edges from layer `l - 1` to layer `l` only (block lower-triangular).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse
from jaxtyping import Array, ArrayLike, Bool, Inexact, Int

from .._checks import is_concrete
from ..graphs import Graph
from ._network import StationaryNetwork


class SupraGraph(eqx.Module):
    """The supra-graph of a [`jaxstat.supragraph.StationaryNetwork`][] (see the module docstring).

    **Attributes:**

    - `graph`: a `jaxstat.graphs.Graph` on all `(l, i)` nodes holding every edge once
      (undirected); weights `|w_e|` for intra-layer edges, `|B_ij|` for `NodeSource` couplings,
      `|W|_F` for `FeatureSource` couplings.
    - `offsets`: `offsets[l]` is the number of the first node of layer `l`; `offsets[-1]` the
      number of nodes. With `x` given to `supragraph`, layer 0 holds the input's nodes.
    - `node_layer`: the layer of every node, shape `(N,)`.
    - `edge_layer`: the layer of every edge (the receiving layer for inter-layer edges).
    - `inter`: `True` for inter-layer edges, shape `(E,)`.
    """

    graph: Graph
    node_layer: Int[Array, " N"]
    edge_layer: Int[Array, " E"]
    inter: Bool[Array, " E"]
    offsets: tuple[int, ...] = eqx.field(static=True)
    has_input: bool = eqx.field(static=True)

    @property
    def num_nodes(self) -> int:
        return self.graph.num_nodes

    @property
    def num_edges(self) -> int:
        return self.graph.num_edges

    @property
    def num_intra_edges(self) -> int:
        return int(np.sum(~np.asarray(self.inter)))

    @property
    def num_inter_edges(self) -> int:
        return int(np.sum(np.asarray(self.inter)))

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return tuple(int(b - a) for a, b in zip(self.offsets[:-1], self.offsets[1:]))

    def edges(self) -> np.ndarray:
        """The edges as an `(E, 2)` integer array; an inter-layer edge is `(receiver in layer l,
        sender in layer l - 1)`."""
        return np.stack([np.asarray(self.graph.senders), np.asarray(self.graph.receivers)], 1)

    def max_degree(self) -> int:
        """The largest number of neighbours of a node (parallel edges count once)."""
        e = np.unique(np.sort(self.edges(), axis=1), axis=0)
        return int(np.bincount(e.ravel(), minlength=self.num_nodes).max(initial=0))

    def jacobian_pattern(self) -> scipy.sparse.csr_array:
        """The node-level sparsity pattern of `J = dF/dPsi` (rows: equations `F_{l,i}`, columns:
        states `psi_{m,j}`), boolean `N x N` (states only: without the input layer)."""
        e = self.edges()
        inter = np.asarray(self.inter)
        rows = np.concatenate([e[~inter, 0], e[~inter, 1], e[inter, 0]])
        cols = np.concatenate([e[~inter, 1], e[~inter, 0], e[inter, 1]])
        n0 = self.offsets[1] if self.has_input else 0
        keep = (rows >= n0) & (cols >= n0)
        n = self.num_nodes - n0
        diag = np.arange(n)
        rows = np.concatenate([rows[keep] - n0, diag])
        cols = np.concatenate([cols[keep] - n0, diag])
        m = scipy.sparse.coo_array((np.ones(len(rows), bool), (rows, cols)), shape=(n, n))
        m = m.tocsr()
        m.sum_duplicates()
        return m.astype(bool)

    def dense_size(self) -> int:
        """Entries of the dense node-level block lower-triangular Jacobian, `sum_l n_l^2 +
        n_l n_{l-1}`: what a dense network would store, to compare with `2 E + N`."""
        n = self.layer_sizes
        return sum(a * a for a in n[int(self.has_input) :]) + sum(
            a * b for a, b in zip(n[1:], n[:-1])
        )

    def to_networkx(self):
        """A `networkx.Graph` with node attribute `layer` and edge attributes `weight`, `inter`."""
        import networkx as nx

        G = nx.Graph()
        layer = np.asarray(self.node_layer)
        G.add_nodes_from((i, {"layer": int(layer[i])}) for i in range(self.num_nodes))
        w, inter = np.asarray(self.graph.weights), np.asarray(self.inter)
        for k, (a, b) in enumerate(self.edges()):
            G.add_edge(int(a), int(b), weight=float(w[k]), inter=bool(inter[k]))
        return G


def _inter_pattern(layer, prev_readout, prev_struct, n_prev: int):
    """`(rows, cols, weights)` of layer `layer`'s dependence on the previous layer's nodes."""
    src = layer.source
    # A node-local readout keeps the node numbering: the source's own pattern is the answer.
    local = prev_readout is None or prev_readout.is_node_local
    pattern = src.node_pattern(n_prev) if local else None
    if pattern is not None:
        return pattern
    # Otherwise probe the node-level dependence with a dense Jacobian.
    if prev_struct is None:
        raise ValueError(
            f"the pattern of a {type(src).__name__} after a {type(prev_readout).__name__} "
            "readout is found by probing: pass the input x to supragraph"
        )
    readout = (lambda h: h) if prev_readout is None else prev_readout
    cplx = jnp.issubdtype(prev_struct.dtype, jnp.complexfloating)
    shape = ((2,) if cplx else ()) + tuple(prev_struct.shape)
    probe = jax.random.normal(jax.random.key(0), shape, jnp.finfo(prev_struct.dtype).dtype)

    def fn(p):
        s = src(readout(p[0] + 1j * p[1] if cplx else p))
        s = s.reshape(s.shape[0], -1)
        return jnp.concatenate([jnp.real(s), jnp.imag(s)], -1) if jnp.iscomplexobj(s) else s

    # A dense Jacobian at a random point (generic: no accidental zeros), reduced to nodes.
    J = np.abs(np.asarray(jax.jacfwd(fn)(probe)))  # (n_out, F_out, [2,] n_prev, ...)
    if cplx:
        J = J.sum(axis=2)
    node_level = J.reshape(J.shape[0], J.shape[1], n_prev, -1).sum(axis=(1, 3))
    rows, cols = np.nonzero(node_level)
    return rows, cols, node_level[rows, cols]


def supragraph(
    network: StationaryNetwork, x: Inexact[ArrayLike, "..."] | None = None
) -> SupraGraph:
    """The supra-graph of a network: the sparsity pattern of its global system `F(Psi) = 0`.

    Nodes are the `(layer, node)` pairs of the states; edges are each layer's graph edges
    (intra-layer) and the couplings of each layer's source to the previous layer's nodes
    (inter-layer, from the nonzeros of `B_l`). Built from concrete parameters (outside `jit`),
    for inspection and complexity counts; see [`jaxstat.supragraph.SupraGraph`][].

    **Arguments:**

    - `network`: a [`jaxstat.supragraph.StationaryNetwork`][].
    - `x`: optional input; with it, the input's nodes form layer 0 and layer 1's couplings to
      them are edges too (needed to probe a source that does not know its `node_pattern`, or
      one after a readout that is not node-local).

    **Returns:** a [`jaxstat.supragraph.SupraGraph`][].

    **Example:**

    ```python
    import jax.random as jr
    import jaxstat.graphs as jg
    import jaxstat.stationary as js
    from jaxstat.supragraph import feature_network, supragraph

    graph = jg.random_graph(jr.key(0), 50, 150)
    network = feature_network(graph, js.DrivenDampedModel(gamma=1.0), [4, 8, 8], key=jr.key(1))
    sg = supragraph(network)
    sg.num_intra_edges, sg.num_inter_edges, sg.max_degree()
    sg.jacobian_pattern()   # scipy.sparse boolean, block lower-triangular
    ```
    """
    params = eqx.filter(network, eqx.is_array)
    if not is_concrete(params):
        raise ValueError("supragraph needs concrete parameters: call it outside jit")
    structs = None if x is None else network.state_structure(x)
    sizes = [layer.graph.num_nodes for layer in network.layers]
    has_input = x is not None
    if has_input:
        sizes = [int(jnp.shape(x)[0])] + sizes
    offsets = tuple(int(v) for v in np.concatenate([[0], np.cumsum(sizes)]))
    first = 1 if has_input else 0
    senders, receivers, weights, edge_layer, inter = [], [], [], [], []
    for i, layer in enumerate(network.layers):
        o = offsets[first + i]
        g = layer.graph
        w = np.asarray(g.weights)
        keep = w != 0
        senders.append(np.asarray(g.senders)[keep] + o)
        receivers.append(np.asarray(g.receivers)[keep] + o)
        weights.append(np.abs(w[keep]))
        edge_layer.append(np.full(int(keep.sum()), first + i))
        inter.append(np.zeros(int(keep.sum()), bool))
        if i == 0 and not has_input:
            continue
        prev_readout = None if i == 0 else network.layers[i - 1].readout
        if i == 0:
            prev_struct = jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x))
        else:
            prev_struct = None if structs is None else structs[i - 1]
        po = offsets[first + i - 1]
        rows, cols, ws = _inter_pattern(layer, prev_readout, prev_struct, sizes[first + i - 1])
        senders.append(rows + o)
        receivers.append(cols + po)
        weights.append(ws)
        edge_layer.append(np.full(len(rows), first + i))
        inter.append(np.ones(len(rows), bool))
    dtype = jnp.result_type(*[layer.graph.weights for layer in network.layers])
    graph = Graph(
        np.concatenate(senders).astype(np.int64),
        np.concatenate(receivers).astype(np.int64),
        jnp.asarray(np.concatenate(weights), dtype=dtype),
        offsets[-1],
    )
    node_layer = np.repeat(np.arange(len(sizes)), sizes)
    return SupraGraph(
        graph=graph,
        node_layer=jnp.asarray(node_layer),
        edge_layer=jnp.asarray(np.concatenate(edge_layer)),
        inter=jnp.asarray(np.concatenate(inter)),
        offsets=offsets,
        has_input=has_input,
    )
