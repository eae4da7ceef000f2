"""The network, its global residual and its block lower-triangular Jacobian operator."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import jaxstat.graphs as jg
import jaxstat.stationary as js
import jaxstat.supragraph as sg

from .networks import case, dense_jacobian, kerr_network, normal, random_graph, reference, rng


def test_construction_errors():
    with pytest.raises(ValueError, match="at least one layer"):
        sg.StationaryNetwork([])
    with pytest.raises(TypeError, match="StationaryLayer"):
        sg.StationaryNetwork([jnp.ones(3)])
    g = random_graph(rng(0), 6, 8)
    with pytest.raises(ValueError, match="input width"):
        sg.feature_network(g, js.GradientModel(), [3], key=jr.key(0))
    with pytest.raises(ValueError, match="need 2 graphs"):
        sg.feature_network([g] * 3, js.GradientModel(), [3, 2, 2], key=jr.key(0))


def test_feature_network_widths_and_shape_errors():
    """`feature_network` chains widths through the readouts (`ReIm` doubles them); a layer that
    cannot read the previous readout is a ValueError naming both, raised before any solve."""
    g = random_graph(rng(0), 6, 8)
    net = sg.feature_network(g, js.DrivenDampedModel(), [3, 2, 5], key=jr.key(0))
    assert [layer.source.W.shape for layer in net.layers] == [(2, 3), (5, 4)]
    x = jnp.ones((6, 3))
    assert [s.shape for s in net.state_structure(x)] == [(6, 2), (6, 5)]
    a = js.feature_layer(g, js.DrivenDampedModel(), 3, 2, key=jr.key(1))  # ReIm: 4 features
    b = js.feature_layer(g, js.DrivenDampedModel(), 2, 2, key=jr.key(2))  # expects 2
    bad = sg.StationaryNetwork([a, b])
    with pytest.raises(ValueError, match="layer 1's FeatureSource .* layer 0's readout"):
        bad.state_structure(x)
    with pytest.raises(ValueError, match="layer 1's FeatureSource"):
        bad.states(x)
    with pytest.raises(ValueError, match="layer 0's FeatureSource .* the input x"):
        net.state_structure(jnp.ones((6, 5)))
    with pytest.raises(ValueError, match="tuple of 2 arrays"):
        net.residual((jnp.ones((6, 2)),), x)


def test_real_only_model_with_complex_graph_is_a_type_error():
    g = random_graph(rng(0), 6, 8)
    g = jg.Graph(g.senders, g.receivers, g.weights, 6, connection=jg.PhaseConnection(jnp.ones(8)))
    layer = js.feature_layer(g, js.GradientModel(js.ReLUPotential()), 2, 2, key=jr.key(0))
    with pytest.raises(TypeError, match="real states"):
        sg.StationaryNetwork([layer]).state_structure(jnp.ones((6, 2)))


def test_structure_and_linearity():
    net, x, _, _ = case("kerr")
    states, _ = reference("kerr")
    structure = net.state_structure(x)
    assert [s.shape for s in structure] == [(12, 4)] * 2
    assert all(s.dtype == jnp.complex128 for s in structure)
    assert [p.shape for p in states] == [s.shape for s in structure]
    assert [p.shape for p in net.zeros(x)] == [s.shape for s in structure]
    assert net.output(states).shape == (12, 8)  # ReIm of the last layer
    assert not net.is_linear
    assert case("linear").net.is_linear
    assert not case("quartic").net.is_linear
    # kappa = 0 as an array: linear when concrete, not provably so when traced under jit (the
    # root finder then solves it; see test_solve).
    zero = kerr_network(kappa=jnp.array(0.0))
    assert zero.is_linear
    assert not bool(eqx.filter_jit(lambda n: jnp.asarray(n.is_linear))(zero))


def test_residual_vanishes_at_the_sequential_states():
    """`F(Psi) = 0` at the sequential forward pass, and not elsewhere."""
    net, x, _, _ = case("kerr")
    states, _ = reference("kerr")
    res = net.residual(states, x)
    # Each layer solve stops at max |F_l| <= 1e-10 (Newton's last step makes it ~1e-15).
    assert max(float(jnp.max(jnp.abs(f))) for f in res) < 1e-10
    shifted = (states[0], states[1] + 1e-3)
    assert float(jnp.max(jnp.abs(net.residual(shifted, x)[1]))) > 1e-4
    # Sources are computed from the previous layer's readout (psi_0 = x).
    s = net.sources(states, x)
    np.testing.assert_allclose(s[1], net.layers[1].source(js.ReIm()(states[0])), rtol=1e-14)
    np.testing.assert_allclose(s[0], net.layers[0].source(x), rtol=1e-14)


def _blocks(states):
    sizes = [p.size * (2 if jnp.iscomplexobj(p) else 1) for p in states]
    return np.concatenate([[0], np.cumsum(sizes)])


def test_jacobian_is_block_lower_triangular():
    """Blocks above the diagonal vanish identically; diagonal blocks are each layer's own
    Jacobian at fixed source; the sub-diagonal ones `dF_l/dpsi_{l-1}` are nonzero."""
    net, x, _, _ = case("kerr")
    states, _ = reference("kerr")
    J, cuts = np.asarray(dense_jacobian(net, states, x)), _blocks(states)
    L = len(states)
    for a in range(L):
        for b in range(L):
            block = J[cuts[a] : cuts[a + 1], cuts[b] : cuts[b + 1]]
            if b > a:
                assert np.all(block == 0), (a, b)
            elif b == a - 1:
                assert np.abs(block).max() > 1e-2
    # Diagonal block of layer 1: the Jacobian of its own residual with its source frozen.
    s = net.sources(states, x)[1]
    H = net.layers[1].graph.assemble()
    model = net.layers[1].model

    def own(y):
        f = model.residual(y[0] + 1j * y[1], s, H)
        return jnp.concatenate([jnp.real(f).ravel(), jnp.imag(f).ravel()])

    p = states[1]
    own_J = jax.jit(jax.jacfwd(own))((jnp.real(p), jnp.imag(p)))
    own_J = np.concatenate([np.asarray(j).reshape(own_J[0].shape[0], -1) for j in own_J], 1)
    np.testing.assert_allclose(J[cuts[1] : cuts[2], cuts[1] : cuts[2]], own_J, atol=1e-14)


def test_subdiagonal_block_closed_form():
    """Gradient model, identity readout, `NodeSource`: `dF_2/dpsi_1 = -B_2 (x) I_d`."""
    net, x, _, _ = case("quartic")
    # Any states will do: the block does not depend on them.
    states = tuple(normal(20 + i, s.shape) for i, s in enumerate(net.state_structure(x)))
    J, cuts = np.asarray(dense_jacobian(net, states, x)), _blocks(states)
    B = net.layers[1].source.B
    d = states[0].shape[1]
    np.testing.assert_allclose(
        J[cuts[1] : cuts[2], cuts[0] : cuts[1]], -np.kron(B, np.eye(d)), atol=1e-14
    )


def test_jacobian_transpose_dot_product():
    """`<J v, u> = <v, J^T u>` for the matrix-free transpose (a vector-Jacobian product)."""
    net, x, _, _ = case("kerr")
    states, _ = reference("kerr")
    op = net.jacobian(states, x, linearise=False)
    v = jax.tree.map(lambda s: normal(1, s.shape), op.in_structure())
    u = jax.tree.map(lambda s: normal(2, s.shape), op.out_structure())

    def dot(a, b):
        return sum(jnp.vdot(p, q) for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

    np.testing.assert_allclose(dot(op.mv(v), u), dot(v, op.T.mv(u)), rtol=1e-12)


def test_pack_roundtrip():
    states, _ = reference("kerr")
    packed = sg.pack_states(states)
    assert all(isinstance(p, tuple) for p in packed)
    for a, b in zip(sg.unpack_states(packed), states):
        np.testing.assert_array_equal(a, b)
    net, x, _, _ = case("quartic")  # real states pass through unchanged
    real = tuple(normal(30 + i, s.shape) for i, s in enumerate(net.state_structure(x)))
    assert sg.pack_states(real) == real
