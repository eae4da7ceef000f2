"""Step graphons, graphons as functions, discretisation and W-random graphs."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import networkx as nx
import numpy as np
import pytest

import jaxstat.graphons as gn


SBM = jnp.array([[0.8, 0.1, 0.3], [0.1, 0.6, 0.2], [0.3, 0.2, 0.9]])


def test_step_graphon_evaluation_and_blocks():
    W = gn.StepGraphon(SBM, jnp.array([0.5, 0.25, 0.25]))
    x = jnp.array([0.0, 0.3, 0.5, 0.6, 0.75, 0.99, 1.0])
    # blocks [0, .5), [.5, .75), [.75, 1]
    np.testing.assert_array_equal(W.block_index(x), [0, 0, 1, 1, 2, 2, 2])
    np.testing.assert_allclose(W(0.1, 0.8), 0.3)
    np.testing.assert_allclose(
        W(x[:, None], x[None, :]), SBM[W.block_index(x)][:, W.block_index(x)]
    )
    assert W.n == 3
    # integer and boolean adjacency matrices become the default float dtype
    G = gn.StepGraphon(jnp.array([[0, 1], [1, 0]]))
    assert G.values.dtype == jnp.float64 and G.sizes.dtype == jnp.float64
    np.testing.assert_allclose(G.sizes, [0.5, 0.5])
    assert gn.StepGraphon(jnp.eye(2, dtype=bool)).values.dtype == jnp.float64
    assert gn.StepGraphon(jnp.eye(2, dtype=jnp.float32)).values.dtype == jnp.float32


def test_refine_and_permute_are_the_same_graphon(getkey):
    W = gn.StepGraphon(SBM, jnp.array([0.5, 0.25, 0.25]))
    R = W.refine(4)
    assert R.n == 12
    x = jr.uniform(getkey(), (200,))
    y = jr.uniform(getkey(), (200,))
    np.testing.assert_array_equal(R(x, y), W(x, y))
    np.testing.assert_allclose(gn.l2_distance(W, R), 0.0, atol=1e-15)
    P = W.permute(jnp.array([2, 0, 1]))
    np.testing.assert_allclose(P.values, np.asarray(SBM)[[2, 0, 1]][:, [2, 0, 1]])
    np.testing.assert_allclose(P.sizes, [0.25, 0.5, 0.25])
    with pytest.raises(ValueError, match="positive integer"):
        W.refine(0)
    with pytest.raises(ValueError, match="permutation"):
        W.permute(jnp.arange(4))


def test_from_networkx():
    G = nx.petersen_graph()
    W = gn.StepGraphon.from_networkx(G)
    np.testing.assert_array_equal(W.values, nx.to_numpy_array(G))
    # edge density: 2|E| / n^2
    np.testing.assert_allclose(gn.homomorphism_density([(0, 1)], W), 2 * 15 / 100)
    H = nx.Graph()
    H.add_edge("a", "b", weight=0.25)
    np.testing.assert_allclose(gn.StepGraphon.from_networkx(H, weight="weight").values[0, 1], 0.25)
    with pytest.raises(TypeError, match="undirected"):
        gn.StepGraphon.from_networkx(nx.DiGraph([(0, 1)]))


def test_function_graphon_and_discretise():
    W = gn.FunctionGraphon(lambda x, y: x * y)
    np.testing.assert_allclose(W(0.5, 0.4), 0.2)
    Wn = gn.discretise(W, 4)
    c = (np.arange(4) + 0.5) / 4
    np.testing.assert_allclose(Wn.values, np.outer(c, c))
    np.testing.assert_allclose(Wn.sizes, 0.25)
    # Gauss-Legendre: weights sum to 1, and node i lies in block i (interlacing)
    Wg = gn.discretise(W, 7, rule=gn.GaussLegendre())
    x, mu = gn.GaussLegendre().nodes_and_weights(7, jnp.float64)
    np.testing.assert_allclose(jnp.sum(mu), 1.0, rtol=1e-14)
    np.testing.assert_array_equal(Wg.block_index(x), np.arange(7))
    # resampling a step graphon on a refining grid reproduces it
    S = gn.StepGraphon(SBM)
    np.testing.assert_allclose(gn.discretise(S, 12).values, S.refine(4).values)
    # a constant function broadcasts
    np.testing.assert_allclose(gn.discretise(gn.FunctionGraphon(lambda x, y: 0.5), 3).values, 0.5)
    with pytest.raises(TypeError, match="graphon"):
        gn.discretise(SBM, 3)
    with pytest.raises(ValueError, match="positive integer"):
        gn.discretise(W, 0)


def test_function_graphon_checks():
    # Concrete values are checked on the host (a ValueError), traced ones inside the program.
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        gn.discretise(gn.FunctionGraphon(lambda x, y: 2 * x * y), 4)
    with pytest.raises(ValueError, match="symmetric"):
        gn.discretise(gn.FunctionGraphon(lambda x, y: x * (1 - y) ** 2), 4)
    with pytest.raises(ValueError, match="NaN"):
        gn.discretise(gn.FunctionGraphon(lambda x, y: jnp.log(x - y) + 0.5), 4)
    with pytest.raises(eqx.EquinoxRuntimeError, match=r"\[0, 1\]"):
        eqx.filter_jit(lambda c: gn.discretise(gn.FunctionGraphon(lambda x, y: c * x * y), 4))(
            jnp.array(2.0)
        )
    # Sampling checks the values W(x_i, x_j) it draws: on the host, or in the program.
    bad = gn.FunctionGraphon(lambda x, y: 2 * x * y)
    name = r"^graphon values W\(x_i, x_j\) must lie in \[0, 1\] \(clip them first\)$"
    with pytest.raises(ValueError, match=name):
        gn.sample_graph(jr.key(0), bad, 8)
    with pytest.raises(ValueError, match=name):
        gn.sample_weighted_graph(jr.key(0), bad, 8)
    with pytest.raises(eqx.EquinoxRuntimeError, match=r"must lie in \[0, 1\]"):
        eqx.filter_jit(lambda k: gn.sample_graph(k, bad, 8))(jr.key(0))


def test_sample_weighted_graph(getkey):
    W = gn.FunctionGraphon(lambda x, y: 0.2 + 0.6 * x * y)
    key = getkey()
    A = gn.sample_weighted_graph(key, W, 50)
    np.testing.assert_allclose(A, A.T)
    np.testing.assert_array_equal(jnp.diag(A), 0)
    # the same key gives the same latent positions; sort only relabels the nodes
    B = gn.sample_weighted_graph(key, W, 50, sort=True, loops=True)
    order = jnp.argsort(gn.sample_latent(key, 50))
    np.testing.assert_allclose(B * (1 - jnp.eye(50)), A[order][:, order])
    # with sorted latent positions the diagonal increases (W(x, x) increases in x)
    assert jnp.all(jnp.diff(jnp.diag(B)) >= 0)
    # entries are W at the latent positions
    xs = jnp.sort(gn.sample_latent(key, 50))
    np.testing.assert_allclose(B, W(xs[:, None], xs[None, :]))


def test_sample_graph_statistics(getkey):
    # G(n, W) with W = 0.2 + 0.6 xy: t(K2, W) = 0.2 + 0.6 / 4 = 0.35.
    # Unconditionally E[t(K2, G)] = (1 - 1/n) 0.35; the U-statistic variance is about
    # 4 Var(0.2 + 0.3 x) / n = 1e-4 (std 0.01) per graph of n = 300, 0.0035 for the mean of 8:
    # a 0.014 window is 4 sigma. Given the latent positions (the weighted graph drawn from the same
    # key), the edges are independent Bernoulli(P_ij): the mean of A - P over the n(n-1)/2 pairs
    # has std <= 0.5 / sqrt(n(n-1)/2) = 2.4e-3; a 0.012 window is 5 sigma.
    W = gn.FunctionGraphon(lambda x, y: 0.2 + 0.6 * x * y)
    n = 300
    keys = jr.split(getkey(), 8)
    As = jax.vmap(lambda k: gn.sample_graph(k, W, n))(keys)
    assert set(np.unique(np.asarray(As))) <= {0.0, 1.0}
    np.testing.assert_array_equal(As, jnp.swapaxes(As, 1, 2))
    np.testing.assert_array_equal(jnp.diagonal(As, axis1=1, axis2=2), 0)
    densities = jax.vmap(lambda a: gn.homomorphism_density([(0, 1)], a))(As)
    np.testing.assert_allclose(jnp.mean(densities), 0.35 * (1 - 1 / n), atol=0.014)
    # (sample_graph draws the latent positions from the first half of the split key)
    Ps = jax.vmap(lambda k: gn.sample_weighted_graph(jr.split(k)[0], W, n))(keys)
    iu = np.triu_indices(n, 1)
    gaps = np.mean(np.asarray(As - Ps)[:, iu[0], iu[1]], axis=1)
    np.testing.assert_allclose(gaps, 0.0, atol=0.012)
