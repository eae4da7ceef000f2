"""Graph Laplacians / Hamiltonians: against dense matrices, closed forms, and their derivatives."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import networkx as nx
import numpy as np
import pytest

import jaxstat.graphs as jg
from jaxstat.graphs._sparse import _portable_matmul

from ..helpers import check_grad_fd, finite_difference_jvp


N, E = 30, 90


def make_graph(key, kind, dtype=jnp.float64, potential=True):
    k1, k2, k3, k4 = jr.split(key, 4)
    g = jg.random_graph(k1, N, E, dtype=dtype)
    conn = None
    if kind == "magnetic":
        conn = jg.PhaseConnection(jr.uniform(k2, (E,), dtype, -np.pi, np.pi))
    elif kind == "orthogonal":
        conn = jg.BlockConnection(jg.random_unitary_blocks(k2, E, 3, dtype))
    elif kind == "unitary":
        cdtype = jnp.complex128 if dtype == jnp.float64 else jnp.complex64
        conn = jg.BlockConnection(jg.random_unitary_blocks(k2, E, 2, cdtype))
    V = jr.normal(k3, (N,), dtype) if potential else None
    return jg.Graph(g.senders, g.receivers, g.weights, N, connection=conn, potential=V)


def node_features(key, g, dtype, features=(4,)):
    shape = (g.num_nodes,) + ((g.fiber,) if g.fiber > 1 else ()) + features
    if jnp.issubdtype(dtype, jnp.complexfloating):
        kr, ki = jr.split(key)
        real = jnp.finfo(dtype).dtype
        return (jr.normal(kr, shape, real) + 1j * jr.normal(ki, shape, real)).astype(dtype)
    return jr.normal(key, shape, dtype)


KINDS = ["combinatorial", "magnetic", "orthogonal", "unitary"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("xdtype", [jnp.float64, jnp.complex128, jnp.float32])
def test_matvec_matches_dense(getkey, kind, xdtype):
    dtype = jnp.float32 if xdtype == jnp.float32 else jnp.float64
    g = make_graph(getkey(), kind, dtype)
    x = node_features(getkey(), g, xdtype)

    @eqx.filter_jit  # one compilation for the three products
    def products(g, x):
        op = g.assemble()
        flat = x.reshape(op.diagonal.shape[0], -1).astype(jnp.result_type(op.dtype, x))
        portable = op.diagonal[:, None] * flat + _portable_matmul(
            op.data.astype(flat.dtype), flat, op.indices, op.rows, flat.shape[0]
        )
        return g.as_dense(), g.hamiltonian(x), portable.reshape(x.shape)

    M, y, portable = products(g, x)
    # Reference in float64 numpy (a float32 `M @ x` on a GPU runs in TF32, ~1e-3 relative).
    hi = np.result_type(np.asarray(M), np.asarray(x), np.float64)
    xs = np.asarray(x, hi).reshape(M.shape[0], -1)
    expect = (np.asarray(M, hi) @ xs).reshape(x.shape)
    # float32: sums of ~10 terms of size ~1, relative rounding ~1e-6.
    tol = 1e-5 if dtype == jnp.float32 else 1e-12
    np.testing.assert_allclose(y, expect, rtol=tol, atol=tol)
    # The portable (gather + segment_sum) path, and (float64) the eager, op-by-op product.
    np.testing.assert_allclose(portable, expect, rtol=tol, atol=tol)
    if xdtype == jnp.float64:
        np.testing.assert_allclose(g.hamiltonian(x), expect, rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", KINDS)
def test_hermitian_and_quadratic_form(getkey, kind):
    """`H` is Hermitian and `<psi, L psi> = sum_e w_e |psi_i - U_ij psi_j|^2 >= 0`."""
    g = make_graph(getkey(), kind, potential=False)
    M = g.as_dense()
    np.testing.assert_allclose(M, jnp.conj(M).T, atol=1e-14)
    psi = node_features(getkey(), g, jnp.complex128, features=())
    quad = jnp.vdot(psi, g.laplacian(psi))
    s, r = g.senders, g.receivers
    if g.connection is None:
        diff = psi[s] - psi[r]
    elif g.fiber == 1:
        diff = psi[s] - jnp.exp(1j * g.connection.theta) * psi[r]
    else:
        diff = psi[s] - jnp.einsum("eab,eb->ea", g.connection.blocks, psi[r])
    closed = jnp.sum(g.weights * jnp.sum(jnp.abs(diff.reshape(E, -1)) ** 2, axis=-1))
    np.testing.assert_allclose(quad.real, closed, rtol=1e-12)
    np.testing.assert_allclose(quad.imag, 0, atol=1e-10)
    assert float(jnp.linalg.eigvalsh(M).min()) > -1e-10


def test_combinatorial_matches_networkx():
    G = nx.gnm_random_graph(40, 120, seed=3)
    for u, v in G.edges:
        G[u][v]["weight"] = 0.5 + (u * v) % 7
    g, nodes = jg.from_networkx(G)
    L = nx.laplacian_matrix(G, nodelist=nodes).toarray()
    np.testing.assert_allclose(g.as_dense(), L, atol=1e-12)
    x = np.random.default_rng(0).standard_normal((40, 3))
    np.testing.assert_allclose(g.laplacian(x), L @ x, atol=1e-12)
    # Constants are in the kernel of the combinatorial Laplacian.
    np.testing.assert_allclose(g.laplacian(jnp.ones(40)), 0, atol=1e-12)


def test_knn_graph():
    pts = np.random.default_rng(1).standard_normal((200, 3))
    g = jg.knn_graph(pts, 5)
    # Symmetrised kNN: every node has at least k neighbours, each edge stored once.
    deg = np.bincount(np.r_[g.senders, g.receivers], minlength=200)
    assert deg.min() >= 5
    pairs = set(
        zip(
            np.minimum(g.senders, g.receivers).tolist(), np.maximum(g.senders, g.receivers).tolist()
        )
    )
    assert len(pairs) == g.num_edges
    import scipy.spatial

    _, nbr = scipy.spatial.cKDTree(pts).query(pts, 6)
    for i in range(200):
        for j in nbr[i, 1:]:
            assert (min(i, j), max(i, j)) in pairs
    assert bool(jnp.all((g.weights > 0) & (g.weights <= 1)))


@pytest.mark.parametrize(
    "kind", [pytest.param(k, marks=pytest.mark.slow) if k == "orthogonal" else k for k in KINDS]
)
def test_gradients_match_dense_and_fd(getkey, kind):
    """Reverse mode through the sparse product against the dense product and finite differences,
    with respect to weights, connection, potential and features."""
    g = make_graph(getkey(), kind)
    x = node_features(getkey(), g, jnp.complex128 if kind != "combinatorial" else jnp.float64)
    c = node_features(getkey(), g, jnp.complex128)

    def loss(graph, x, dense):
        y = graph.as_dense() @ x.reshape(-1, 4) if dense else graph.hamiltonian(x).reshape(-1, 4)
        return jnp.sum(jnp.real(jnp.conj(c.reshape(-1, 4)) * y) ** 2)

    grad_sparse = eqx.filter_grad(lambda gx: loss(*gx, False))((g, x))
    grad_dense = eqx.filter_grad(lambda gx: loss(*gx, True))((g, x))
    for a, b in zip(jax.tree.leaves(grad_sparse), jax.tree.leaves(grad_dense)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
    params, static = eqx.partition((g, x), eqx.is_inexact_array)
    check_grad_fd(lambda p: loss(*eqx.combine(p, static), False), params, key=getkey())


def test_forward_mode_and_second_order(getkey):
    g = make_graph(getkey(), "magnetic")
    x = node_features(getkey(), g, jnp.float64)

    def f(w, theta, x):
        gg = eqx.tree_at(lambda t: (t.weights, t.connection.theta), g, (w, theta))
        return jnp.sum(jnp.abs(gg.hamiltonian(x)) ** 2)

    args = (g.weights, g.connection.theta, x)
    tangents = tuple(jr.normal(getkey(), a.shape) for a in args)
    _, jvp = jax.jvp(f, args, tangents)
    np.testing.assert_allclose(jvp, finite_difference_jvp(f, args, tangents), rtol=1e-7)
    # Hessian-vector product (forward over reverse) against finite differences of the gradient.
    grad_w = jax.grad(f)
    _, hvp = jax.jvp(lambda w: grad_w(w, *args[1:]), (args[0],), (tangents[0],))
    fd = finite_difference_jvp(lambda w: grad_w(w, *args[1:]), (args[0],), (tangents[0],))
    np.testing.assert_allclose(hvp, fd, rtol=1e-6, atol=1e-8)


def test_vmap_over_features_and_graphs(getkey):
    g = make_graph(getkey(), "magnetic")
    xs = jr.normal(getkey(), (5, N, 3))
    ys = jax.vmap(g.hamiltonian)(xs)
    np.testing.assert_allclose(ys, jnp.stack([g.hamiltonian(x) for x in xs]), atol=1e-12)
    ws = jr.uniform(getkey(), (4, E))
    graphs = jax.vmap(lambda w: eqx.tree_at(lambda t: t.weights, g, w))(ws)
    ys = eqx.filter_vmap(lambda gg: gg.hamiltonian(xs[0]))(graphs)
    loop = [eqx.tree_at(lambda t: t.weights, g, w).hamiltonian(xs[0]) for w in ws]
    np.testing.assert_allclose(ys, jnp.stack(loop), atol=1e-12)

    def energy(w):
        return jnp.sum(jnp.abs(eqx.tree_at(lambda t: t.weights, g, w).laplacian(xs[0])) ** 2)

    gw = jax.vmap(jax.grad(energy))(ws)
    np.testing.assert_allclose(gw, jnp.stack([jax.grad(energy)(w) for w in ws]), rtol=1e-12)


@pytest.mark.parametrize("kind", ["combinatorial", "unitary"])
def test_lineax_operator(getkey, kind):
    g = make_graph(getkey(), kind, potential=False)
    x = node_features(getkey(), g, jnp.complex128, features=())
    # (L + 1) is Hermitian positive definite: solve with lineax against a dense solve.
    op = g.operator(x, potential=False) + lx.IdentityLinearOperator(jax.eval_shape(lambda: x))
    sol = lx.linear_solve(op, x, lx.GMRES(rtol=1e-12, atol=1e-12, restart=100))
    M = g.as_dense(potential=False) + jnp.eye(x.size)
    np.testing.assert_allclose(sol.value.reshape(-1), jnp.linalg.solve(M, x.reshape(-1)), rtol=1e-9)
    assert lx.is_positive_semidefinite(g.operator(x, potential=False))
    np.testing.assert_allclose(g.operator(x).transpose().as_matrix(), g.as_dense().T, atol=1e-12)


@pytest.mark.parametrize("kind", ["combinatorial", pytest.param("unitary", marks=pytest.mark.slow)])
def test_kron_reduction(getkey, kind):
    g = make_graph(getkey(), kind)
    keep = np.arange(0, N, 3)
    shift = 5.0  # makes H + c positive definite whatever the random potential
    K = jg.kron_reduction(g, keep, shift)
    M = g.as_dense() + shift * jnp.eye(N * g.fiber)
    k = g.fiber
    S = (keep[:, None] * k + np.arange(k)).reshape(-1)
    B = np.setdiff1d(np.arange(N * k), S)
    expect = M[np.ix_(S, S)] - M[np.ix_(S, B)] @ np.linalg.solve(M[np.ix_(B, B)], M[np.ix_(B, S)])
    np.testing.assert_allclose(K, expect, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(
        jg.kron_reduction(g, keep, shift, solver=lx.LU()), expect, atol=1e-10
    )


def test_kron_series_and_parallel():
    """Closed forms: resistors in series (path) and in parallel (two paths)."""
    path = jg.from_edges([[0, 1], [1, 2]], [2.0, 3.0])
    K = jg.kron_reduction(path, [0, 2])
    w = 2 * 3 / (2 + 3)
    np.testing.assert_allclose(K, [[w, -w], [-w, w]], atol=1e-12)
    # Two parallel two-edge paths 0-1-3 and 0-2-3: conductance 1/2 + 1/2.
    square = jg.from_edges([[0, 1], [1, 3], [0, 2], [2, 3]])
    np.testing.assert_allclose(jg.kron_reduction(square, [0, 3]), [[1, -1], [-1, 1]], atol=1e-12)


def test_kron_reduction_gradient():
    """Reverse mode through the matrix-free Schur complement: the series conductance
    `w1 w2 / (w1 + w2)` has derivative `(w2^2, w1^2) / (w1 + w2)^2`."""

    def conductance(w):
        return jg.kron_reduction(jg.from_edges([[0, 1], [1, 2]], w), [0, 2])[0, 0]

    w = jnp.array([2.0, 3.0])
    np.testing.assert_allclose(jax.grad(conductance)(w), w[::-1] ** 2 / w.sum() ** 2, rtol=1e-10)


def test_float32_default_and_x64(getkey):
    g = jg.from_edges([[0, 1]], jnp.ones(1, jnp.float32))
    assert g.hamiltonian(jnp.ones((2, 3), jnp.float32)).dtype == jnp.float32
    gm = jg.Graph(
        [0], [1], jnp.ones(1, jnp.float32), connection=jg.PhaseConnection(jnp.zeros(1, jnp.float32))
    )
    assert gm.hamiltonian(jnp.ones((2, 3), jnp.float32)).dtype == jnp.complex64


def test_errors():
    with pytest.raises(ValueError, match="non-negative"):
        jg.from_edges([[0, 1]], [-1.0])
    with pytest.raises(ValueError, match="finite"):
        jg.from_edges([[0, 1]], [jnp.nan])
    with pytest.raises(ValueError, match="self-loops"):
        jg.from_edges([[0, 0]])
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        jg.from_edges([[0, 2]], num_nodes=2)
    with pytest.raises(ValueError, match="shape"):
        jg.from_edges([[0, 1]], [1.0, 2.0])
    with pytest.raises(TypeError, match="integer"):
        jg.Graph([0.0], [1.0])
    with pytest.raises(TypeError, match="floating"):
        jg.from_edges([[0, 1]], jnp.array([1]))
    with pytest.raises(ValueError, match="unitary"):
        jg.BlockConnection(jnp.full((1, 2, 2), 2.0))
    with pytest.raises(ValueError, match="edges"):
        jg.Graph([0], [1], connection=jg.PhaseConnection(jnp.zeros(2)))
    with pytest.raises(ValueError, match="potential"):
        jg.Graph([0], [1], potential=jnp.zeros(3))
    g = jg.Graph([0], [1], connection=jg.BlockConnection(jnp.eye(2)[None]))
    with pytest.raises(ValueError, match=r"\(2, 2, \.\.\.\)"):
        g.hamiltonian(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="k must be"):
        jg.knn_graph(np.zeros((3, 2)), 3)
    with pytest.raises(ValueError, match="not empty|non-empty"):
        jg.kron_reduction(jg.from_edges([[0, 1]]), [])
    with pytest.raises(ValueError, match="undirected"):
        jg.from_networkx(nx.DiGraph([(0, 1)]))
