"""Sharpness by Lanczos against dense Hessian eigenvalues."""

import equinox as eqx
import jax
import jax.flatten_util as jfu
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import jaxstat.quotient as jq


def _quadratic(eigenvalues, key):
    """f(x) = 1/2 x^T Q diag(eigenvalues) Q^T x with a random orthogonal Q, and its Hessian."""
    n = len(eigenvalues)
    Q, _ = jnp.linalg.qr(jr.normal(key, (n, n)))
    H = (Q * jnp.asarray(eigenvalues)) @ Q.T
    return (lambda x: 0.5 * x @ H @ x), H


def test_quadratic_with_known_spectrum(getkey):
    # Spectrum {10, 5} plus 48 values in [-1, 4]: the gap ratio (10 - 5) / (5 + 1) makes 30
    # steps converge to rounding (Kaniel-Paige bound ~ (1 + 2 sqrt(5/6 + ...))^{-60} ~ 1e-30).
    eigenvalues = np.concatenate([[10.0, 5.0], np.linspace(-1.0, 4.0, 48)])
    f, H = _quadratic(eigenvalues, getkey())
    out = jq.sharpness(f, jnp.zeros(50), num_iterations=30, key=getkey())
    assert abs(float(out.value) - 10.0) < 1e-10
    assert float(out.residual) < 1e-6
    np.testing.assert_allclose(H @ out.vector, out.value * out.vector, atol=1e-6)


@pytest.mark.parametrize("spectrum", [(3.0, -1.0), (-1.0, -2.0)], ids=["mixed", "negative"])
def test_invariant_krylov_space(spectrum, getkey):
    # Two distinct eigenvalues: the Krylov space is invariant after two steps (breakdown). The
    # top eigenvalue is exact, also when it is negative (no spurious zero Ritz value).
    f, _ = _quadratic(np.repeat(spectrum, 5), getkey())
    out = jq.sharpness(f, jnp.zeros(10), num_iterations=8, key=getkey())
    assert abs(float(out.value) - max(spectrum)) < 1e-10
    assert float(out.residual) < 1e-8


def test_warm_start_at_the_top_eigenvector(getkey):
    # The warm start a monitor uses: the previous call's vector. At an exact eigenvector the
    # Krylov space is invariant after one step (breakdown at once); the value is that eigenvalue,
    # and the decoupled placeholder steps never supply the Ritz vector (it was NaN before).
    f, H = _quadratic(np.array([4.0, 2.0, 1.0, -3.0]), getkey())
    first = jq.sharpness(f, jnp.zeros(4), num_iterations=4, key=getkey())
    again = jq.sharpness(f, jnp.zeros(4), num_iterations=3, init=first.vector)
    assert abs(float(again.value) - 4.0) < 1e-10
    assert float(again.residual) < 1e-8
    np.testing.assert_allclose(H @ again.vector, 4.0 * again.vector, atol=1e-8)


def _mlp_loss(params, x, y):
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    return 0.5 * jnp.mean((h @ params["w2"] + params["b2"] - y) ** 2)


def _mlp(key):
    k1, k2, k3, k4 = jr.split(key, 4)
    params = {
        "w1": jr.normal(k1, (3, 6)),
        "b1": 0.1 * jr.normal(k2, (6,)),
        "w2": jr.normal(k3, (6, 2)) / jnp.sqrt(6),
        "b2": jnp.zeros(2),
    }
    x = jr.normal(k4, (40, 3))
    y = jnp.sin(x[:, :2])
    return params, x, y


def test_small_mlp_against_dense_hessian(getkey):
    # 38 parameters, float64, top eigenvalues 0.895 and 0.929 (a small gap). Measured: 15 cold
    # steps reach the dense top eigenvalue to 7e-10 (5 steps: 4e-3), 5 more steps warm-started
    # from that Ritz vector to 1e-14. Bounds 1e-6 and 1e-9 leave room for the random start.
    params, x, y = _mlp(getkey())
    loss = lambda p: _mlp_loss(p, x, y)
    flat, unravel = jfu.ravel_pytree(params)
    H = jax.jit(jax.hessian(lambda v: loss(unravel(v))))(flat)
    top = float(jnp.linalg.eigvalsh(H)[-1])
    first = jq.sharpness(loss, params, num_iterations=15, key=getkey())
    assert abs(float(first.value) - top) < 1e-6
    warm = jq.sharpness(loss, params, num_iterations=5, init=first.vector)
    assert abs(float(warm.value) - top) < 1e-9
    for out in (first, warm):
        assert float(out.value) <= top + 1e-12  # Ritz values approach from below
        assert abs(float(out.value) - top) <= float(out.residual) + 1e-12
    assert jfu.ravel_pytree(warm.vector)[0].shape == flat.shape


def test_jit_vmap_and_float32(getkey):
    eigenvalues = np.concatenate([[6.0], np.linspace(0.0, 2.0, 11)])
    f, _ = _quadratic(eigenvalues, getkey())
    scaled = jax.jit(
        jax.vmap(lambda c: jq.sharpness(lambda z: c * f(z), jnp.zeros(12), num_iterations=12).value)
    )
    np.testing.assert_allclose(scaled(jnp.array([1.0, 2.0, 0.5])), [6.0, 12.0, 3.0], rtol=1e-10)
    f32 = lambda z: f(z.astype(jnp.float64)).astype(jnp.float32)
    out32 = jq.sharpness(f32, jnp.zeros(12, jnp.float32), num_iterations=12)
    assert out32.value.dtype == jnp.float32
    assert abs(float(out32.value) - 6.0) < 1e-4


def test_errors():
    f = lambda z: jnp.sum(z**2)
    with pytest.raises(ValueError, match="num_iterations"):
        jq.sharpness(f, jnp.zeros(3), num_iterations=0)
    with pytest.raises(ValueError, match="init"):
        jq.sharpness(f, jnp.zeros(3), init=jnp.ones(4))
    with pytest.raises(eqx.EquinoxRuntimeError, match="non-zero"):
        jq.sharpness(f, jnp.zeros(3), init=jnp.zeros(3))
    with pytest.raises(eqx.EquinoxRuntimeError, match="not finite"):
        jq.sharpness(lambda z: jnp.sum(jnp.sqrt(z)), -jnp.ones(3))
