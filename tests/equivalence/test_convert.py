"""Exact conversions: resolvent <-> graph-stationary <-> supra-graph <-> sheaf networks compute the
same function (float64, random inputs; agreement to 1e-10 relative, the stationary solver's
tolerance)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import jaxstat.equivalence as je
import jaxstat.stationary as js
import jaxstat.supragraph as jsg

from .test_lift import hermitian, simple_graph
from .test_resolvent import C, IN, layer, N


# The stationary solve stops at max |F| <= 1e-10 (float64); with a modulus >= 0.5 and outputs of
# size ~1 the states agree to ~2e-10. Dense resolvent paths agree to rounding (~1e-14).
RTOL = 1e-9


def close(a, b, rtol=RTOL):
    scale = float(jnp.max(jnp.abs(b)))
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * max(scale, 1.0))


@pytest.mark.parametrize("z", [0.3 + 0.8j, -0.2 - 1.1j, "real"])
@pytest.mark.parametrize("complex_", [True, False])
def test_resolvent_layer_round_trip(getkey, z, complex_):
    """Resolvent -> graph-stationary (admissible lift) -> resolvent: the same function. Im z > 0
    and < 0 give driven-damped layers (gamma = |Im z|), a real z below the spectrum a
    Quadratic gradient layer."""
    if z == "real":
        A = hermitian(getkey(), N, complex_)
        z = float(jnp.linalg.eigvalsh(A)[0]) - 0.7
        lay = je.ResolventLayer(A, z, jr.normal(getkey(), (N, IN)), jr.normal(getkey(), (N, 1)))
    else:
        lay = layer(getkey(), z=z, complex_=complex_, readout=js.ReIm())
    x = jr.normal(getkey(), (IN, C))
    st = je.to_stationary(lay)
    assert st.graph.num_edges == N * (N - 1) // 2  # one edge per non-zero off-diagonal
    if jnp.imag(lay.z) != 0:
        assert isinstance(st.model, js.DrivenDampedModel)
        np.testing.assert_allclose(st.model.gamma, abs(jnp.imag(lay.z)))
    else:
        assert isinstance(st.model, js.GradientModel)
    close(st(x), lay(x))
    back = je.to_resolvent(st)
    close(back(x), lay(x), 1e-12)


def magnetic_layer(key, model, readout):
    k1, k2, k3, k4 = jr.split(key, 4)
    g = simple_graph(k1, N, 14, connection="phase")
    B = jr.normal(k2, (N, IN)) / np.sqrt(IN)
    b = 0.1 * jr.normal(k3, (N, 1))
    return js.StationaryLayer(g, model, js.NodeSource(B, b), readout)


READOUTS = {
    "reim": js.ReIm(),
    "identity": js.Identity(),
    "linear": js.LinearReadout(jnp.ones((2, 2 * C)) / C, jnp.array([0.1, -0.2])),
}


@pytest.mark.parametrize("readout", list(READOUTS))
def test_stationary_layer_to_resolvent(getkey, readout):
    """`A = H`, `z = i gamma`, `B_res = -i B`: the resolvent state equals the stationary state."""
    st = magnetic_layer(getkey(), js.DrivenDampedModel(jnp.asarray(0.6)), READOUTS[readout])
    res = je.to_resolvent(st)
    np.testing.assert_allclose(res.A, st.graph.as_dense(), atol=1e-15)
    np.testing.assert_allclose(res.z, 0.6j)
    np.testing.assert_allclose(res.B, -1j * st.source.B)
    x = jr.normal(getkey(), (IN, C))
    close(res.state(x), st.solve(x).value)
    close(res(x), st(x))


def test_gradient_model_layer_to_resolvent(getkey):
    g = simple_graph(getkey(), N, 14)  # real: a real symmetric resolvent layer
    src = js.NodeSource(jnp.eye(N)[:, :IN], jnp.zeros(N))
    st = js.StationaryLayer(g, js.GradientModel(js.Quadratic(2.5)), src, js.Identity())
    res = je.to_resolvent(st)
    assert res.A.dtype == jnp.float64 and float(res.z) == -2.5
    x = jr.normal(getkey(), (IN,))
    close(res(x), st(x))


def test_gradients_agree_across_representations(getkey):
    """`jax.grad` through the stationary layer (implicit adjoint) equals `jax.grad` through its
    resolvent form (dense LU), for the edge weights, phases, potential, gamma, B, b and x."""
    st = magnetic_layer(getkey(), js.DrivenDampedModel(jnp.asarray(0.6)), js.ReIm())
    x = jr.normal(getkey(), (IN, C))
    target = jr.normal(getkey(), (N, 2 * C))

    # kappa = 0 is what makes the layer a resolvent: it is frozen (not differentiated), so the
    # conversion sees its concrete value; every other parameter is differentiated.
    spec = eqx.tree_at(lambda t: t.model.kappa, jax.tree.map(eqx.is_inexact_array, st), False)
    params, static = eqx.partition(st, spec)

    def loss(params_x, dense):
        params, x = params_x
        layer = eqx.combine(params, static)
        f = je.to_resolvent(layer) if dense else layer
        return jnp.sum((f(x) - target) ** 2)

    # One gradient program per representation, with respect to the layer and the input at once.
    g_impl = eqx.filter_jit(eqx.filter_grad(loss))((params, x), False)
    g_dense = eqx.filter_jit(eqx.filter_grad(loss))((params, x), True)
    leaves = jax.tree.leaves(g_impl)
    assert len(leaves) == len(jax.tree.leaves(g_dense)) >= 6  # w, theta, V, gamma, B, b, x
    for a, b in zip(leaves, jax.tree.leaves(g_dense)):
        close(a, b, 1e-8)  # the implicit adjoint's GMRES tolerance, 1e-11 relative


def test_network_and_supragraph_round_trip(getkey):
    """ResolventNetwork -> StationaryNetwork: the sequential forward pass and the supra-graph
    global solve (`jaxstat.supragraph.solve`) both equal the resolvent states; and back."""
    l1 = layer(getkey(), readout=js.ReIm())
    l2 = je.ResolventLayer(
        hermitian(getkey(), N), -0.9j, jr.normal(getkey(), (N, N)) / N, jr.normal(getkey(), (N, 1))
    )
    net = je.ResolventNetwork([l1, l2])
    x = jr.normal(getkey(), (IN, C))
    snet = je.to_stationary(net)
    assert isinstance(snet, jsg.StationaryNetwork)
    close(snet(x), net(x))
    glob = jsg.solve(snet, x)
    for a, b in zip(glob.value, net.states(x)):
        close(a, b)
    back = je.to_resolvent(snet)
    assert isinstance(back, je.ResolventNetwork)
    close(back(x), net(x), 1e-12)


def test_sheaf_network_conversions(getkey):
    """A sheaf layer (fibre 2, unitary blocks) <-> its resolvent layer on n k coordinates <-> the
    scalar (magnetic) graph layer on n k nodes: all the same function."""
    n, k = 4, 2  # N = n k = 8 coordinates
    g = simple_graph(getkey(), n, 5, connection="unitary", fiber=k)
    A = g.as_dense()
    lay = je.ResolventLayer(
        A, 0.2 + 0.7j, jr.normal(getkey(), (N, IN)), jr.normal(getkey(), (N, 1))
    )
    x = jr.normal(getkey(), (IN, C))
    sheaf = je.to_stationary(lay, je.AdmissibleLift(fiber=k))
    assert sheaf.graph.fiber == k and sheaf.graph.num_edges == 5
    assert isinstance(sheaf.source, je.BlockSource) and isinstance(sheaf.readout, je.FlattenFiber)
    close(sheaf(x), lay(x))
    scalar = je.sheaf_layer_to_scalar(sheaf)
    assert scalar.graph.fiber == 1 and scalar.graph.num_nodes == N
    close(scalar(x), lay(x))
    again = je.scalar_layer_to_sheaf(scalar, k)
    close(again(x), lay(x))
    close(je.to_resolvent(again)(x), lay(x), 1e-12)
    # Networks convert layer by layer.
    snet = je.sheaf_layer_to_scalar(jsg.StationaryNetwork([sheaf]))
    close(snet(x), lay(x))


def test_hidden_node_layer(getkey):
    """HiddenNodeLift: a Quadratic gradient layer on a graph with hidden hubs, the source zero on
    them and a Visible readout, computes the resolvent layer with real z; to_resolvent eliminates
    the hubs again (Schur complement)."""
    A = hermitian(getkey(), N)
    z = float(jnp.linalg.eigvalsh(A)[0]) - 0.6
    lay = je.ResolventLayer(A, z, jr.normal(getkey(), (N, IN)), jr.normal(getkey(), (N, 1)))
    st = je.to_stationary(lay, je.HiddenNodeLift())
    assert st.graph.num_nodes > N and isinstance(st.readout, je.Visible)
    x = jr.normal(getkey(), (IN, C))
    close(st(x), lay(x))
    back = je.to_resolvent(st)
    np.testing.assert_allclose(back.A, A, atol=1e-12)
    close(back(x), lay(x), 1e-12)
    # Hidden nodes with their own sources fold into B: s_S - M_SB M_BB^{-1} s_B.
    B = st.source.B.at[N:].set(jr.normal(getkey(), (st.graph.num_nodes - N, IN)))
    driven = eqx.tree_at(lambda t: t.source.B, st, B)
    close(je.to_resolvent(driven)(x), driven(x))


def test_hypothesis_failures(getkey):
    st = magnetic_layer(getkey(), js.DrivenDampedModel(0.6, kappa=0.5), js.ReIm())
    with pytest.raises(ValueError, match="only linear driven-damped"):
        je.to_resolvent(st)
    dw = eqx.tree_at(lambda t: t.model, st, js.GradientModel(js.DoubleWell()))
    with pytest.raises(ValueError, match="not a resolvent layer"):
        je.to_resolvent(dw)
    g = simple_graph(getkey(), N, 14)
    src = js.NodeSource(jnp.eye(N), jnp.zeros(N))
    gm = js.StationaryLayer(g, js.GradientModel(js.Quadratic(-50.0)), src, js.Identity())
    with pytest.raises(ValueError, match="not strongly monotone"):
        je.to_resolvent(gm)
    feat = js.feature_layer(g, js.DrivenDampedModel(0.5), 3, 2, key=getkey())
    with pytest.raises(TypeError, match="FeatureSource"):
        je.to_resolvent(feat)
    sheaf = simple_graph(getkey(), 4, 5, connection="unitary", fiber=2)
    src = js.NodeSource(jnp.eye(4), jnp.zeros(4))
    bad = js.StationaryLayer(sheaf, js.DrivenDampedModel(0.5), src, js.ReIm())
    with pytest.raises(TypeError, match="BlockSource"):
        je.to_resolvent(bad)
    # A driven-damped layer has no hidden-node lift, and one on a lifted graph is not Hermitian.
    lay = layer(getkey(), z=0.5j)
    with pytest.raises(ValueError, match="no exact hidden-node"):
        je.to_stationary(lay, je.HiddenNodeLift())
    A = hermitian(getkey(), N)
    real = je.ResolventLayer(A, float(jnp.linalg.eigvalsh(A)[0]) - 1, jnp.eye(N), jnp.zeros(N))
    lifted = je.to_stationary(real, je.HiddenNodeLift())
    dd = eqx.tree_at(lambda t: t.model, lifted, js.DrivenDampedModel(0.5))
    with pytest.raises(ValueError, match="hidden nodes is not a Hermitian"):
        je.to_resolvent(dd)
    with pytest.raises(ValueError, match="concrete z"):
        jax.jit(lambda lay: je.to_stationary(lay).graph.weights)(lay)
    with pytest.raises(ValueError, match="need 2 lifts"):
        je.to_stationary(je.ResolventNetwork([lay, lay]), [je.AdmissibleLift()])
