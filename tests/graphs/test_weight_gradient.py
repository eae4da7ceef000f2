"""The edge-weight gradient of `<c, L(w) x>` through the sparse product's transpose (the sampled
dense-dense product `ct_data[k] = sum_f ct[row_k, f] x[col_k, f]`) against its closed form."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import jaxstat.graphs as jg


N, E = 40, 150


def closed_form(g, c, x):
    """`d/dw_e <c, L(w) x> = (c_s - c_r) . (x_s - x_r)`, since
    `<c, L x> = sum_e w_e (c_s - c_r) . (x_s - x_r)` (float64 numpy)."""
    s, r = np.asarray(g.senders), np.asarray(g.receivers)
    c, x = (np.asarray(a, np.float64).reshape(g.num_nodes, -1) for a in (c, x))
    return np.sum((c[s] - c[r]) * (x[s] - x[r]), axis=-1)


def weight_gradient(g, c, x):
    def inner(w):
        return jnp.vdot(c, eqx.tree_at(lambda t: t.weights, g, w).laplacian(x))

    return jax.jit(jax.grad(inner))(g.weights)


@pytest.mark.parametrize("features", [(), (1,), (3,), (16,), (2, 5)])
def test_weight_gradient_closed_form_float64(getkey, features):
    """Every feature layout (none, one column, several, a feature grid): exact to rounding."""
    g = jg.random_graph(getkey(), N, E, dtype=jnp.float64)
    x = jr.normal(getkey(), (N, *features), jnp.float64)
    c = jr.normal(getkey(), (N, *features), jnp.float64)
    np.testing.assert_allclose(
        weight_gradient(g, c, x), closed_form(g, c, x), rtol=1e-12, atol=1e-12
    )


def test_weight_gradient_float32_against_float64(getkey):
    """float32 inputs: the gradient is float32 and within float32 rounding of the float64 closed
    form: `|error| <= ~eps32 * sum_f (|c_s| + |c_r|)(|x_s| + |x_r|)` per edge (the four products
    `c_i x_j` it sums), and not exact (it is computed in float32)."""
    g = jg.random_graph(getkey(), N, E, dtype=jnp.float32)
    x = jr.normal(getkey(), (N, 16), jnp.float32)
    c = jr.normal(getkey(), (N, 16), jnp.float32)
    got = weight_gradient(g, c, x)
    assert got.dtype == jnp.float32
    want = closed_form(g, c, x)
    s, r = np.asarray(g.senders), np.asarray(g.receivers)
    ca, xa = np.abs(np.asarray(c, np.float64)), np.abs(np.asarray(x, np.float64))
    scale = np.sum((ca[s] + ca[r]) * (xa[s] + xa[r]), axis=-1)
    err = np.abs(np.asarray(got, np.float64) - want) / scale
    assert 0 < np.max(err) < 1e-6, np.max(err)
