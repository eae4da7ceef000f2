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
