"""Admissible lifts: Hermitian matrices as graph Hamiltonians, sheaf <-> scalar graphs."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import networkx as nx
import numpy as np
import pytest

import jaxstat.equivalence as je
import jaxstat.graphs as jg

from ..helpers import check_grad_fd


def hermitian(key, n, complex_=True, dtype=jnp.float64):
    k1, k2 = jr.split(key)
    X = jr.normal(k1, (n, n), dtype)
    if complex_:
        X = X + 1j * jr.normal(k2, (n, n), dtype)
    return (X + jnp.conj(X.T)) / 2


def simple_graph(key, n, E, *, connection=None, fiber=2, dtype=jnp.float64, potential=True):
    """A random simple graph (no parallel edges: a multigraph's summed blocks are not conformal)."""
    k1, k2, k3 = jr.split(key, 3)
    seed = int(jr.randint(k1, (), 0, 2**30))
    edges = np.array(nx.gnm_random_graph(n, E, seed=seed).edges)
    w = jr.uniform(k2, (E,), dtype, 0.2, 1.5)
    conn = None
    if connection == "phase":
        conn = jg.PhaseConnection(jr.uniform(k3, (E,), dtype, -np.pi, np.pi))
    elif connection == "orthogonal":
        conn = jg.BlockConnection(jg.random_unitary_blocks(k3, E, fiber, dtype))
    elif connection == "unitary":
        cdtype = jnp.complex128 if dtype == jnp.float64 else jnp.complex64
        conn = jg.BlockConnection(jg.random_unitary_blocks(k3, E, fiber, cdtype))
    V = jr.normal(k3, (n,), dtype) if potential else None
    return jg.from_edges(edges, w, n, connection=conn, potential=V)


@pytest.mark.parametrize("complex_", [True, False])
def test_lift_reproduces_dense_hermitian(getkey, complex_):
    """`hermitian_lift(H).as_dense() == H` for random dense Hermitian `H` (complex: magnetic
    graph; real: signed graph with U = -sign(H_ij))."""
    H = hermitian(getkey(), 9, complex_)
    g = je.hermitian_lift(H)
    assert g.num_nodes == 9 and g.num_edges == 36  # every off-diagonal pair is non-zero
    expect = jg.PhaseConnection if complex_ else jg.BlockConnection
    assert isinstance(g.connection, expect)
    assert g.as_dense().dtype == H.dtype
    # Rounding of w * exp(i theta) and of V = H_ii - deg_i: a few ulps of |H| ~ 1.
    np.testing.assert_allclose(g.as_dense(), H, rtol=0, atol=1e-14)
    # The formulas of SPEC E, entry by entry.
    s, r = np.asarray(g.senders), np.asarray(g.receivers)
    np.testing.assert_allclose(g.weights, jnp.abs(H[s, r]), rtol=1e-15)
    deg = jnp.sum(jnp.abs(H), axis=1) - jnp.abs(jnp.diagonal(H))
    np.testing.assert_allclose(g.potential, jnp.real(jnp.diagonal(H)) - deg, atol=1e-14)
    if complex_:
        np.testing.assert_allclose(
            jnp.exp(1j * g.connection.theta), -H[s, r] / jnp.abs(H[s, r]), atol=1e-15
        )


def test_signed_and_combinatorial_cases():
    """A positive off-diagonal entry needs U = -1 (phase pi); non-positive ones give the
    combinatorial graph without a connection."""
    H = jnp.array([[2.0, -1.0, 0.5], [-1.0, 1.0, 0.0], [0.5, 0.0, 3.0]])
    g = je.hermitian_lift(H)
    assert g.num_edges == 2
    blocks = np.asarray(g.connection.blocks)[:, 0, 0]
    pairs = {(int(a), int(b)): u for a, b, u in zip(g.senders, g.receivers, blocks)}
    assert pairs == {(0, 1): 1.0, (0, 2): -1.0}
    assert g.as_dense().dtype == jnp.float64  # the signed graph stays real
    np.testing.assert_array_equal(g.as_dense(), H)
    L = jnp.array([[1.0, -1.0, 0.0], [-1.0, 2.0, -1.0], [0.0, -1.0, 1.0]])
    gl = je.hermitian_lift(L)
    assert gl.connection is None
    np.testing.assert_array_equal(gl.weights, [1.0, 1.0])
    np.testing.assert_array_equal(gl.potential, [0.0, 0.0, 0.0])  # a Laplacian: V = 0


@pytest.mark.parametrize("connection", [None, "phase", "orthogonal", "unitary"])
def test_graph_dense_graph_round_trip(getkey, connection):
    """graph -> dense H -> graph: the same operator, the same weights and potential, and the
    same connection up to edge orientation."""
    fiber = 1 if connection in (None, "phase") else 3
    g = simple_graph(getkey(), 12, 25, connection=connection, fiber=fiber)
    H = je.dense_hamiltonian(g)
    back = je.hermitian_lift(H, fiber)
    np.testing.assert_allclose(back.as_dense(), H, atol=1e-14)
    s0, r0 = np.asarray(g.senders), np.asarray(g.receivers)
    order = {(min(a, b), max(a, b)): e for e, (a, b) in enumerate(zip(s0, r0))}
    perm = [order[(a, b)] for a, b in zip(np.asarray(back.senders), np.asarray(back.receivers))]
    np.testing.assert_allclose(back.weights, np.asarray(g.weights)[perm], rtol=1e-13)
    np.testing.assert_allclose(back.potential, g.potential, atol=1e-13)
    if connection in ("orthogonal", "unitary"):
        flipped = np.asarray(g.senders)[perm] != np.asarray(back.senders)
        U = np.asarray(g.connection.blocks)[perm]
        U = np.where(flipped[:, None, None], np.conj(U).swapaxes(-1, -2), U)
        np.testing.assert_allclose(back.connection.blocks, U, atol=1e-13)


def test_sheaf_lift_needs_conformal_blocks(getkey):
    """k > 1: a generic Hermitian matrix is not admissible (clear error); `project=True` returns
    the Frobenius-nearest admissible lift, which beats any other conformal choice."""
    H = hermitian(getkey(), 8)
    with pytest.raises(ValueError, match="not a multiple of a unitary"):
        je.hermitian_lift(H, 2)
    g = je.hermitian_lift(H, 2, project=True)
    P = g.as_dense()
    # Block (0, 1): the projection minimises |H_01 + w U|_F over w >= 0 and unitary U.
    blk = H[0:2, 2:4]
    best = float(jnp.linalg.norm(blk - P[0:2, 2:4]))
    for key in jr.split(getkey(), 20):
        U = jg.random_unitary_blocks(key, 1, 2, jnp.complex128)[0]
        for w in np.linspace(0, 3, 31):
            assert best <= float(jnp.linalg.norm(blk + w * U)) + 1e-12
    # w is the mean singular value of the block.
    sv = jnp.linalg.svd(blk, compute_uv=False)
    e = [i for i, (a, b) in enumerate(zip(g.senders, g.receivers)) if (a, b) == (0, 1)][0]
    np.testing.assert_allclose(g.weights[e], jnp.mean(sv), rtol=1e-14)


def test_sheaf_lift_needs_scalar_diagonal_blocks(getkey):
    g = simple_graph(getkey(), 6, 8, connection="unitary", fiber=2)
    H = g.as_dense().at[0, 1].add(0.3).at[1, 0].add(0.3)  # breaks the diagonal block (0, 0)
    with pytest.raises(ValueError, match="diagonal block is not a real multiple"):
        je.hermitian_lift(H, 2)


def test_lift_errors():
    with pytest.raises(ValueError, match="not Hermitian"):
        je.hermitian_lift(jnp.array([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="square"):
        je.hermitian_lift(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="not Hermitian"):
        je.hermitian_lift(jnp.array([[1.0, jnp.nan], [jnp.nan, 1.0]]))
    with pytest.raises(TypeError):  # integer matrices (jaxtyping or our own check)
        je.hermitian_lift(jnp.eye(3, dtype=jnp.int32))
    with pytest.raises(TypeError, match="floating"):
        je.check_hermitian(jnp.eye(3, dtype=jnp.int32))
    with pytest.raises(ValueError, match="divisor"):
        je.hermitian_lift(jnp.eye(5), 2)
    with pytest.raises(ValueError, match="edges must be"):
        je.hermitian_lift(jnp.eye(3), edges=np.array([0, 1]))
    with pytest.raises(ValueError, match="pass `edges`"):
        jax.jit(lambda H: je.hermitian_lift(H).weights)(jnp.eye(3))


def test_non_hermitian_inside_jit_raises():
    """Traced values: `eqx.error_if` instead of a silent wrong graph."""
    f = eqx.filter_jit(lambda H: je.hermitian_lift(H, edges=[[0, 1]]).weights)
    assert np.isfinite(f(jnp.array([[1.0, 2.0], [2.0, 1.0]]))).all()
    with pytest.raises(eqx.EquinoxRuntimeError, match="not Hermitian"):
        f(jnp.array([[1.0, 2.0], [0.5, 1.0]]))


@pytest.mark.slow  # no default-suite version: the lift is covered there, not its jit, grad, vmap
def test_lift_with_fixed_edges_is_differentiable_and_vmaps(getkey):
    """With `edges` given: jit, grad (against finite differences) and vmap (against a loop)."""
    edges = np.array(nx.cycle_graph(6).edges)
    mask = np.zeros((6, 6), bool)
    mask[edges[:, 0], edges[:, 1]] = mask[edges[:, 1], edges[:, 0]] = True
    mask |= np.eye(6, dtype=bool)

    def sample(key):
        return jnp.where(mask, hermitian(key, 6) + 4 * jnp.eye(6), 0)

    def loss(X):  # perturbations of X stay Hermitian with the pattern of `mask`
        H = jnp.where(mask, (X + jnp.conj(X.T)) / 2, 0)
        g = je.hermitian_lift(H, edges=edges)
        x = jnp.arange(6.0) + 1j
        return jnp.real(jnp.vdot(x, g.hamiltonian(x))) + jnp.sum(g.weights**3)

    X = sample(getkey())
    jitted = jax.jit(loss)
    np.testing.assert_allclose(jitted(X), loss(X), rtol=1e-14)
    check_grad_fd(jitted, X, key=getkey(), rtol=1e-6)  # the stencil reuses one compilation
    Hs = jnp.stack([sample(k) for k in jr.split(getkey(), 3)])
    dense = jax.vmap(lambda H: je.hermitian_lift(H, edges=edges).as_dense())(Hs)
    for i in range(3):
        np.testing.assert_allclose(dense[i], je.hermitian_lift(Hs[i]).as_dense(), atol=1e-14)
        np.testing.assert_allclose(dense[i], Hs[i], atol=1e-14)


@pytest.mark.parametrize("connection", ["orthogonal", "unitary"])
def test_sheaf_to_scalar_and_back(getkey, connection):
    g = simple_graph(getkey(), 10, 18, connection=connection, fiber=3)
    sc = je.sheaf_to_scalar(g)
    assert sc.num_nodes == 30 and sc.fiber == 1
    assert sc.num_edges == 18 * 9  # Haar blocks have no zero entry
    np.testing.assert_allclose(sc.as_dense(), g.as_dense(), atol=1e-14)
    if connection == "orthogonal":  # real blocks -> a real signed graph
        assert sc.as_dense().dtype == jnp.float64
    back = je.scalar_to_sheaf(sc, 3)
    assert back.num_edges == 18
    np.testing.assert_allclose(back.as_dense(), g.as_dense(), atol=1e-14)


@pytest.mark.slow  # default suite: test_sheaf_to_scalar_and_back (dense Haar blocks only)
def test_signed_permutation_sheaf_is_sparse(getkey):
    """Signed permutation blocks (O(k)) give `E k` scalar edges: zeros are dropped."""
    E, k = 12, 4
    keys = jr.split(getkey(), E)
    blocks = []
    for key in keys:
        p = jr.permutation(key, k)
        signs = jnp.where(jr.bernoulli(key, 0.5, (k,)), 1.0, -1.0)
        blocks.append(jnp.eye(k)[p] * signs[:, None])
    g = simple_graph(getkey(), 8, E)
    g = jg.Graph(
        g.senders, g.receivers, g.weights, 8, connection=jg.BlockConnection(jnp.stack(blocks))
    )
    sc = je.sheaf_to_scalar(g)
    assert sc.num_edges == E * k
    np.testing.assert_array_equal(sc.as_dense(), g.as_dense())


def test_scalar_to_sheaf_errors(getkey):
    g = simple_graph(getkey(), 9, 15)
    with pytest.raises(ValueError, match="divide"):
        je.scalar_to_sheaf(g, 2)
    path = jg.from_edges([[0, 1], [1, 2], [2, 3]], None, 4)  # edge (0, 1) inside group 0
    with pytest.raises(ValueError, match="same group"):
        je.scalar_to_sheaf(path, 2)
    with pytest.raises(ValueError, match="scalar graph"):
        je.scalar_to_sheaf(simple_graph(getkey(), 4, 3, connection="unitary"), 2)
    # Grouping nodes whose blocks are not conformal: no edge inside a group (pairs (0, 1),
    # (2, 3), (4, 5) are zero), a constant diagonal, generic (non-conformal) 2 x 2 blocks between.
    group = np.arange(6) // 2
    H = jnp.where(group[:, None] == group[None, :], 0, hermitian(getkey(), 6)) + 8 * jnp.eye(6)
    g = je.hermitian_lift(H)
    assert not np.any(np.asarray(g.senders) // 2 == np.asarray(g.receivers) // 2)
    with pytest.raises(ValueError, match="not a multiple of a unitary"):
        je.scalar_to_sheaf(g, 2)


def test_lift_float32(getkey):
    """float32 in, float32 out; exact to single-precision rounding."""
    H = hermitian(getkey(), 7, complex_=False, dtype=jnp.float32)
    g = je.hermitian_lift(H)
    assert g.weights.dtype == jnp.float32 and g.as_dense().dtype == jnp.float32
    np.testing.assert_allclose(g.as_dense(), H, atol=5e-6)  # a few ulps of |H| ~ 3
