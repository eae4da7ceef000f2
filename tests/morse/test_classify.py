"""The architecture theorems as a classifier; certified gradient bounds where no critical point
can exist."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxstat.morse as jm


V = jm.Verdict


@pytest.mark.parametrize(
    "n0, widths, ranks, verdict",
    [
        (3, [3, 2], None, V.NO_CRITICAL_POINTS),  # non-increasing, full rank
        (2, [2, 2, 2], None, V.NO_CRITICAL_POINTS),
        (2, [1], None, V.NO_CRITICAL_POINTS),
        (2, [5], None, V.GENERICALLY_MORSE),  # augmented, no bottleneck
        (2, [8, 8], None, V.GENERICALLY_MORSE),
        (2, [2, 3], None, V.GENERICALLY_MORSE),  # widens after a square layer
        (3, [5, 2], None, V.GENERICALLY_MORSE),  # narrows below n0 but never widens again
        (2, [5, 1, 1], None, V.GENERICALLY_MORSE),
        (2, [1, 5], None, V.ALL_DEGENERATE),  # bottleneck before the widening
        (3, [2, 6], None, V.ALL_DEGENERATE),
        (3, [3, 2, 4], None, V.ALL_DEGENERATE),
        (2, [6], [1, 1], V.ALL_DEGENERATE),  # rank-deficient first weight
        (3, [3, 2], [2, 2, 1], V.ALL_DEGENERATE),  # rank-deficient weight, non-increasing widths
        (2, [4], [2, 0], V.ALL_DEGENERATE),  # zero readout: f constant
        (2, [5, 1, 5], None, V.UNDECIDED),  # bottleneck after the first widening
        (2, [6, 6], [2, 1, 1], V.UNDECIDED),  # rank-1 middle weight after a widening
        (2, [6, 6], [2, 3, 1], V.GENERICALLY_MORSE),  # rank deficient but rank >= n0
    ],
)
def test_mlp_truth_table(n0, widths, ranks, verdict):
    c = jm.classify_mlp_architecture(n0, widths, ranks)
    assert c.verdict is verdict, str(c)
    assert str(c) == c.statement and len(c.statement) > 40
    assert c.widths[-1] == 1 and len(c.ranks) == len(c.widths)


def test_truth_table_errors():
    with pytest.raises(ValueError, match="rank cannot be"):
        jm.classify_mlp_architecture(2, [3], [3, 1])
    with pytest.raises(ValueError, match="ranks"):
        jm.classify_mlp_architecture(2, [3, 3], [2])
    with pytest.raises(ValueError, match="positive"):
        jm.classify_mlp_architecture(0, [3])
    with pytest.raises(ValueError, match="rank cannot be"):
        jm.classify_node_architecture(2, 3, 3)


@pytest.mark.parametrize(
    "n, m, rank, zero, verdict",
    [
        (2, 2, None, False, V.NO_CRITICAL_POINTS),
        (3, 2, None, False, V.NO_CRITICAL_POINTS),
        (2, 3, None, False, V.GENERICALLY_MORSE),
        (2, 3, 1, False, V.ALL_DEGENERATE),
        (3, 2, 1, False, V.ALL_DEGENERATE),
        (2, 3, None, True, V.ALL_DEGENERATE),
    ],
)
def test_node_truth_table(n, m, rank, zero, verdict):
    assert jm.classify_node_architecture(n, m, rank, readout_zero=zero).verdict is verdict


@pytest.mark.parametrize(
    "form", [jm.PostActivationLayer, jm.PreActivationLayer, jm.SandwichLayer], ids=str
)
def test_classify_models(form, getkey):
    """`classify` reads widths and numerical ranks off a model in any form."""
    cases = {
        (3, 3, 2, 1): V.NO_CRITICAL_POINTS,
        (2, 8, 8, 1): V.GENERICALLY_MORSE,
        (2, 1, 6, 1): V.ALL_DEGENERATE,
    }
    for widths, verdict in cases.items():
        # Sandwich layers: inner widths equal to the outer ones, so the activated widths match.
        kwargs = {"inner_widths": widths[1:]} if form is jm.SandwichLayer else {}
        net = jm.random_mlp(getkey(), widths, layer=form, **kwargs)
        c = jm.classify(net)
        assert c.verdict is verdict, str(c)


def test_classify_rank_deficiency_and_eqx(getkey):
    net = jm.random_mlp(getkey(), [2, 6, 1])
    w = net.layers[0].weight
    rank1 = jnp.outer(w[:, 0], jnp.array([1.0, -2.0]))
    net1 = eqx.tree_at(lambda m: m.layers[0].weight, net, rank1)
    c = jm.classify(net1)
    assert c.verdict is V.ALL_DEGENERATE and c.ranks[0] == 1
    mlp = eqx.nn.MLP(3, "scalar", 3, 2, activation=jnp.tanh, key=getkey())
    assert jm.classify(mlp).verdict is V.NO_CRITICAL_POINTS
    with pytest.raises(TypeError, match="outside `jit`"):
        jax.jit(lambda m: jm.classify(m).verdict.value == "x")(net)
    with pytest.raises(TypeError, match="expected"):
        jm.classify(lambda x: x)


@pytest.mark.parametrize(
    "form, act",
    [
        (jm.PostActivationLayer, jm.Tanh()),
        (jm.PreActivationLayer, jm.Sigmoid()),
        (jm.SandwichLayer, jm.Softplus()),
    ],
    ids=["post-tanh", "pre-sigmoid", "sandwich-softplus"],
)
def test_gradient_lower_bound_non_augmented(form, act, getkey):
    """Theorem 1, quantitatively: on a box, |grad f| is bounded below by a positive constant
    (interval arithmetic on sigma' and the smallest singular values of the transposed weights);
    every sampled gradient respects it."""
    kwargs = {"inner_widths": [3, 2, 1]} if form is jm.SandwichLayer else {}
    net = jm.random_mlp(getkey(), [4, 3, 2, 1], layer=form, activation=act, **kwargs)
    assert jm.classify(net).verdict is V.NO_CRITICAL_POINTS
    lo, hi = -2.0 * jnp.ones(4), 2.0 * jnp.ones(4)
    bound = jm.gradient_lower_bound(net, lo, hi)
    xs = jm.uniform_starts(getkey(), lo, hi, 20_000)
    corners = jnp.array(np.array(np.meshgrid(*[[-2.0, 2.0]] * 4)).reshape(4, -1).T)
    xs = jnp.concatenate([xs, corners])
    norms = jax.vmap(lambda x: jnp.linalg.norm(net.gradient(x)))(xs)
    assert float(bound) > 0
    assert float(jnp.min(norms)) >= float(bound)
    # The bound is jit-compatible and zero where the theorem does not apply.
    assert float(jax.jit(jm.gradient_lower_bound)(net, lo, hi)) == pytest.approx(float(bound))
    wide = jm.random_mlp(getkey(), [4, 6, 1], layer=form, activation=act)  # widens: no bound
    assert float(jm.gradient_lower_bound(wide, lo, hi)) == 0.0


def test_gradient_lower_bound_node(getkey):
    """Non-augmented neural ODE (m = n = 2): |grad f| >= s_min(W) |a| exp(-L T) (Gronwall)."""
    node = jm.random_node(getkey(), 3, 2, width=8)
    assert jm.classify(node).verdict is V.NO_CRITICAL_POINTS
    lo, hi = -2.0 * jnp.ones(3), 2.0 * jnp.ones(3)
    bound = jm.gradient_lower_bound(node, lo, hi)
    xs = jm.uniform_starts(getkey(), lo, hi, 2000)
    norms = eqx.filter_jit(jax.vmap(lambda x: jnp.linalg.norm(node.gradient(x))))(xs)
    assert float(bound) > 0
    assert float(jnp.min(norms)) >= float(bound)
    with pytest.raises(ValueError, match="lipschitz"):
        jm.gradient_lower_bound(
            jm.NeuralODE(lambda t, y, a: -y, node.weight, None, node.readout), lo, hi
        )
    explicit = jm.NeuralODE(lambda t, y, a: -y, node.weight, None, node.readout)
    assert float(jm.gradient_lower_bound(explicit, lo, hi, lipschitz=1.0)) > 0


def _sech2(z):
    return 1 / np.cosh(z) ** 2


def _sigmoid_prime(z):
    s = 1 / (1 + np.exp(-z))
    return s * (1 - s)


@pytest.mark.parametrize(
    "act, prime", [(jm.Tanh(), _sech2), (jm.Sigmoid(), _sigmoid_prime)], ids=["tanh", "sigmoid"]
)
def test_gradient_lower_bound_one_hidden_layer_by_hand(act, prime, getkey):
    """One hidden layer, `f(x) = a^T sigma(W x + b) + c` with `W` 2 x 3: the docstring's bound
    `|d_1 * a| s_min(W^T)` recomputed in numpy from the weights. The pre-activations over the box
    `c +- r` fill `[W c + b - |W| r, W c + b + |W| r]`; `sigma'` is even and decreasing in `|z|`, so
    its minimum there is `sigma'(max(|lo|, |hi|))`; `s_min(W^T)` is the smaller singular value of
    `W`. Then every sampled gradient respects the bound and it is not vacuous (within a factor 20
    of the smallest sampled gradient)."""
    assert "|d_K * a| prod_j s_min(M_j^T) prod_{j<K} min d_j" in jm.gradient_lower_bound.__doc__
    net = jm.random_mlp(getkey(), [3, 2, 1], activation=act)
    w, b = np.asarray(net.layers[0].weight), np.asarray(net.layers[0].bias)
    a = np.asarray(net.layers[1].weight[0])
    lo, hi = np.array([-1.0, -0.5, 0.0]), np.array([0.5, 1.0, 0.25])
    centre, radius = (lo + hi) / 2, (hi - lo) / 2
    z_lo = w @ centre + b - np.abs(w) @ radius
    z_hi = w @ centre + b + np.abs(w) @ radius
    d = prime(np.maximum(np.abs(z_lo), np.abs(z_hi)))
    s_min = np.linalg.svd(w, compute_uv=False)[-1]
    expected = s_min * np.linalg.norm(d * a)
    bound = float(jm.gradient_lower_bound(net, jnp.asarray(lo), jnp.asarray(hi)))
    np.testing.assert_allclose(bound, expected, rtol=1e-12)
    xs = jm.uniform_starts(getkey(), lo, hi, 5000)
    norms = jax.vmap(lambda x: jnp.linalg.norm(net.gradient(x)))(xs)
    assert bound <= float(norms.min()) <= 20 * bound


def test_gradient_lower_bound_node_closed_form(getkey):
    """Neural ODE: the bound is `s_min(W^T) |a| exp(-L T)` with `L` the Lipschitz constant of the
    tanh MLP field, `prod_l |W_l|_2` (tanh is 1-Lipschitz), recomputed in numpy."""
    assert "s_min(W^T) |a| exp(-L T)" in jm.gradient_lower_bound.__doc__
    node = jm.random_node(getkey(), 3, 2, width=8, depth=2, t1=0.7)
    lo, hi = -jnp.ones(3), jnp.ones(3)
    lip = np.prod([np.linalg.norm(np.asarray(lay.weight), 2) for lay in node.field.mlp.layers])
    s_min = np.linalg.svd(np.asarray(node.weight), compute_uv=False)[-1]
    expected = s_min * np.linalg.norm(np.asarray(node.readout)) * np.exp(-lip * 0.7)
    np.testing.assert_allclose(float(jm.gradient_lower_bound(node, lo, hi)), expected, rtol=1e-12)
    np.testing.assert_allclose(node.field.lipschitz(), lip, rtol=1e-12)
    # Sigmoid is 1/4-Lipschitz: one factor 1/4 per hidden layer (two here).
    sig = eqx.tree_at(lambda m: m.field.mlp.activation, node, jax.nn.sigmoid)
    np.testing.assert_allclose(sig.field.lipschitz(), lip / 16, rtol=1e-12)
    # With an explicit L the formula is applied as given.
    explicit = float(jm.gradient_lower_bound(node, lo, hi, lipschitz=2.0))
    np.testing.assert_allclose(explicit, expected * np.exp((lip - 2.0) * 0.7), rtol=1e-12)
