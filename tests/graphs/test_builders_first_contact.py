"""Graph builders on the inputs a new user gives first (issue 11): duplicate points, complex
points, edge lists as Python pairs; one dense Hamiltonian for every lifted graph."""

import jax.numpy as jnp
import jax.random as jr
import networkx as nx
import numpy as np
import pytest

import jaxstat.graphs as jg
from jaxstat.equivalence import hermitian_lift


def _distances(x):
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)  # a point is not its own neighbour; duplicates are
    return d


def _edges(g):
    s, r, w = (np.asarray(a) for a in (g.senders, g.receivers, g.weights))
    return {(min(a, b), max(a, b)): c for a, b, c in zip(s, r, w)}


def _check_knn(g, x, k):
    """`g` is a symmetrised kNN graph of `x`, checked from the full distance matrix, robust to
    ties: with `d_k(i)` the k-th smallest distance from `i` to the other points,

    - every edge `(i, j)` is justified by one side: `d(i, j) <= d_k(i)` or `d(i, j) <= d_k(j)`;
    - every `j` strictly closer than `d_k(i)` is a neighbour of `i`, and `i` has at least `k`
      neighbours within `d_k(i)` (a valid choice among ties);
    - the weight is `exp(-d(i, j)^2 / h^2)`, `h` the median of `d_k` (tie-independent).
    """
    n = x.shape[0]
    d = _distances(x)
    dk = np.sort(d, axis=1)[:, k - 1]
    h = np.median(dk)
    edges = _edges(g)
    assert len(edges) == g.num_edges  # each edge stored once, no self-loops
    nbrs = [set() for _ in range(n)]
    for (i, j), w in edges.items():
        assert i != j
        assert d[i, j] <= dk[i] or d[i, j] <= dk[j]
        np.testing.assert_allclose(w, np.exp(-((d[i, j] / h) ** 2)), rtol=1e-12)
        nbrs[i].add(j)
        nbrs[j].add(i)
    for i in range(n):
        assert set(np.flatnonzero(d[i] < dk[i])) <= nbrs[i]
        assert sum(d[i, j] <= dk[i] for j in nbrs[i]) >= k
    return edges, d


@pytest.mark.parametrize("duplicates", [False, True])
def test_knn_graph_matches_brute_force(duplicates):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    k = 4
    if duplicates:  # pairs and triples of identical points (fewer than k copies each)
        x[10] = x[11]
        x[20] = x[21] = x[22]
        x[40] = x[3]
    g = jg.knn_graph(x, k)
    edges, d = _check_knn(g, x, k)
    if duplicates:  # duplicates are neighbours at distance 0: Gaussian weight exactly 1
        for e in [(10, 11), (20, 21), (20, 22), (21, 22), (3, 40)]:
            assert edges[e] == 1.0
    else:  # no ties: the edge set is unique, {(i, j): j in N_k(i) or i in N_k(j)}
        order = np.argsort(d, axis=1)[:, :k]
        want = {(min(i, j), max(i, j)) for i in range(60) for j in order[i]}
        assert set(edges) == want
    gb = jg.knn_graph(x, k, kernel="binary")
    assert set(_edges(gb)) == set(edges) and np.all(np.asarray(gb.weights) == 1)


def test_knn_graph_many_copies_of_one_point():
    """More copies than k + 1: the point itself need not be returned by the tree at all."""
    rng = np.random.default_rng(1)
    x = np.concatenate([np.zeros((7, 2)), rng.normal(size=(20, 2)) + 5.0])
    k = 2
    g = jg.knn_graph(x, k, bandwidth=1.0)
    s, r, w = (np.asarray(a) for a in (g.senders, g.receivers, g.weights))
    assert np.all(s != r)
    # Each copy's k neighbours are other copies, at distance 0: weight 1.
    copy_edges = (s < 7) | (r < 7)
    assert np.all((s[copy_edges] < 7) & (r[copy_edges] < 7))
    np.testing.assert_array_equal(w[copy_edges], 1.0)
    deg = np.bincount(np.concatenate([s, r]), minlength=27)
    assert np.all(deg >= k)


def test_knn_graph_zero_default_bandwidth_is_explained():
    x = np.repeat(np.eye(3), 4, axis=0)  # 3 points, 4 copies each: the 2nd neighbour is a copy
    with pytest.raises(ValueError, match="pass `bandwidth`"):
        jg.knn_graph(x, 2)
    g = jg.knn_graph(x, 2, bandwidth=1.0)
    np.testing.assert_array_equal(np.asarray(g.weights), 1.0)


@pytest.mark.parametrize("points", [np.ones((5, 2)) * (1 + 1j), jnp.ones((5, 2), jnp.complex64)])
def test_knn_graph_refuses_complex_points(points):
    with pytest.raises(TypeError, match="points must be real"):
        jg.knn_graph(points, 2)


# ---------------------------------------------------------------------------------------------
# Edge lists.


@pytest.mark.parametrize(
    "edges",
    [
        [(0, 1), (1, 2), (2, 3)],
        np.array([[0, 1], [1, 2], [2, 3]]),
        jnp.array([[0, 1], [1, 2], [2, 3]]),
        ((0, 1), (1, 2), (2, 3)),
        nx.path_graph(4).edges,
    ],
    ids=["list-of-tuples", "numpy", "jax", "tuple", "networkx-edges"],
)
def test_from_edges_accepts_pairs(edges):
    w = jnp.array([1.0, 2.0, 3.0])
    for build in (jg.from_edges, jg.Graph.from_edges):
        g = build(edges, w)
        # Path 0-1-2-3: the Laplacian of a path, entry by entry.
        want = np.array(
            [[1.0, -1.0, 0.0, 0.0], [-1.0, 3.0, -2.0, 0.0], [0.0, -2.0, 5.0, -3.0], [0, 0, -3, 3]]
        )
        np.testing.assert_allclose(g.as_dense(), want)


def test_from_edges_iterator():
    g = jg.Graph.from_edges(iter([(0, 1), (1, 2)]))
    assert g.num_edges == 2 and g.num_nodes == 3


def test_from_edges_refuses_self_loops_and_says_how_to_drop_them():
    edges = np.array([[0, 1], [2, 2], [1, 2], [3, 3]])
    with pytest.raises(ValueError, match=r"edge 1 is \(2, 2\) \(2 in all\).*senders != receivers"):
        jg.Graph.from_edges(edges)
    keep = edges[:, 0] != edges[:, 1]  # the recipe of the message
    assert jg.Graph.from_edges(edges[keep]).num_edges == 2
    with pytest.raises(ValueError, match=r"shape \(E, 2\)"):
        jg.Graph.from_edges([(0, 1, 2)])


# ---------------------------------------------------------------------------------------------
# The spectral bound used to cap the flow's step.


@pytest.mark.parametrize("kind", ["plain", "magnetic", "orthogonal"])
def test_gershgorin_bound(getkey, kind):
    g = jg.random_graph(getkey(), 15, 40)
    conn = None
    if kind == "magnetic":
        conn = jg.PhaseConnection(jr.uniform(getkey(), (40,), minval=-3, maxval=3))
    elif kind == "orthogonal":
        conn = jg.BlockConnection(jg.random_unitary_blocks(getkey(), 40, 2))
    g = jg.Graph(
        g.senders,
        g.receivers,
        g.weights,
        15,
        connection=conn,
        potential=-20.0 * jr.uniform(getkey(), (15,)),
    )
    dense = np.asarray(g.as_dense())
    bound = float(g.assemble().gershgorin_bound())
    rowsum = np.abs(dense).sum(axis=1).max()
    if kind == "plain":  # parallel edges add with one sign: the dense row sums exactly
        np.testing.assert_allclose(bound, rowsum, rtol=1e-12)
    else:  # parallel edges with different transports partly cancel in the dense matrix
        assert bound >= rowsum * (1 - 1e-12)
    assert bound >= np.abs(np.linalg.eigvals(dense)).max()


# ---------------------------------------------------------------------------------------------
# One dense Hamiltonian for every lifted graph, whatever its connection type.


def _hermitian(key, n, k, kind):
    k1, k2 = jr.split(key)
    if kind == "real-nonpositive":
        a = -jnp.abs(jr.normal(k1, (n, n)))
    elif kind == "real":
        a = jr.normal(k1, (n, n))
    else:
        a = jr.normal(k1, (n, n)) + 1j * jr.normal(k2, (n, n))
    if k == 1:
        return (a + jnp.conj(a.T)) / 2
    # Conformal blocks: w_ij U_ij with U_ij unitary (orthogonal for real), scalar diagonal blocks.
    dtype = jnp.complex128 if kind == "complex" else jnp.float64
    blocks = jg.random_unitary_blocks(k2, n * n, k, dtype).reshape(n, n, k, k)
    w = jnp.abs(a)
    h = w[:, :, None, None] * blocks
    h = jnp.where(jnp.triu(jnp.ones((n, n)), 1)[:, :, None, None] > 0, h, 0)
    h = h + jnp.conj(h.transpose(1, 0, 3, 2))
    h = h + jnp.diag(jnp.real(jnp.diag(a)))[:, :, None, None] * jnp.eye(k)
    return h.transpose(0, 2, 1, 3).reshape(n * k, n * k)


@pytest.mark.parametrize(
    "kind, k, connection",
    [
        ("real-nonpositive", 1, type(None)),
        ("real", 1, jg.BlockConnection),
        ("complex", 1, jg.PhaseConnection),
        ("real", 3, jg.BlockConnection),
        ("complex", 2, jg.BlockConnection),
    ],
)
def test_hermitian_lift_rebuilds_exactly(getkey, kind, k, connection):
    H = _hermitian(getkey(), 7, k, kind)
    g = hermitian_lift(H, fiber=k)
    assert type(g.connection) is connection  # the three connection types...
    dense = g.as_dense()  # ...one way back to the matrix
    assert dense.shape == H.shape
    np.testing.assert_allclose(dense, H, rtol=0, atol=1e-13)
    # And the operator agrees with the dense matrix.
    shape = (7,) if k == 1 else (7, k)
    v = jr.normal(getkey(), shape + (2,))
    np.testing.assert_allclose(
        g.hamiltonian(v).reshape(7 * k, 2), H @ v.reshape(7 * k, 2), atol=1e-12
    )


@pytest.mark.parametrize("bad", [jnp.nan, jnp.inf])
def test_graph_refuses_nonfinite_potential(bad):
    with pytest.raises(ValueError, match="potential must be finite"):
        jg.Graph([0], [1], potential=jnp.array([1.0, bad]))
