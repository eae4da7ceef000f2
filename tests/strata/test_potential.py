"""Hessian potentials: metrics against `jax.hessian`, the Kähler-Hessian Levi form, mirror maps."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import jaxstat.strata as st


POTENTIALS = {
    "shifted": st.ShiftedEntropy(0.05),
    "entropy": st.Entropy(),
    "euclidean": st.Euclidean(),
}


@pytest.mark.parametrize("name", list(POTENTIALS))
def test_metric_is_hessian_of_potential(getkey, name):
    """`G(w) = hess psi(w)` (diagonal), and `G^{-1}` is its inverse."""
    pot = POTENTIALS[name]
    w = jr.uniform(getkey(), (7,), minval=0.1, maxval=2.0)
    hess = jax.hessian(pot.value)(w)
    # Exact up to rounding of a few operations in float64.
    np.testing.assert_allclose(hess, jnp.diag(pot.metric(w)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        jnp.diag(pot.inverse_metric(w)), jnp.linalg.inv(hess), rtol=1e-12, atol=1e-12
    )


def test_shifted_metric_on_the_faces(getkey):
    """The shifted metric is finite and positive on the closed orthant (w = 0 included), its
    Hessian there is `1/eps`; the entropic metric degenerates (inverse 0)."""
    w = jnp.array([0.0, 0.0, 1.0])
    eps = 0.01
    hess = jax.hessian(st.ShiftedEntropy(eps).value)(w)
    np.testing.assert_allclose(jnp.diag(hess), [1 / eps, 1 / eps, 1 / (1 + eps)], rtol=1e-12)
    np.testing.assert_allclose(st.ShiftedEntropy(eps).inverse_metric(w), [eps, eps, 1 + eps])
    np.testing.assert_array_equal(st.Entropy().inverse_metric(w), [0.0, 0.0, 1.0])
    assert st.ShiftedEntropy(eps).reaches_faces and not st.Entropy().reaches_faces


def test_potentials_closed_forms_on_the_faces():
    """`phi` against its closed form at interior points and on the face `w = 0`: entropy
    `w log w` (continuous at 0, where it is 0), Euclidean `w^2 / 2`; the shifted entropy's metric
    `1 / (w + eps)` is finite on the face."""
    w = jnp.array([0.0, 1e-300, 0.5, 1.0, 2.0])
    expect = np.array([0.0, 0.0, 0.5 * np.log(0.5), 0.0, 2 * np.log(2.0)])
    np.testing.assert_allclose(st.Entropy().phi(w), expect, rtol=1e-12, atol=1e-297)
    np.testing.assert_allclose(st.Euclidean().phi(w), 0.5 * np.asarray(w) ** 2, rtol=1e-12)
    shifted = st.ShiftedEntropy(0.05)
    np.testing.assert_allclose(shifted.metric(w), 1 / (np.asarray(w) + 0.05), rtol=1e-12)


@pytest.mark.parametrize("name", ["shifted", "entropy"])
def test_kahler_levi_form(getkey, name):
    """On the tube domain `zeta = w + i theta`, `K(zeta) = 4 psi(Re zeta)` has Levi form
    `d^2 K / d zeta d conj(zeta) = 1/4 (d_w^2 + d_theta^2) K = psi''(w)`: the metric factor on the
    phases is the one on the weights."""
    pot = POTENTIALS[name]
    w = jr.uniform(getkey(), (5,), minval=0.1, maxval=2.0)
    theta = jr.uniform(getkey(), (5,), minval=-3.0, maxval=3.0)

    def kahler(z):
        w, theta = z[:5], z[5:]
        del theta  # K depends on Re zeta only (translation invariance along the phases)
        return 4 * pot.value(w)

    hess = jax.hessian(kahler)(jnp.concatenate([w, theta]))
    levi = 0.25 * (hess[:5, :5] + hess[5:, 5:])
    np.testing.assert_allclose(levi, jnp.diag(pot.metric(w)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(POTENTIALS))
def test_mirror_displacement_solves_the_mirror_equation(getkey, name):
    """`phi'(w + u) = phi'(w) - step`, with `phi'` obtained by `jax.grad`."""
    pot = POTENTIALS[name]
    w = jr.uniform(getkey(), (6,), minval=0.2, maxval=2.0)
    step = jr.uniform(getkey(), (6,), minval=-0.5, maxval=0.5)
    u = pot.mirror_displacement(w, step)
    dphi = jax.vmap(jax.grad(lambda x: pot.phi(x)))
    np.testing.assert_allclose(dphi(w + u), dphi(w) - step, rtol=1e-12, atol=1e-12)


def test_mirror_displacement_has_no_cancellation():
    """A step of 1e-12 on a weight of 1e3 moves it by `-(w + eps)(s - s^2/2 + ...)` to full
    precision, where `(w + eps) exp(-s) - eps - w` would lose 15 digits to cancellation."""
    w, s = jnp.array([1e3]), 1e-12
    u = st.ShiftedEntropy(0.5).mirror_displacement(w, jnp.array([s]))
    np.testing.assert_allclose(u, -(1e3 + 0.5) * (s - s**2 / 2), rtol=1e-14)


def test_bad_eps():
    with pytest.raises(ValueError, match="eps must be positive"):
        st.ShiftedEntropy(0.0)
    with pytest.raises(ValueError, match="eps must be positive"):
        st.ShiftedEntropy(-1.0)
    # Traced eps is allowed (e.g. vmapped over eps).
    out = jax.vmap(lambda e: st.ShiftedEntropy(e).inverse_metric(jnp.zeros(2)))(
        jnp.array([1.0, 2.0])
    )
    np.testing.assert_array_equal(out, [[1.0, 1.0], [2.0, 2.0]])
