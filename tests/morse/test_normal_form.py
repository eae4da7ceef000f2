"""Normal forms: redundant and rank-deficient networks reduced to smaller full-rank networks that
compute the same function."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import jaxstat.morse as jm


def _matrices(net):
    for layer in net.layers:
        for name in ("weight", "weight_in", "weight_out"):
            if hasattr(layer, name):
                yield np.asarray(getattr(layer, name))


def _check_equivalent(net, nf, key, n, refined=None):
    xs = 2 * jr.normal(key, (64, n))
    # Same function: SVD factors reproduce the weights to ~eps |W|, so f agrees to ~1e-14.
    np.testing.assert_allclose(jax.vmap(nf)(xs), jax.vmap(net)(xs), rtol=1e-12, atol=1e-12)
    for w in _matrices(nf):  # every weight of the normal form has full rank
        assert np.linalg.matrix_rank(w) == min(w.shape), w.shape
    expected = jm.classify(net).verdict if refined is None else refined
    assert jm.classify(nf).verdict is expected


def _post(weights, biases, readout, c=0.0, act=jm.Tanh()):
    layers = [jm.PostActivationLayer(w, b) for w, b in zip(weights, biases)]
    return jm.ScalarMLP([*layers, jm.AffineLayer(readout[None, :], jnp.array([c]))], act)


def test_generic_network_unchanged_size(getkey):
    net = jm.random_mlp(getkey(), [2, 6, 5, 1])
    nf = jm.normal_form(net)
    _check_equivalent(net, nf, getkey(), 2)
    chain = nf._chain()
    assert chain.widths == (6, 5)


def test_duplicate_mirrored_dead_constant_units(getkey):
    """Units planted to be redundant: a duplicate (merged), a mirrored one (tanh is odd: merged
    with a sign), a dead one (zero outgoing weight) and a constant one (zero incoming weight)."""
    w = jr.normal(getkey(), (3, 2))
    b = jr.normal(getkey(), (3,))
    w1 = jnp.concatenate([w, w[:1], -w[1:2], jr.normal(getkey(), (1, 2)), jnp.zeros((1, 2))])
    b1 = jnp.concatenate([b, b[:1], -b[1:2], jnp.array([0.3, 0.7])])
    a = jnp.array([1.0, -0.5, 2.0, 0.7, 0.3, 0.0, 1.5])
    net = _post([w1], [b1], a, 0.1)
    nf = jm.normal_form(net)
    _check_equivalent(net, nf, getkey(), 2)
    assert nf._chain().widths == (3,)  # 7 units -> the 3 distinct ones


@pytest.mark.parametrize("act", [jm.Sigmoid(), jm.Softplus()], ids=["sigmoid", "softplus"])
def test_mirrored_units_other_activations(act, getkey):
    """sigmoid(-z) = 1 - sigmoid(z) merges mirrored units; softplus has no reflection (its mirror
    image differs by a linear term), so they stay."""
    w = jr.normal(getkey(), (2, 2))
    b = jr.normal(getkey(), (2,))
    net = _post(
        [jnp.concatenate([w, -w[:1]])],
        [jnp.concatenate([b, -b[:1]])],
        jnp.array([1.0, 2.0, -0.7]),
        0.0,
        act,
    )
    nf = jm.normal_form(net)
    if isinstance(act, jm.Sigmoid):
        # The architecture 2 -> 3 -> 1 is augmented, but the function is a 2 -> 2 -> 1 network:
        # the normal form's verdict is sharper, and its certified gradient bound proves that the
        # original network has no critical point in the box either.
        _check_equivalent(net, nf, getkey(), 2, refined=jm.Verdict.NO_CRITICAL_POINTS)
        assert jm.classify(net).verdict is jm.Verdict.GENERICALLY_MORSE
        assert nf._chain().widths == (2,)
        lo, hi = -3 * jnp.ones(2), 3 * jnp.ones(2)
        assert float(jm.gradient_lower_bound(nf, lo, hi)) > 0
        assert float(jm.gradient_lower_bound(net, lo, hi)) == 0  # no bound for the original
    else:
        _check_equivalent(net, nf, getkey(), 2)
        assert nf._chain().widths == (3,)


def test_rank_deficient_first_weight_projects(getkey):
    """W_1 of rank 1 on R^3: f(x) = g(P x) with P (1 x 3) orthonormal; every critical point of f
    is degenerate, and the classifier says so for both."""
    u = jr.normal(getkey(), (5, 1))
    v = jr.normal(getkey(), (1, 3))
    net = _post(
        [u @ v, jr.normal(getkey(), (4, 5))],
        [jr.normal(getkey(), (5,)), jr.normal(getkey(), (4,))],
        jr.normal(getkey(), (4,)),
    )
    nf = jm.normal_form(net)
    _check_equivalent(net, nf, getkey(), 3)
    proj = nf.layers[0]
    assert isinstance(proj, jm.AffineLayer) and proj.weight.shape == (1, 3)
    np.testing.assert_allclose(proj.weight @ proj.weight.T, jnp.eye(1), atol=1e-14)
    assert jm.classify(net).verdict is jm.Verdict.ALL_DEGENERATE


def test_rank_deficient_middle_weight(getkey):
    """A rank-2 6 x 6 middle weight: the linear state between the two activated layers shrinks
    to width 2 (a SandwichLayer pair U V); the activated widths stay 6."""
    w2 = jr.normal(getkey(), (6, 2)) @ jr.normal(getkey(), (2, 6))
    net = _post(
        [jr.normal(getkey(), (6, 2)), w2],
        [jr.normal(getkey(), (6,)), jr.normal(getkey(), (6,))],
        jr.normal(getkey(), (6,)),
    )
    nf = jm.normal_form(net)
    _check_equivalent(net, nf, getkey(), 2)
    assert nf.layers[0].weight_out.shape == (2, 6)  # V_2: the width-2 linear state
    assert nf._chain().widths == (6, 6)


@pytest.mark.parametrize("form", [jm.PreActivationLayer, jm.SandwichLayer], ids=str)
def test_other_forms(form, getkey):
    kwargs = {"inner_widths": [5, 2, 4]} if form is jm.SandwichLayer else {}
    net = jm.random_mlp(getkey(), [3, 4, 4, 1], layer=form, **kwargs)
    first = net.layers[0]
    # Plant a rank deficiency in the first weight.
    name = "weight" if form is jm.PreActivationLayer else "weight_in"
    w = getattr(first, name)
    low = w[:, :1] @ jnp.ones((1, w.shape[1]))
    net = eqx.tree_at(lambda m: getattr(m.layers[0], name), net, low)
    nf = jm.normal_form(net)
    _check_equivalent(net, nf, getkey(), 3)


def test_constant_network(getkey):
    net = _post([jr.normal(getkey(), (4, 2))], [jr.normal(getkey(), (4,))], jnp.zeros(4), 0.25)
    nf = jm.normal_form(net)
    xs = jr.normal(getkey(), (5, 2))
    np.testing.assert_allclose(jax.vmap(nf)(xs), 0.25, atol=1e-15)
    # A dead second layer makes everything before it dead and the rest constant.
    net2 = _post(
        [jr.normal(getkey(), (3, 2)), jnp.zeros((3, 3))],
        [jr.normal(getkey(), (3,)), jr.normal(getkey(), (3,))],
        jr.normal(getkey(), (3,)),
        -0.5,
    )
    nf2 = jm.normal_form(net2)
    np.testing.assert_allclose(jax.vmap(nf2)(xs), jax.vmap(net2)(xs), atol=1e-14)
    assert len(nf2.layers) == 1


def test_errors(getkey):
    node = jm.random_node(getkey(), 2, 3, width=4)
    with pytest.raises(TypeError, match="MLPs"):
        jm.normal_form(node)
    net = jm.random_mlp(getkey(), [2, 3, 1])
    with pytest.raises(TypeError, match="outside `jit`"):
        jax.jit(lambda m: jm.normal_form(m)(jnp.zeros(2)))(net)
