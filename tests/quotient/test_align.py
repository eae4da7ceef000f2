"""Permutation specs (git-re-basin's format), weight matching, alignment and quotient distance."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import jaxstat.quotient as q

from ..helpers import tree_allclose


def _inexact(tree):
    return eqx.filter(tree, eqx.is_inexact_array)


def test_derived_mlp_spec_equals_hand_written():
    mlp = eqx.nn.MLP(3, 2, 4, 2, activation=jax.nn.relu, key=jr.key(0))
    hand = q.permutation_spec_from_axes_to_perm(
        {
            "layers[0].weight": ("P_0", None),
            "layers[0].bias": ("P_0",),
            "layers[1].weight": ("P_1", "P_0"),
            "layers[1].bias": ("P_1",),
            "layers[2].weight": (None, "P_1"),
            "layers[2].bias": (None,),
        }
    )
    assert q.permutation_spec(q.symmetry(mlp), mlp) == hand
    # and the same for a Sequential stack of Linear / relu layers
    k = jr.split(jr.key(1), 2)
    seq = eqx.nn.Sequential(
        [eqx.nn.Linear(3, 4, key=k[0]), eqx.nn.Lambda(jax.nn.relu), eqx.nn.Linear(4, 2, key=k[1])]
    )
    assert q.permutation_spec(q.symmetry(seq), seq) == q.permutation_spec_from_axes_to_perm(
        {
            "layers[0].weight": ("P_0", None),
            "layers[0].bias": ("P_0",),
            "layers[2].weight": (None, "P_0"),
            "layers[2].bias": (None,),
        }
    )


def _flax_style_params(key):
    k = jr.split(key, 3)
    return {
        "Dense_0": {"kernel": jr.normal(k[0], (3, 4)), "bias": jr.normal(k[1], (4,))},
        "Dense_1": {"kernel": jr.normal(k[2], (4, 2)), "bias": jnp.zeros(2)},
    }


def _flax_style_apply(p, x):
    h = jax.nn.relu(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])
    return h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]


def test_git_re_basin_spec_on_plain_pytree(getkey):
    # git-re-basin's `mlp_permutation_spec` for Flax's (in, out) kernels, written by hand
    spec = q.permutation_spec_from_axes_to_perm(
        {
            "Dense_0/kernel": (None, "P_0"),
            "Dense_0/bias": ("P_0",),
            "Dense_1/kernel": ("P_0", None),
            "Dense_1/bias": (None,),
        }
    )
    params = _flax_style_params(getkey())
    group = q.symmetry_from_spec(spec, params)
    assert q.permutation_spec(group, params) == spec
    x = jr.normal(getkey(), (5, 3))
    moved = group.act(params, group.random_element(getkey(), params))
    assert not tree_allclose(moved, params)
    np.testing.assert_allclose(
        _flax_style_apply(moved, x), _flax_style_apply(params, x), atol=1e-12
    )
    reference, aligned = q.align(params, moved, group)
    assert tree_allclose(aligned, reference, rtol=0, atol=0)
    np.testing.assert_allclose(
        _flax_style_apply(reference, x), _flax_style_apply(params, x), atol=1e-12
    )


@pytest.mark.parametrize(
    "activation, depth",
    [
        (jax.nn.relu, 1),
        (jnp.tanh, 2),
        pytest.param(jax.nn.relu, 2, marks=pytest.mark.slow),
    ],
)
def test_alignment_recovers_planted_permutation_and_scaling(activation, depth, getkey):
    mlp = eqx.nn.MLP(3, 2, 6, depth, activation=activation, key=getkey(), dtype=jnp.float64)
    group = q.symmetry(mlp)
    g = group.random_element(getkey(), mlp)
    planted = group.act(mlp, g)
    assert (
        float(jnp.sqrt(q.sqnorm(jax.tree.map(jnp.subtract, _inexact(mlp), _inexact(planted)))))
        > 0.5
    )
    reference, aligned = q.align(mlp, planted, group)
    assert tree_allclose(_inexact(aligned), _inexact(reference), rtol=0, atol=1e-10)
    assert float(q.quotient_distance(mlp, planted, group)) < 1e-10
    # the canonical form: constant on the orbit, the reference `align` returns, same function
    canonical = q.canonicalize(planted, group)
    assert tree_allclose(_inexact(canonical), _inexact(q.canonicalize(mlp, group)), atol=1e-10)
    assert tree_allclose(_inexact(canonical), _inexact(reference), rtol=0, atol=1e-10)
    x = jr.normal(getkey(), (5, 3), jnp.float64)
    np.testing.assert_allclose(jax.vmap(canonical)(x), jax.vmap(mlp)(x), rtol=1e-12, atol=1e-12)
    # the recovered permutation undoes the planted one: weight matching on the raw models
    if depth == 1:
        undo = group.weight_matching(mlp, group.act(mlp, ((g[0][0], jnp.ones(6)),)))
        np.testing.assert_array_equal(np.asarray(g[0][0])[np.asarray(undo[0][0])], np.arange(6))


def test_weight_matching_with_noise_and_distance_bounds(getkey):
    mlp = eqx.nn.MLP(4, 3, 8, 2, activation=jnp.tanh, key=getkey(), dtype=jnp.float64)
    group = q.symmetry(mlp)
    g = group.random_element(getkey(), mlp)
    noisy = jax.tree.map(
        lambda x: (
            x + 1e-3 * jr.normal(getkey(), x.shape, x.dtype) if eqx.is_inexact_array(x) else x
        ),
        mlp,
    )
    planted = group.act(noisy, g)
    d = float(q.quotient_distance(mlp, planted, group))
    raw = float(jnp.sqrt(q.sqnorm(jax.tree.map(jnp.subtract, _inexact(mlp), _inexact(noisy)))))
    # the quotient distance is at most the distance to the un-permuted noisy model, and positive
    assert 0 < d <= raw + 1e-12


def _mha(key):
    mha = eqx.nn.MultiheadAttention(
        3,
        4,
        qk_size=2,
        vo_size=2,
        use_query_bias=True,
        use_key_bias=True,
        key=key,
        dtype=jnp.float64,
    )
    return mha


def test_attention_alignment_recovers_planted_gl_and_head_permutation(getkey):
    mha = _mha(getkey())
    group = q.symmetry(mha)
    planted = group.act(mha, group.random_element(getkey(), mha))
    reference, aligned = q.align(mha, planted, group)
    assert tree_allclose(_inexact(aligned), _inexact(reference), rtol=0, atol=1e-10)
    assert float(q.quotient_distance(mha, planted, group)) < 1e-10
    assert float(q.quotient_distance(mha, _mha(getkey()), group)) > 1e-2


def test_weight_matching_rejects_different_sizes():
    small = eqx.nn.MLP(3, 2, 4, 1, activation=jnp.tanh, key=jr.key(0))
    big = eqx.nn.MLP(3, 2, 5, 1, activation=jnp.tanh, key=jr.key(0))
    with pytest.raises(ValueError, match="different layer sizes"):
        q.symmetry(small).weight_matching(small, big)


def test_loss_barrier_closed_form(getkey):
    a = {"x": jr.normal(getkey(), (3,))}
    b = {"x": jr.normal(getkey(), (3,))}
    # L = -|theta|^2: L(t) - ((1 - t) L(a) + t L(b)) = t (1 - t) |a - b|^2, maximal at t = 1/2
    ts, losses, barrier = q.loss_barrier(lambda p: -jnp.sum(p["x"] ** 2), a, b, num=5)
    np.testing.assert_allclose(barrier, jnp.sum((a["x"] - b["x"]) ** 2) / 4, rtol=1e-12)
    np.testing.assert_allclose(losses[0], -jnp.sum(a["x"] ** 2), rtol=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        q.loss_barrier(lambda p: 0.0, a, b, num=1)
