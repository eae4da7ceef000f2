"""`DenseSpectrum`'s eigenvalues inside the compiled program on CPU (no host callback, so JAX's
persistent compilation cache can store a solve that certifies with it), against numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstat.stationary._stability import _eigvals, DenseSpectrum


cpu = pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU lowering")


@cpu
def test_eigvals_against_numpy_and_nonfinite_is_nan():
    # A rotation-dilation block (eigenvalues -0.5 +- 2i), a real pair and a Jordan-free rest:
    # closed forms, and numpy's geev on a random non-symmetric matrix.
    m = np.zeros((4, 4), np.float32)
    m[:2, :2] = [[-0.5, 2.0], [-2.0, -0.5]]
    m[2:, 2:] = [[1.0, 3.0], [0.0, -4.0]]
    lam = np.asarray(jax.jit(_eigvals)(jnp.asarray(m)))
    want = np.array([-0.5 + 2j, -0.5 - 2j, 1.0, -4.0])
    assert np.allclose(np.sort_complex(lam), np.sort_complex(want), atol=1e-5)
    a = np.random.default_rng(0).standard_normal((9, 9)).astype(np.float32)
    lam = np.sort_complex(np.asarray(jax.jit(_eigvals)(jnp.asarray(a))))
    assert np.allclose(lam, np.sort_complex(np.linalg.eigvals(a)), atol=1e-4)
    a[3, 4] = np.inf
    assert np.all(np.isnan(np.asarray(jax.jit(_eigvals)(jnp.asarray(a)))))


@cpu
def test_dense_certificate_program_has_no_host_callback():
    # d psi/dt = A psi with A = [[-1, 5], [0, -0.2]]: alpha = -0.2 (upper triangular).
    A = jnp.array([[-1.0, 5.0], [0.0, -0.2]])

    def certify(y):
        return DenseSpectrum()(lambda p: A @ p, y)

    lowered = jax.jit(certify).lower(jnp.ones(2))
    assert "callback" not in lowered.as_text()
    cert = jax.jit(certify)(jnp.ones(2))
    assert abs(float(cert.abscissa) + 0.2) < 1e-6 and bool(cert.stable)
