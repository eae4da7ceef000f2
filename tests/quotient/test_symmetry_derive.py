"""Deriving symmetries from models: a module declaring its own symmetry, registering a rule or an
activation, and error paths."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
import pytest

import jaxstat.quotient as q

from ..helpers import tree_allclose


X = jr.normal(jr.key(5), (7, 3), jnp.float64)


class TwoLinear(eqx.Module):
    """Two `Linear` children with a ReLU between them: a cross-child symmetry the generic rule
    (product of the children's symmetries) cannot see, declared in a few lines."""

    first: eqx.nn.Linear
    second: eqx.nn.Linear

    def __init__(self, key):
        k1, k2 = jr.split(key)
        self.first = eqx.nn.Linear(3, 4, key=k1, dtype=jnp.float64)
        self.second = eqx.nn.Linear(4, 2, key=k2, dtype=jnp.float64)

    def __call__(self, x):
        return self.second(jax.nn.relu(self.first(x)))

    def symmetry(self):
        sites = (
            q.Site(lambda m: m.first.weight, 0, 1),
            q.Site(lambda m: m.first.bias, 0, 1),
            q.Site(lambda m: m.second.weight, 1, -1),
        )
        return q.NeuronSymmetry((q.Units(sites, q.PositiveScaling()),))


class Pair(eqx.Module):
    left: TwoLinear
    right: eqx.nn.MLP

    def __call__(self, x):
        return self.left(x) + self.right(x)


def test_declared_symmetry_is_honoured_inside_a_larger_model(getkey):
    k1, k2 = jr.split(getkey())
    mlp = eqx.nn.MLP(3, 2, 5, 1, activation=jnp.tanh, key=k2, dtype=jnp.float64)
    model = Pair(TwoLinear(k1), mlp)
    group = q.symmetry(model)
    assert isinstance(group, q.ProductSymmetry) and len(group.factors) == 2
    assert isinstance(group.factors[0].inner.units[0].scaling, q.PositiveScaling)
    assert isinstance(group.factors[1].inner.units[0].scaling, q.SignFlip)
    moved = eqx.filter_jit(group.act)(model, group.random_element(getkey(), model))
    assert not tree_allclose(
        eqx.filter(moved, eqx.is_inexact_array), eqx.filter(model, eqx.is_inexact_array)
    )
    out = eqx.filter_jit(lambda m: jax.vmap(m)(X))
    np.testing.assert_allclose(out(moved), out(model), rtol=0, atol=1e-10)


def test_register_rule_and_activation(getkey):
    class Custom(eqx.Module):
        mlp: eqx.nn.MLP

    @q.symmetry.register
    def _(model: Custom):
        return None  # declared: no symmetry

    custom = Custom(eqx.nn.MLP(3, 2, 4, 1, key=getkey()))
    assert q.symmetry(custom) is None

    def cube(x):
        return x**3

    mlp = eqx.nn.MLP(3, 2, 4, 1, activation=cube, key=getkey(), dtype=jnp.float64)
    with pytest.warns(UserWarning, match="permutation symmetry only"):
        assert isinstance(q.symmetry(mlp).units[0].scaling, q.NoScaling)
    q.register_activation(cube, q.SignFlip())  # odd
    group = q.symmetry(mlp)
    assert isinstance(group.units[0].scaling, q.SignFlip)
    moved = group.act(mlp, group.random_element(getkey(), mlp))
    np.testing.assert_allclose(jax.vmap(moved)(X), jax.vmap(mlp)(X), rtol=0, atol=1e-10)
    with pytest.raises(TypeError, match="AbstractScaling"):
        q.register_activation(cube, "odd")


def test_declared_symmetry_must_be_a_symmetry():
    class Bad(eqx.Module):
        def symmetry(self):
            return "rescaling"

    with pytest.raises(TypeError, match="must return an AbstractSymmetry"):
        q.symmetry(Bad())


def test_normalisation_direction_of_zero_weights_is_an_error():
    params = {"w": jnp.zeros((3, 2)), "b": jnp.zeros(3)}
    group = q.NormalisationScaling(lambda p: (p["w"], p["b"]))
    with pytest.raises(Exception, match="all zero"):
        eqx.filter_jit(group.canonicalize)(params)
    params = {"w": jnp.ones((3, 2)), "b": jnp.ones(3)}
    canon = eqx.filter_jit(group.canonicalize)(params)
    np.testing.assert_allclose(q.sqnorm(canon), 1.0, rtol=1e-14)


def test_matrix_free_horizontal_projection_matches_dense(getkey):
    mlp = eqx.nn.MLP(3, 2, 4, 2, activation=jax.nn.relu, key=getkey(), dtype=jnp.float64)
    group = q.symmetry(mlp)
    v = jax.tree.map(
        lambda x: jr.normal(getkey(), x.shape, x.dtype), eqx.filter(mlp, eqx.is_inexact_array)
    )
    dense = eqx.filter_jit(group.horizontal)(mlp, v)
    free = eqx.filter_jit(lambda m, v: group.horizontal(m, v, lx.LSMR(rtol=1e-13, atol=1e-13)))(
        mlp, v
    )
    assert tree_allclose(free, dense, rtol=0, atol=1e-9)
