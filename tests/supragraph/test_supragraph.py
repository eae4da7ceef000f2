"""The supra-graph: edge counts, and the Jacobian's node-level sparsity pattern."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import jaxstat.stationary as js
import jaxstat.supragraph as sg

from .networks import case, normal, quartic_network, random_graph, rng


def _node_jacobian_pattern(net, x):
    """`|dF_{l,i} / dpsi_{m,j}| > 0` from the dense Jacobian of the residual at a random point,
    reduced over features (and real/imaginary parts) to nodes."""
    structure = net.state_structure(x)
    states = tuple(normal(7 + i, s.shape).astype(s.dtype) for i, s in enumerate(structure))
    offsets = np.concatenate([[0], np.cumsum([s.shape[0] for s in structure])])
    # The node of every packed real coordinate: ids shaped like the states, packed like them.
    ids = tuple(
        (o + jnp.arange(s.shape[0]).reshape((-1,) + (1,) * (len(s.shape) - 1)))
        * jnp.ones(s.shape, jnp.int32)
        for o, s in zip(offsets, structure)
    )
    ids = tuple(
        (i, i) if jnp.issubdtype(s.dtype, jnp.complexfloating) else i
        for i, s in zip(ids, structure)
    )
    node_of = np.asarray(ravel_pytree(ids)[0])
    v0, unravel = ravel_pytree(sg.pack_states(states))
    jac = eqx.filter_jit(
        jax.jacfwd(lambda v, net: ravel_pytree(net.packed_residual(unravel(v), x))[0])
    )
    J = jac(v0, net)
    pattern = np.zeros((offsets[-1], offsets[-1]), bool)
    r, c = np.nonzero(np.asarray(J))
    pattern[node_of[r], node_of[c]] = True
    return pattern


def test_node_source_network():
    """Intra-layer edges are the graphs' edges, inter-layer edges the nonzeros of `B_l`, and the
    supra-graph's Jacobian pattern equals the nonzero pattern of the actual Jacobian."""
    net, x, _, _ = case("quartic")
    S = sg.supragraph(net)
    assert S.layer_sizes == (10, 10)
    assert S.num_intra_edges == sum(layer.graph.num_edges for layer in net.layers)
    assert S.num_inter_edges == sum(int(jnp.sum(layer.source.B != 0)) for layer in net.layers[1:])
    assert S.num_edges == S.num_intra_edges + S.num_inter_edges
    np.testing.assert_array_equal(S.jacobian_pattern().toarray(), _node_jacobian_pattern(net, x))
    # Block lower-triangular: no edge from a layer to an earlier one in the pattern.
    rows, cols = S.jacobian_pattern().nonzero()
    layer = np.asarray(S.node_layer)
    assert np.all(layer[rows] >= layer[cols]) and np.all(layer[rows] - layer[cols] <= 1)
    # With the input: layer 0 holds x's nodes, coupled to layer 1 through B_1's nonzeros.
    Sx = sg.supragraph(net, x)
    assert Sx.offsets == (0, 7, 17, 27)
    assert Sx.num_inter_edges == S.num_inter_edges + int(jnp.sum(net.layers[0].source.B != 0))
    np.testing.assert_array_equal(Sx.jacobian_pattern().toarray(), S.jacobian_pattern().toarray())
    # Sparse against dense: 2 E + N stored couplings versus sum n_l^2 + n_l n_{l-1}.
    assert S.dense_size() == 10**2 + 10**2 + 10 * 10
    # (random_graph may draw an edge twice: parallel edges add up in H and share one entry.)
    assert S.jacobian_pattern().nnz <= 2 * S.num_intra_edges + S.num_inter_edges + S.num_nodes
    assert S.jacobian_pattern().nnz < S.dense_size()


def test_feature_network_and_networkx():
    """Feature sources couple node `i` of layer `l - 1` to node `i` of layer `l` only."""
    net, x, _, _ = case("kerr")
    S = sg.supragraph(net)
    n = 12
    assert S.num_inter_edges == n
    e = S.edges()[np.asarray(S.inter)]
    np.testing.assert_array_equal(e[:, 0] % n, e[:, 1] % n)
    np.testing.assert_array_equal(S.jacobian_pattern().toarray(), _node_jacobian_pattern(net, x))
    G = S.to_networkx()
    assert G.number_of_nodes() == 2 * n
    assert {d["layer"] for _, d in G.nodes(data=True)} == {0, 1}
    assert S.max_degree() == max(dict(G.degree()).values())


class _MixingSource(js.AbstractSource):
    """A source that is neither `NodeSource` nor `FeatureSource`: each node reads itself and the
    next node, `s_i = a x_i + c x_{i+1}` (cyclic)."""

    a: jax.Array
    c: jax.Array

    def __call__(self, x):
        return self.a * x + self.c * jnp.roll(x, -1, axis=0)


def test_other_sources_are_probed():
    n = 6
    g = random_graph(rng(3), n, 8)
    src = _MixingSource(jnp.array(1.0), jnp.array(0.5))
    layer = js.StationaryLayer(g, js.GradientModel(js.Quartic(1.0, 1.0)), src, js.Identity())
    net = sg.StationaryNetwork([layer, layer])
    x = normal(4, (n, 2))
    with pytest.raises(ValueError, match="pass the input x"):
        sg.supragraph(net)
    S = sg.supragraph(net, x)
    assert S.num_inter_edges == 2 * (2 * n)  # input -> layer 1 and layer 1 -> layer 2
    np.testing.assert_array_equal(S.jacobian_pattern().toarray(), _node_jacobian_pattern(net, x))


def test_zero_weights_and_jit_error():
    """Edges of weight 0 (dead edges) and zero entries of `B` do not couple."""
    net = quartic_network()
    w = net.layers[0].graph.weights
    dead = eqx.tree_at(lambda n: n.layers[0].graph.weights, net, w.at[:3].set(0.0))
    assert sg.supragraph(dead).num_intra_edges == sg.supragraph(net).num_intra_edges - 3
    with pytest.raises(ValueError, match="outside jit"):
        eqx.filter_jit(lambda n: sg.supragraph(n).num_edges)(net)
