"""Helpers shared by the tests: tree comparison, central finite differences, a test model."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
import numpy as np

import jaxstat.morse as jm


def tree_allclose(x, y, *, rtol=1e-5, atol=1e-8) -> bool:
    """`True` when two pytrees have the same structure and allclose leaves."""
    if jtu.tree_structure(x) != jtu.tree_structure(y):
        return False
    return all(
        np.shape(a) == np.shape(b) and np.allclose(a, b, rtol=rtol, atol=atol)
        for a, b in zip(jtu.tree_leaves(x), jtu.tree_leaves(y))
    )


def finite_difference_jvp(fn, primals, tangents, *, eps=None):
    """Central finite difference `(f(x + eps t) - f(x - eps t)) / (2 eps)`.

    The default step is `eps**(1/3)` of the dtype, scaled by the size of `x`: the step that balances
    truncation (`O(eps^2)`) against round-off (`O(eps_mach / eps)`).
    """
    leaves = jtu.tree_leaves(primals)
    dtype = jnp.result_type(*leaves)
    if eps is None:
        scale = max(1.0, max(float(jnp.max(jnp.abs(x))) for x in leaves))
        eps = float(jnp.finfo(dtype).eps) ** (1 / 3) * scale
    plus = jtu.tree_map(lambda x, t: x + eps * t, primals, tangents)
    minus = jtu.tree_map(lambda x, t: x - eps * t, primals, tangents)
    f_plus, f_minus = fn(*plus), fn(*minus)
    return jtu.tree_map(lambda a, b: (a - b) / (2 * eps), f_plus, f_minus)


def check_grad_fd(fn, *args, key, rtol=1e-6, atol=1e-8):
    """Compare `jax.grad` of a scalar `fn` against a central finite difference along a random
    direction. Arguments may be pytrees (inexact leaves only). The default `rtol` in float64 is
    justified by the `eps**(2/3) ~ 4e-11` error of the stencil times the curvature scale.
    """
    grads = jax.grad(fn, argnums=tuple(range(len(args))))(*args)
    leaves, treedef = jtu.tree_flatten(args)
    keys = jax.random.split(key, len(leaves))
    tangents = jtu.tree_unflatten(
        treedef,
        [jax.random.normal(k, jnp.shape(a), jnp.result_type(a)) for k, a in zip(keys, leaves)],
    )
    fd = finite_difference_jvp(fn, args, tangents)
    ad = sum(
        jnp.real(jnp.sum(g * t)) for g, t in zip(jtu.tree_leaves(grads), jtu.tree_leaves(tangents))
    )
    np.testing.assert_allclose(ad, fd, rtol=rtol, atol=atol)


def augmented_node():
    """The augmented neural ODE of `benchmarks/bench_morse.py`: a tanh field on R^3 (`eqx.nn.MLP`
    3 -> 16 -> 3, first layer scaled by 3) with the input padded by a zero coordinate (`W` close
    to `[I; 0]`) and the readout close to `e_3`; seven critical points in `[-3, 3]^2`."""
    kf, kw, ka = jr.split(jr.key(5), 3)
    mlp = eqx.nn.MLP(3, 3, 16, 1, activation=jnp.tanh, key=kf)
    mlp = eqx.tree_at(lambda m: m.layers[0].weight, mlp, 3.0 * mlp.layers[0].weight)
    weight = jnp.concatenate([jnp.eye(2), jnp.zeros((1, 2))]) + 0.1 * jr.normal(kw, (3, 2))
    readout = jnp.array([0.0, 0.0, 1.0]) + 0.1 * jr.normal(ka, (3,))
    return jm.NeuralODE(mlp, weight, jnp.zeros(3), readout)
