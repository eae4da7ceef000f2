"""Critical points of neural ODEs: a known critical point, the theorems on random weights, and
the universal embedding."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import jaxstat.morse as jm

from .test_node import A, B, exact_f_grad_hess, shear_field, T, W


BOX = (-2.0 * jnp.ones(2), 2.0 * jnp.ones(2))


def test_known_critical_point():
    """`f(x) = a^T phi_T(W x + b)` with the shear flow is quadratic in `x` (closed forms in
    `test_node.exact_f_grad_hess`): its one critical point is `x* = -H^{-1} grad f(0)`, a saddle
    with hess f = W^T a3 c [[0,1,0],[1,0,0],[0,0,0]] W, c = (1 - exp(-2T)) / 2."""
    node = jm.NeuralODE(shear_field, W, B, A, t1=T)
    assert jm.classify(node).verdict is jm.Verdict.GENERICALLY_MORSE
    _, g0, hess = exact_f_grad_hess(np.zeros(2))
    x_star = -np.linalg.solve(hess, g0)
    np.testing.assert_allclose(exact_f_grad_hess(x_star)[1], 0, atol=1e-14)
    starts = jm.uniform_starts(jr.key(0), *BOX, 64)
    cps = jm.find_critical_points(node, starts, lower=BOX[0], upper=BOX[1], fallback=False)
    d = cps.as_numpy()
    assert int(cps.count) == 1
    # Tsit5 with 32 steps: the discrete map's critical point is within ~1e-9 of the exact one.
    np.testing.assert_allclose(d["points"][0], x_star, atol=1e-8)
    np.testing.assert_allclose(d["eigenvalues"][0], np.linalg.eigvalsh(hess), atol=1e-8)
    assert d["index"][0] == 1 and not d["degenerate"][0]


def cubic_saddle(x):
    return x[0] ** 3 - 3 * x[0] + x[1] ** 2


def test_universal_embedding():
    """The augmented neural ODE (m = n + 1) represents g exactly; its critical points are g's."""
    node = jm.universal_embedding(cubic_saddle, 2)
    assert node.phase_size == 3
    assert jm.classify(node).verdict is jm.Verdict.GENERICALLY_MORSE
    xs = jr.normal(jr.key(1), (16, 2))
    # The field is constant along trajectories: one Euler step integrates it exactly.
    np.testing.assert_allclose(jax.vmap(node)(xs), jax.vmap(cubic_saddle)(xs), rtol=1e-14)
    v, g, h = jax.vmap(node.value_gradient_hessian)(xs)
    np.testing.assert_allclose(g, jax.vmap(jax.grad(cubic_saddle))(xs), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(h, jax.vmap(jax.hessian(cubic_saddle))(xs), rtol=1e-13, atol=1e-14)
    starts = jm.uniform_starts(jr.key(0), *BOX, 64)
    d = jm.find_critical_points(node, starts, lower=BOX[0], upper=BOX[1], fallback=False).as_numpy()
    order = np.argsort(d["points"][:, 0])
    np.testing.assert_allclose(d["points"][order], [[-1.0, 0.0], [1.0, 0.0]], atol=1e-12)
    np.testing.assert_array_equal(d["index"][order], [1, 0])
    with pytest.raises(ValueError, match="scalar"):
        jm.universal_embedding(lambda x: x, 2)


@pytest.mark.slow
def test_random_nodes_theorems():
    """Augmented (m = 3 > n = 2, W of full rank): non-degenerate critical points. The same field
    with a rank-1 W: hess f = W^T H W has rank 1, every critical point is degenerate."""
    node = jm.random_node(jr.key(4), 2, 3, width=8, field_scale=3.0)
    box = (-3.0 * jnp.ones(2), 3.0 * jnp.ones(2))
    starts = jm.uniform_starts(jr.key(0), *box, 256)

    def run(model):
        return jm.find_critical_points(
            model, starts, lower=box[0], upper=box[1], max_points=16, throw=False
        ).as_numpy()

    d = run(node)
    assert jm.classify(node).verdict is jm.Verdict.GENERICALLY_MORSE
    assert len(d["points"]) >= 1 and not d["degenerate"].any()
    w = node.weight
    low = jm.NeuralODE(
        node.field, jnp.outer(w[:, 0], jnp.array([1.0, -0.5])), node.bias, node.readout
    )
    assert jm.classify(low).verdict is jm.Verdict.ALL_DEGENERATE
    d = run(low)
    assert len(d["points"]) >= 1 and d["degenerate"].all() and (d["nullity"] >= 1).all()
