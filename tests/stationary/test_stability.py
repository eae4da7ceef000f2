"""The matrix-free certificate `CayleyArnoldi` with a Krylov dimension far below the state's real
dimension, against the dense spectrum, on stable and unstable states of a Kerr network.

Network: `n` nodes (`2n` reals; 120 by default, 300 in the slow suite), weak random coupling
(weights <= 0.02), on-site potential `V = 1`, drive `|s|^2 = 0.05` with random phases,
`gamma = 0.1`, `kappa = -2`. Each isolated node is bistable (three roots of
`I (gamma^2 + (V + kappa I)^2) = |s|^2`); warm starts from the isolated-node closed forms select
the all-lower (stable) and all-upper (stable) branches, and the state with node 0 on its middle
branch (one real unstable eigenvalue, well separated).

The linearisation is `-gamma I` plus a Hamiltonian (conservative) part, whose eigenvalues come in
`+-` pairs: on a stable branch they are all imaginary, so the whole spectrum (2n eigenvalues)
lies on `Re lambda = -gamma` and the abscissa is `-gamma` exactly. The unstable eigenvalue is
isolated and Arnoldi resolves it to rounding; on the stable branches the rightmost Ritz value is
one point of a dense vertical cluster, resolved to within 10% of `gamma` by 20-30 Krylov steps.
"""

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import jaxstat.graphs as jg
import jaxstat.stationary as js


GAMMA, KAPPA, V, S2 = 0.1, -2.0, 1.0, 0.05


def real_vector_field(model, s, H):
    def f(y):
        psi = y[0] + 1j * y[1]
        out = model.vector_field(psi, s, H)
        return jnp.real(out), jnp.imag(out)

    return f


@eqx.filter_jit
def certificates(model, s, H, psi, method):
    f = real_vector_field(model, s, H)
    y = (jnp.real(psi), jnp.imag(psi))
    return js.DenseSpectrum()(f, y), method(f, y)


@pytest.mark.parametrize(
    "N, krylov", [(120, 20), pytest.param(300, 30, marks=pytest.mark.slow)], ids=["120", "300"]
)
def test_cayley_arnoldi_against_dense_spectrum_on_a_kerr_network(N, krylov):
    method = js.CayleyArnoldi(krylov_dim=krylov, h=2.0)
    g = jg.random_graph(jr.key(0), N, 3 * N)
    g = jg.Graph(g.senders, g.receivers, 0.02 * g.weights, N, potential=V * jnp.ones(N))
    H = g.assemble()
    model = js.DrivenDampedModel(gamma=GAMMA, kappa=KAPPA)
    s = np.sqrt(S2) * jnp.exp(1j * jr.uniform(jr.key(1), (N,), maxval=2 * np.pi))
    poly = np.polynomial.Polynomial([-S2, V**2 + GAMMA**2, 2 * V * KAPPA, KAPPA**2])
    roots = np.sort(poly.roots().real)
    assert np.all(np.abs(poly.roots().imag) < 1e-12)  # three branches per isolated node
    branch = [s / (GAMMA + 1j * (V + KAPPA * I)) for I in roots]
    guesses = {
        "lower": branch[0],
        "middle at node 0": branch[0].at[0].set(branch[1][0]),
        "upper": branch[2],
    }
    for name, guess in guesses.items():
        psi = js.solve(model, g, s, guess, stability=None).value
        dense, arnoldi = certificates(model, s, H, psi, method)
        if name == "middle at node 0":
            # One isolated real eigenvalue, near that of the isolated node's middle branch.
            I = roots[1]
            lam = -GAMMA + np.sqrt(KAPPA**2 * I**2 - (V + 2 * KAPPA * I) ** 2)
            np.testing.assert_allclose(dense.abscissa, lam, rtol=0.1)  # coupling shifts it
            np.testing.assert_allclose(arnoldi.abscissa, dense.abscissa, rtol=1e-8)
            assert float(arnoldi.ritz_residual) < 1e-8
            assert not bool(dense.stable) and not bool(arnoldi.stable)
        else:
            np.testing.assert_allclose(dense.abscissa, -GAMMA, rtol=1e-10)
            np.testing.assert_allclose(arnoldi.abscissa, dense.abscissa, atol=0.1 * GAMMA)
            assert bool(dense.stable) and bool(arnoldi.stable)
