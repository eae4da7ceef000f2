"""Random draws made in one compiled program equal the same draws made one by one, bit for bit
(the library's constructors draw in one program to compile less; networks and graphs built from
a key must not change with it)."""

import functools

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import jaxstat.graphs as jg
import jaxstat.morse as jm
import jaxstat.stationary as js
from jaxstat._random import draws


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


SHAPES = [(16, 2), (16,), (3, 5, 7), (1,), (40,)]


def _uniform_in(low, high):
    return functools.partial(jr.uniform, minval=low, maxval=high)


@pytest.mark.parametrize("x64", [False, True])
@pytest.mark.parametrize(
    "sampler",
    [lambda lo, hi: jr.normal, lambda lo, hi: jr.uniform, _uniform_in],
    ids=["normal", "uniform", "uniform-bounds"],
)
def test_draws_equal_the_draws_one_by_one(x64, sampler):
    # (Bounds are arguments of the program, as the library passes them: constants would be
    # folded into the arithmetic, rounded differently from the draws made apart.)
    with jax.enable_x64(x64):
        dtype = jnp.zeros(()).dtype
        keys = jr.split(jr.key(5), len(SHAPES))
        batched = jax.jit(lambda k, lo, hi: draws(sampler(lo, hi), k, SHAPES, dtype))(
            keys, -0.3, 0.7
        )
        for got, k, shape in zip(batched, keys, SHAPES):
            assert _same(got, sampler(-0.3, 0.7)(k, shape, dtype))


def test_draws_refuses_keys_and_shapes_of_different_lengths():
    with pytest.raises(ValueError, match="3 keys for 2 shapes"):
        draws(jr.normal, jr.split(jr.key(0), 3), [(2,), (3,)], jnp.float32)


def _mlp_one_by_one(key, widths, layer, weight_scale, bias_scale, inner_widths=None):
    """`random_mlp`'s documented draws, made eagerly one at a time."""

    def dense(k, out, inp):
        kw, kb = jr.split(k)
        w = jr.normal(kw, (out, inp)) * weight_scale / jnp.sqrt(inp)
        return [w, jr.normal(kb, (out,)) * bias_scale]

    pairs = list(zip(widths[:-1], widths[1:]))
    leaves = []
    for i, ((inp, out), k) in enumerate(zip(pairs, jr.split(key, len(pairs)))):
        if layer is jm.SandwichLayer:
            k1, k2 = jr.split(k)
            inner = inner_widths[i]
            leaves += dense(k1, inner, inp) + dense(k2, out, inner)
        else:
            leaves += dense(k, out, inp)
    return leaves


@pytest.mark.parametrize("x64", [False, True])
@pytest.mark.parametrize(
    "widths, layer, inner",
    [
        ([2, 16, 16, 1], jm.PostActivationLayer, None),
        ([3, 5, 7, 1], jm.PreActivationLayer, None),
        ([2, 8, 3, 1], jm.SandwichLayer, [6, 4, 5]),
    ],
)
def test_random_mlp_equals_its_draws_one_by_one(x64, widths, layer, inner):
    with jax.enable_x64(x64):
        net = jm.random_mlp(
            jr.key(3), widths, layer=layer, inner_widths=inner, weight_scale=3.0, bias_scale=0.7
        )
        expected = _mlp_one_by_one(jr.key(3), widths, layer, 3.0, 0.7, inner)
        got = jax.tree.leaves(net)
        assert len(got) == len(expected)
        assert all(_same(a, b) for a, b in zip(got, expected))


@pytest.mark.parametrize("x64", [False, True])
def test_feature_layer_source_equals_its_draws_one_by_one(x64):
    with jax.enable_x64(x64):
        g = jg.from_edges([[0, 1], [1, 2]], [1.0, 2.0])
        for d_in, d_out in [(3, 4), (5, 7), (8, 1)]:
            layer = js.feature_layer(
                g, js.GradientModel(js.Quadratic(1.0)), d_in, d_out, key=jr.key(1)
            )
            kw, kb = jr.split(jr.key(1))
            lim = 1 / jnp.sqrt(d_in)
            assert _same(layer.source.W, jr.uniform(kw, (d_out, d_in), minval=-lim, maxval=lim))
            assert _same(layer.source.b, jr.uniform(kb, (d_out,), minval=-lim, maxval=lim))


@pytest.mark.parametrize("x64", [False, True])
def test_uniform_starts_and_random_graph_equal_their_draws_one_by_one(x64):
    with jax.enable_x64(x64):
        lower, upper = jnp.array([0.1, -2.3, 5.0]), jnp.array([0.7, 1.9, 9.0])
        u = jr.uniform(jr.key(4), (333, 3))
        assert _same(jm.uniform_starts(jr.key(4), lower, upper, 333), lower + u * (upper - lower))

        g = jg.random_graph(jr.key(2), 50, 400)
        k1, k2, k3 = jr.split(jr.key(2), 3)
        s = jr.randint(k1, (400,), 0, 50)
        r = (s + jr.randint(k2, (400,), 1, 50)) % 50
        assert _same(g.senders, s.astype(jnp.int32))
        assert _same(g.receivers, r.astype(jnp.int32))
        assert _same(g.weights, jr.uniform(k3, (400,)))
