"""Resolvent layers and networks: closed forms, jit, vmap, grad, errors."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import jaxstat.equivalence as je
import jaxstat.stationary as js

from ..helpers import check_grad_fd
from .test_lift import hermitian


N, IN, C = 8, 5, 3  # state size, input size, channels


def layer(key, z=0.3 + 0.8j, complex_=True, readout=None, n_in=IN, n=N):
    k1, k2, k3 = jr.split(key, 3)
    A = hermitian(k1, n, complex_)
    B = jr.normal(k2, (n, n_in)) / np.sqrt(n_in)
    b = 0.1 * jr.normal(k3, (n, 1))
    return je.ResolventLayer(A, z, B, b, readout)


def test_layer_equals_closed_form(getkey):
    lay = layer(getkey(), readout=js.ReIm())
    x = jr.normal(getkey(), (IN, C))
    h = jnp.linalg.solve(lay.A - lay.z * jnp.eye(N), lay.B @ x + lay.b)
    np.testing.assert_allclose(lay.state(x), h, rtol=1e-12)
    np.testing.assert_allclose(lay(x), jnp.concatenate([h.real, h.imag], -1), rtol=1e-12)
    np.testing.assert_allclose(eqx.filter_jit(lay)(x), lay(x), rtol=1e-14)
    # Strong monotonicity: |h| <= |B x + b| / |Im z|.
    assert jnp.linalg.norm(h) <= jnp.linalg.norm(lay.source(x)) / 0.8


def test_network_states_and_vmap(getkey):
    l1 = layer(getkey(), readout=js.ReIm())
    A2 = hermitian(getkey(), N)
    l2 = je.ResolventLayer(A2, -0.5j, jr.normal(getkey(), (N, N)), jnp.zeros((N, 1)))
    net = je.ResolventNetwork([l1, l2])
    x = jr.normal(getkey(), (IN, C))
    h1 = l1.state(x)
    h2 = jnp.linalg.solve(A2 + 0.5j * jnp.eye(N), l2.B @ jnp.concatenate([h1.real, h1.imag], -1))
    states = net.states(x)
    np.testing.assert_allclose(states[0], h1, rtol=1e-13)
    np.testing.assert_allclose(states[1], h2, rtol=1e-12)
    np.testing.assert_allclose(net(x), h2, rtol=1e-12)
    xs = jr.normal(getkey(), (4, IN, C))
    batched = jax.vmap(net)(xs)
    for i in range(4):
        np.testing.assert_allclose(batched[i], net(xs[i]), rtol=1e-13)


def test_gradients_match_finite_differences(getkey):
    """Gradients with respect to `A` (along Hermitian directions), `z`, `B`, `b` and `x`."""
    lay = layer(getkey(), readout=js.ReIm())
    x = jr.normal(getkey(), (IN, C))
    target = jr.normal(getkey(), (N, 2 * C))

    def loss(X, z, B, b, x):
        A = (X + jnp.conj(X.T)) / 2  # FD directions must keep A Hermitian
        lay_ = je.ResolventLayer(A, z, B, b, js.ReIm())
        return jnp.sum((lay_(x) - target) ** 2)

    check_grad_fd(loss, lay.A, lay.z, lay.B, lay.b, x, key=getkey(), rtol=1e-6)


def test_gradient_in_A_is_hermitian(getkey):
    """The forward pass uses the Hermitian part of A, so d loss / d A is Hermitian (in JAX's
    conjugate convention) and a gradient step keeps A Hermitian."""
    lay = layer(getkey(), readout=js.ReIm())
    x = jr.normal(getkey(), (IN, C))
    g = eqx.filter_grad(lambda lay_: jnp.sum(lay_(x) ** 3))(lay)
    np.testing.assert_allclose(g.A, jnp.conj(g.A.T), atol=1e-13)
    stepped = eqx.apply_updates(lay, jax.tree.map(lambda t: -0.1 * t, g))
    je.check_hermitian(stepped.A)


def test_real_z_below_spectrum(getkey):
    """Real `z < lambda_min(A)`: a real symmetric layer stays real."""
    A = hermitian(getkey(), N, complex_=False)
    lam = jnp.linalg.eigvalsh(A)
    lay = je.ResolventLayer(A, lam[0] - 0.2, jnp.eye(N)[:, :IN], jnp.zeros((N, 1)))
    x = jr.normal(getkey(), (IN, C))
    y = lay(x)
    assert y.dtype == jnp.float64
    np.testing.assert_allclose(y, jnp.linalg.solve(A - (lam[0] - 0.2) * jnp.eye(N), lay.source(x)))


def test_float32(getkey):
    """float32 against float64 on the same (float32-representable) layer and input: a backward
    stable solve of `(A - z) h = s` has relative error `<~ c N eps cond(A - z)`; c = 10."""
    lay = layer(getkey(), complex_=False, z=jnp.float32(-30.0))
    cast = lambda t, d: jax.tree.map(lambda a: a.astype(d) if eqx.is_inexact_array(a) else a, t)
    lay = cast(lay, jnp.float32)
    x = jr.normal(getkey(), (IN, C), jnp.float32)
    y32 = lay(x)
    assert y32.dtype == jnp.float32
    lay64 = cast(lay, jnp.float64)
    y64 = lay64(x.astype(jnp.float64))
    lam = np.linalg.eigvalsh(np.asarray(lay64.A))
    cond = (lam[-1] + 30.0) / (lam[0] + 30.0)
    tol = 10 * N * np.finfo(np.float32).eps * cond
    assert float(jnp.linalg.norm(y32 - y64) / jnp.linalg.norm(y64)) <= tol


def test_errors(getkey):
    A = hermitian(getkey(), N)
    B, b = jnp.ones((N, IN)), jnp.zeros((N, 1))
    with pytest.raises(ValueError, match="not Hermitian"):
        je.ResolventLayer(A + jnp.triu(jnp.ones((N, N)), 1), 1j, B, b)
    with pytest.raises(ValueError, match="not strongly monotone"):
        je.ResolventLayer(A, 0.0, B, b)  # real z inside the spectrum
    with pytest.raises(ValueError, match="B must have shape"):
        je.ResolventLayer(A, 1j, jnp.ones((N + 1, IN)), b)
    with pytest.raises(ValueError, match="b must be node-first"):
        je.ResolventLayer(A, 1j, B, jnp.zeros(()))
    with pytest.raises(ValueError, match="scalar"):
        je.ResolventLayer(A, jnp.ones(2), B, b)
    with pytest.raises(TypeError):
        je.ResolventLayer(A, 1j, jnp.ones((N, IN), jnp.int32), b)
    lay = je.ResolventLayer(A, 1j, B, b)
    with pytest.raises(ValueError, match="leading entries"):
        lay(jnp.ones((IN + 1, 2)))
    with pytest.raises(ValueError, match="at least one"):
        je.ResolventNetwork([])
    with pytest.raises(TypeError, match="ResolventLayer"):
        je.ResolventNetwork([lay, "layer"])
