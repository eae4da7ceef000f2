"""Mean-field two-layer networks `f(x) = 1/N sum_i a_i sigma(w_i . x)`: unit permutations, whose
quotient is the empirical measure of the units `(a_i, w_i)`; with ReLU also `(a_i, w_i) -> (a_i / s,
s w_i)`."""

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import jaxstat.quotient as q

from ..helpers import tree_allclose


N, D = 5, 3
X = jr.normal(jr.key(2), (9, D), jnp.float64)
SPEC = q.permutation_spec_from_axes_to_perm({"a": ("units",), "w": ("units", None)})


def _params(key):
    ka, kw = jr.split(key)
    return {"a": jr.normal(ka, (N,), jnp.float64), "w": jr.normal(kw, (N, D), jnp.float64)}


def _f(params, sigma=jnp.tanh):
    return jnp.mean(params["a"] * sigma(X @ params["w"].T), axis=-1)


def test_spec_format():
    assert SPEC.perm_to_axes == {"units": [("a", 0), ("w", 0)]}
    assert (
        q.permutation_spec(q.symmetry_from_spec(SPEC, _params(jr.key(0))), _params(jr.key(0)))
        == SPEC
    )


def test_permutations_function_and_empirical_measure(getkey):
    params = _params(getkey())
    group = q.symmetry_from_spec(SPEC, params)
    canon = group.canonicalize(params)
    atoms = np.concatenate([np.asarray(params["a"])[:, None], np.asarray(params["w"])], axis=1)
    # the canonical form is the empirical measure as a list of atoms, sorted by |z_i|^2 (numpy)
    order = np.argsort((atoms**2).sum(1))
    np.testing.assert_array_equal(
        np.concatenate([canon["a"][:, None], canon["w"]], 1), atoms[order]
    )
    for _ in range(3):
        moved = group.act(params, group.random_element(getkey(), params))
        np.testing.assert_allclose(_f(moved), _f(params), rtol=0, atol=1e-12)
        assert tree_allclose(group.invariants(moved), group.invariants(params), rtol=0, atol=0)


def test_quotient_distance_is_the_assignment_distance_of_the_measures(getkey):
    # d(theta, theta') = min_pi |z - z'_pi| (sqrt(N) W_2 of the empirical measures), by brute force
    a, b = _params(getkey()), _params(getkey())
    group = q.symmetry_from_spec(SPEC, a)
    za = np.concatenate([np.asarray(a["a"])[:, None], np.asarray(a["w"])], 1)
    zb = np.concatenate([np.asarray(b["a"])[:, None], np.asarray(b["w"])], 1)
    brute = min(np.sqrt(((za - zb[list(p)]) ** 2).sum()) for p in itertools.permutations(range(N)))
    np.testing.assert_allclose(q.quotient_distance(a, b, group), brute, rtol=1e-12)


def test_relu_scalings(getkey):
    params = _params(getkey())
    group = q.symmetry_from_spec(
        SPEC, params, scalings={"units": q.PositiveScaling()}, powers={"units": {"a": -1, "w": 1}}
    )
    relu_f = lambda p: _f(p, jax.nn.relu)  # noqa: E731
    canon = group.canonicalize(params)
    np.testing.assert_allclose(jnp.abs(canon["a"]), jnp.linalg.norm(canon["w"], axis=1), rtol=1e-12)
    np.testing.assert_allclose(relu_f(canon), relu_f(params), rtol=0, atol=1e-12)
    moved = group.act(params, group.random_element(getkey(), params))
    np.testing.assert_allclose(relu_f(moved), relu_f(params), rtol=0, atol=1e-12)
    assert tree_allclose(group.canonicalize(moved), canon, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="powers"):
        q.symmetry_from_spec(SPEC, params, scalings={"units": q.PositiveScaling()})
    with pytest.raises(ValueError, match="does not have"):
        q.symmetry_from_spec(q.permutation_spec_from_axes_to_perm({"b": ("units",)}), params)


def test_jit_and_vmap_over_a_batch_of_networks(getkey):
    params = _params(getkey())
    group = q.symmetry_from_spec(SPEC, params)
    batch = jax.tree.map(lambda x: jnp.stack([x, 2 * x]), params)
    canon = eqx.filter_jit(jax.vmap(group.canonicalize))(batch)
    for i in range(2):
        one = jax.tree.map(lambda x: x[i], batch)
        assert tree_allclose(jax.tree.map(lambda x: x[i], canon), group.canonicalize(one))
