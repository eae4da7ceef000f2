"""Complexity figures: parameter counts (closed forms), degrees, spectral and Lipschitz bounds."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import networkx as nx
import numpy as np
import pytest

import jaxstat.equivalence as je
import jaxstat.graphs as jg
import jaxstat.stationary as js
import jaxstat.supragraph as jsg

from ..helpers import check_grad_fd
from .test_convert import magnetic_layer
from .test_lift import hermitian, simple_graph
from .test_resolvent import C, IN, layer, N


E = 14  # edges of `magnetic_layer`'s graph


def test_parameter_counts_closed_forms(getkey):
    """Sparse: `2E + n` for a magnetic graph with potential, plus B, b, gamma and kappa; dense:
    the Hermitian `N^2` instead of `2E + n`."""
    st = magnetic_layer(getkey(), js.DrivenDampedModel(jnp.asarray(0.6)), js.ReIm())
    # B (real), b (N, 1), and the model's gamma and kappa: every numeric model parameter is an
    # array leaf (trainable), Python floats included.
    rest = N * IN + N + 2
    assert je.count_parameters(st) == 2 * E + N + rest
    assert je.count_parameters(st, dense=True) == N * N + rest
    same = eqx.tree_at(lambda t: t.model, st, js.DrivenDampedModel(0.6))
    assert je.count_parameters(same) == 2 * E + N + rest
    # Connections: U(1) phases E, signed 1x1 blocks 0, O(3) blocks 3 E, U(2) blocks 4 E.
    real = simple_graph(getkey(), N, E)
    assert je.graph_parameters(real) == E + N
    signed = je.hermitian_lift(real.as_dense().at[0, 1].set(0.5).at[1, 0].set(0.5))
    assert isinstance(signed.connection, jg.BlockConnection)
    assert je.graph_parameters(signed) == signed.num_edges + N
    o3 = simple_graph(getkey(), N, E, connection="orthogonal", fiber=3, potential=False)
    assert je.graph_parameters(o3) == E + 3 * E
    u2 = simple_graph(getkey(), N, E, connection="unitary", fiber=2)
    assert je.graph_parameters(u2) == E + 4 * E + N
    # Resolvent layers: N^2 (complex A) + 2 (z) + B + b; real A: N(N+1)/2 + 1.
    res = layer(getkey(), readout=js.ReIm())
    assert je.count_parameters(res) == N * N + 2 + N * IN + N
    real_res = je.ResolventLayer(real.as_dense(), -1.0, jnp.eye(N), jnp.zeros(N))
    assert je.count_parameters(real_res) == N * (N + 1) // 2 + 1 + N * N + N
    # Networks add up; LinearReadout parameters count.
    ro = js.LinearReadout(jnp.ones((2, 2 * C)), jnp.zeros(2))
    st2 = eqx.tree_at(lambda t: t.readout, st, ro)
    net = jsg.StationaryNetwork([st, st2])
    assert je.count_parameters(net) == 2 * je.count_parameters(st) + 2 * 2 * C + 2


def test_max_degree_against_networkx(getkey):
    G = nx.gnm_random_graph(30, 70, seed=3)
    g, _ = jg.from_networkx(G)
    assert je.max_degree(g) == max(d for _, d in G.degree)
    # Parallel edges count once: a double edge is one neighbour.
    multi = jg.from_edges([[0, 1], [1, 0], [1, 2]], None, 3)
    assert je.max_degree(multi) == 2
    assert je.max_degree(jg.Graph([], [], num_nodes=4)) == 0


@pytest.mark.parametrize("connection", [None, "phase", "unitary"])
def test_spectral_bound_holds(getkey, connection):
    fiber = 2 if connection == "unitary" else 1
    g = simple_graph(getkey(), 20, 45, connection=connection, fiber=fiber)
    norm = float(jnp.max(jnp.abs(jnp.linalg.eigvalsh(g.as_dense()))))
    sharp, coarse = je.spectral_bound(g), je.spectral_bound(g, coarse=True)
    assert norm <= float(sharp) <= float(coarse) + 1e-12
    lay = layer(getkey())
    assert float(jnp.linalg.norm(lay.A, 2)) <= float(je.spectral_bound(lay))


def test_spectral_bound_tight_for_bipartite_regular():
    """An even cycle without potential: `lambda_max(L) = 4 = 2 max deg`, both bounds exact."""
    g = jg.from_edges(np.array(nx.cycle_graph(12).edges), None, 12)
    lam = jnp.linalg.eigvalsh(g.as_dense())[-1]
    np.testing.assert_allclose(lam, 4.0, rtol=1e-14)
    np.testing.assert_allclose(je.spectral_bound(g), 4.0)
    np.testing.assert_allclose(je.spectral_bound(g, coarse=True), 4.0)


def test_layer_lipschitz_bound_holds(getkey):
    """`|(gamma + i H)^{-1} B|_2 <= |B|_2 / gamma` (ReIm is an isometry): the exact Lipschitz
    constant of a linear driven-damped layer never exceeds the bound; same for the gradient
    model (`|(H + mu)^{-1} B| <= |B| / (min V + mu)`) and resolvent layers."""
    for _ in range(3):
        st = magnetic_layer(getkey(), js.DrivenDampedModel(0.4), js.ReIm())
        H = st.graph.as_dense()
        exact = jnp.linalg.norm(jnp.linalg.solve(0.4 * jnp.eye(N) + 1j * H, st.source.B), 2)
        assert float(exact) <= float(je.lipschitz_bound(st)) * (1 + 1e-12)
    g = simple_graph(getkey(), N, E)
    gm = js.StationaryLayer(
        g, js.GradientModel(js.Quadratic(3.0)), js.NodeSource(jnp.eye(N), jnp.zeros(N)), js.ReIm()
    )
    exact = jnp.linalg.norm(jnp.linalg.inv(g.as_dense() + 3.0 * jnp.eye(N)), 2)
    np.testing.assert_allclose(je.monotonicity(gm), jnp.min(g.potential) + 3.0)
    assert float(exact) <= float(je.lipschitz_bound(gm)) * (1 + 1e-12)
    assert float(je.monotonicity(gm)) <= float(je.monotonicity(gm, exact=True)) + 1e-12
    res = layer(getkey(), z=0.2 - 0.7j)
    exact = jnp.linalg.norm(jnp.linalg.solve(res.operator(), res.B), 2)
    assert float(exact) <= float(je.lipschitz_bound(res)) * (1 + 1e-12)
    np.testing.assert_allclose(je.monotonicity(res), 0.7)


def test_lipschitz_bound_tight_for_one_linear_layer(getkey):
    """Equality case: a connected graph without connection or potential (`H = L`, `L 1 = 0`) and
    `B = 1 a^T`: the top singular vector of B maps into `ker H`, so
    `|(gamma + i L)^{-1} B|_2 = |B|_2 / gamma` and the bound is the exact Lipschitz constant,
    attained by the pair `x, x + t a`."""
    n = 12
    g = jg.from_edges(np.array(nx.cycle_graph(n).edges), jr.uniform(getkey(), (n,)) + 0.1, n)
    a = jr.normal(getkey(), (IN,))
    st = js.StationaryLayer(
        g,
        js.DrivenDampedModel(0.3),
        js.NodeSource(jnp.outer(jnp.ones(n), a), jnp.zeros(n)),
        js.ReIm(),
    )
    bound = je.lipschitz_bound(st)
    exact = jnp.linalg.norm(jnp.linalg.solve(0.3 * jnp.eye(n) + 1j * g.as_dense(), st.source.B), 2)
    np.testing.assert_allclose(exact, bound, rtol=1e-12)
    x = jr.normal(getkey(), (IN,))
    ratio = jnp.linalg.norm(st(x + a) - st(x)) / jnp.linalg.norm(a)
    np.testing.assert_allclose(ratio, bound, rtol=1e-9)  # the solver's tolerance


@pytest.mark.slow  # the claim keeps a faster test in the default suite
def test_lipschitz_bound_never_violated_on_random_pairs(getkey):
    """A 3-layer network (magnetic driven-damped, Quadratic gradient, resolvent with a linear
    readout): `|f(x) - f(x')| <= Lip |x - x'|` on 64 random input pairs, at several scales."""
    l1 = magnetic_layer(getkey(), js.DrivenDampedModel(0.5), js.ReIm())
    g = simple_graph(getkey(), N, E)
    l2 = js.StationaryLayer(
        g,
        js.GradientModel(js.Quadratic(2.0)),
        js.NodeSource(jr.normal(getkey(), (N, N)), jnp.zeros((N, 1))),
        js.ReIm(),
    )
    l3 = je.ResolventLayer(
        hermitian(getkey(), N),
        0.8j,
        jr.normal(getkey(), (N, N)),
        jnp.ones((N, 1)),
        js.LinearReadout(jr.normal(getkey(), (3, 8 * C)) / 4, jnp.zeros(3)),
    )
    layers = [l1, l2, l3]
    bound = float(je.lipschitz_bound(layers))

    @jax.vmap
    def ratio(x, dx):
        f = lambda x: _apply(layers, x)  # noqa: E731
        return jnp.linalg.norm(f(x + dx) - f(x)) / jnp.linalg.norm(dx)

    xs = jr.normal(getkey(), (64, IN, C))
    dxs = jr.normal(getkey(), (64, IN, C)) * jnp.logspace(-3, 1, 64)[:, None, None]
    r = ratio(xs, dxs)
    assert bool(jnp.all(r <= bound * (1 + 1e-9)))  # 1e-9: the stationary solver's tolerance
    assert float(jnp.max(r)) > 0  # the test is not vacuous


def _apply(layers, x):
    for lay in layers:
        x = lay(x)
    return x


def test_lipschitz_bound_is_differentiable(getkey):
    """Usable as a regulariser: jit and grad (against finite differences) in B, gamma, V."""
    st = magnetic_layer(getkey(), js.DrivenDampedModel(jnp.asarray(0.6)), js.ReIm())

    def f(B, gamma):
        lay = eqx.tree_at(lambda t: (t.source.B, t.model.gamma), st, (B, gamma))
        return je.lipschitz_bound(lay)

    np.testing.assert_allclose(jax.jit(f)(st.source.B, st.model.gamma), f(st.source.B, 0.6))
    check_grad_fd(f, st.source.B, st.model.gamma, key=getkey(), rtol=1e-6)
    np.testing.assert_allclose(
        jax.grad(f, argnums=1)(st.source.B, st.model.gamma), -f(st.source.B, 0.6) / 0.6
    )


def test_monotonicity_and_lipschitz_failures(getkey):
    kerr = magnetic_layer(getkey(), js.DrivenDampedModel(0.5, kappa=0.3), js.ReIm())
    with pytest.raises(ValueError, match="kappa"):
        je.lipschitz_bound(kerr)
    intensity = magnetic_layer(getkey(), js.DrivenDampedModel(0.5), js.Intensity())
    with pytest.raises(ValueError, match="not globally Lipschitz"):
        je.lipschitz_bound(intensity)
    g = simple_graph(getkey(), N, E)
    src = js.NodeSource(jnp.eye(N), jnp.zeros(N))
    dw = js.StationaryLayer(g, js.GradientModel(js.DoubleWell()), src, js.Identity())
    with pytest.raises(ValueError, match="not strongly convex"):
        je.lipschitz_bound(dw)
    neg = js.StationaryLayer(g, js.GradientModel(js.Quadratic(-20.0)), src, js.Identity())
    with pytest.raises(ValueError, match="not strongly monotone"):
        je.lipschitz_bound(neg)
    with pytest.raises(eqx.EquinoxRuntimeError, match="not strongly monotone"):
        eqx.filter_jit(je.lipschitz_bound)(neg)
    with pytest.raises(TypeError, match="layer or a network"):
        je.lipschitz_bound("net")


def test_complexity_report(getkey):
    l1 = magnetic_layer(getkey(), js.DrivenDampedModel(jnp.asarray(0.5)), js.ReIm())
    l2 = magnetic_layer(getkey(), js.DrivenDampedModel(jnp.asarray(0.7)), js.ReIm())
    l2 = eqx.tree_at(lambda t: t.source.B, l2, jnp.eye(N).at[0, 1].set(1.0))
    net = [l1, l2]
    c = je.complexity(net)
    assert [lc.num_edges for lc in c.layers] == [E, E]
    assert c.layers[1].inter_edges == N + 1  # nnz(B_2): the supra-graph's edges into layer 2
    assert c.supra_edges == 2 * E + N * IN + N + 1
    assert c.num_params == je.count_parameters(net)
    assert c.num_params_dense == je.count_parameters(net, dense=True)
    np.testing.assert_allclose(c.lipschitz, je.lipschitz_bound(net), rtol=1e-12)
    np.testing.assert_allclose(c.layers[0].monotonicity, 0.5)
    assert c.max_degree == max(je.max_degree(lay.graph) for lay in net)
    assert c.table().count("\n") == 3
