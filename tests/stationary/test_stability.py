"""Stability certificates against the dense spectrum, with Krylov dimensions far below the state's
real dimension: Lanczos (the extremes of a symmetric operator) against `numpy.linalg.eigvalsh`;
`AutoStability` (the default of `solve`) and `CayleyArnoldi` against `DenseSpectrum` on stable
and unstable states of gradient and Kerr networks.

Kerr network:
`n` nodes (`2n` reals; 120 by default, 300 in the slow suite), weak random coupling
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
from jaxstat._lanczos import lanczos_extremes
from jaxstat.stationary._stability import AutoStability


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


# ---------------------------------------------------------------------------------------------
# Lanczos: the extremes of a symmetric operator, far fewer steps than its dimension.


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_lanczos_extremes_against_eigvalsh(dtype):
    """`H = L + diag(V)` of a random graph (N = 1500, E = 5N, V uniform in [0, 1]) by at most 80
    Lanczos steps: both extremes agree with LAPACK to the reported error estimate (plus float32
    rounding of the products, `~ eps |H|`), and the Ritz values lie inside the spectrum."""
    N = 1500
    g = jg.random_graph(jr.key(0), N, 5 * N, dtype=dtype)
    g = jg.Graph(g.senders, g.receivers, g.weights, N, potential=jr.uniform(jr.key(3), (N,), dtype))
    ev = np.linalg.eigvalsh(np.asarray(g.as_dense(), np.float64))
    eps = float(jnp.finfo(dtype).eps)
    ext = lanczos_extremes(
        g.assemble().mv, jr.normal(jr.key(1), (N,), dtype), max_steps=80, rtol=eps**0.5
    )
    assert bool(ext.converged) and int(ext.num_products) <= 80
    rounding = 100 * eps * ev[-1]
    err_min, err_max = float(ext.smallest) - ev[0], float(ext.largest) - ev[-1]
    assert -rounding <= err_min <= float(ext.smallest_error) + rounding
    assert -float(ext.largest_error) - rounding <= err_max <= rounding
    # Converged to the relative tolerance asked for (sqrt(eps) of the largest |theta|).
    assert abs(err_min) <= eps**0.5 * ev[-1] and abs(err_max) <= eps**0.5 * ev[-1]


# ---------------------------------------------------------------------------------------------
# AutoStability (the default of `solve`) against the dense spectrum.


class _Refuse(js.AbstractStabilityMethod):
    """A fallback that returns NaN: a test using it shows the structured path decided alone."""

    def __call__(self, vector_field, y):
        nan = jnp.full((), jnp.nan)
        return js.Stability(abscissa=nan, ritz_residual=nan, stable=jnp.array(False))


def _gradient_network(N=300):
    g = jg.random_graph(jr.key(0), N, 5 * N)
    V = jr.uniform(jr.key(3), (N,))
    return jg.Graph(g.senders, g.receivers, g.weights, N, potential=V)


def _certify(model, g, s, psi, method):
    H = g.assemble()
    return certificates_of(model, s, H, psi, method)


@eqx.filter_jit
def certificates_of(model, s, H, psi, method):
    f = lambda p: model.vector_field(p, s, H)  # noqa: E731
    return js.DenseSpectrum()(f, psi), method(f, psi)


GRADIENT_CASES = {
    # name: (model, complex source, start value, exact abscissa?)
    "quartic": (js.GradientModel(js.Quartic(0.5, 1.0), gamma=0.7), False, None, True),
    "double well, stable": (js.GradientModel(js.DoubleWell(1.0, 1.0)), False, 1.0, True),
    "double well, unstable": (js.GradientModel(js.DoubleWell(1.0, 1.0)), False, 0.0, True),
    "quadratic, kappa": (js.GradientModel(js.Quadratic(0.5), kappa=0.7), True, None, True),
    "quartic, kappa": (js.GradientModel(js.Quartic(0.5, 1.0), kappa=0.7), True, None, False),
}


@pytest.mark.parametrize("name", list(GRADIENT_CASES))
def test_auto_stability_gradient_models_against_dense(name):
    """Gradient models (N = 300 nodes; 300 or 600 reals; at most 48 Lanczos steps): the
    Jacobian is `-(1 + t J) S / (1 + t^2)` with `S` symmetric. Real states (`t = 0`) and `S`
    commuting with `J` (quadratic potential): the abscissa is `-lambda_min(S) / (1 + t^2)`
    exactly; otherwise (quartic with `kappa`) it is an upper bound on a stable state. The double
    well's state from 0 sits on the maximum of every well: unstable, and reported so without the
    fallback (a negative Ritz value of `S` proves it)."""
    model, cplx, start, exact = GRADIENT_CASES[name]
    g = _gradient_network()
    s = jr.normal(jr.key(1), (300, 1))
    if cplx:
        s = s + 1j * jr.normal(jr.key(2), (300, 1))
    if start is not None:
        s = 0.1 * s
    psi0 = None if start is None else jnp.full(s.shape, start, s.dtype)
    psi = js.solve(model, g, s, psi0, stability=None).value
    dense, auto = _certify(model, g, s, psi, AutoStability(fallback=_Refuse(), dense_max=0))
    assert bool(auto.stable) == bool(dense.stable) == (name != "double well, unstable")
    if exact:
        # Lanczos error ~ r^2 / gap with r <= sqrt(eps) |S|: 1e-7 relative is ample.
        np.testing.assert_allclose(auto.abscissa, dense.abscissa, rtol=1e-7)
    else:
        assert float(dense.abscissa) <= float(auto.abscissa) < 0
        np.testing.assert_allclose(auto.abscissa, dense.abscissa, rtol=0.05)


def test_auto_stability_float32_against_float64_dense():
    """The quartic gradient model in float32 (the library's default dtype): the certificate agrees
    with the float64 dense spectrum to float32 accuracy (Lanczos rtol sqrt(eps) ~ 3e-4, eigenvalue
    error ~ rtol^2 |S|^2 / gap, and the state itself is float32)."""
    model = js.GradientModel(js.Quartic(0.5, 1.0))
    g64 = _gradient_network()
    g32 = jg.Graph(
        g64.senders,
        g64.receivers,
        g64.weights.astype(jnp.float32),
        300,
        potential=g64.potential.astype(jnp.float32),
    )
    s = jr.normal(jr.key(1), (300, 2))
    psi32 = js.solve(model, g32, s.astype(jnp.float32), stability=None).value
    dense, _ = _certify(model, g64, s, psi32.astype(jnp.float64), _Refuse())
    _, auto = _certify(model, g32, s.astype(jnp.float32), psi32, AutoStability(dense_max=0))
    assert auto.abscissa.dtype == jnp.float32
    np.testing.assert_allclose(auto.abscissa, dense.abscissa, rtol=1e-4)
    assert bool(auto.stable)


def test_auto_stability_kerr_network_against_dense():
    """The Kerr network of this module. All-lower and all-upper branches: `M` (with
    `A = -gamma I - J M`) is definite, so the abscissa is `-gamma` exactly, decided by Lanczos on
    `M` alone (no fallback). Node 0 on its middle branch: `M` indefinite and the numerical
    abscissa positive, so the structured path cannot decide and the fallback (the dense spectrum,
    240 reals) gives the unstable eigenvalue."""
    N = 120
    g = jg.random_graph(jr.key(0), N, 3 * N)
    g = jg.Graph(g.senders, g.receivers, 0.02 * g.weights, N, potential=V * jnp.ones(N))
    model = js.DrivenDampedModel(gamma=GAMMA, kappa=KAPPA)
    s = np.sqrt(S2) * jnp.exp(1j * jr.uniform(jr.key(1), (N,), maxval=2 * np.pi))
    poly = np.polynomial.Polynomial([-S2, V**2 + GAMMA**2, 2 * V * KAPPA, KAPPA**2])
    roots = np.sort(poly.roots().real)
    branch = [s / (GAMMA + 1j * (V + KAPPA * I)) for I in roots]
    for name, guess in {
        "lower": branch[0],
        "upper": branch[2],
        "middle at node 0": branch[0].at[0].set(branch[1][0]),
    }.items():
        psi = js.solve(model, g, s, guess, stability=None).value
        middle = name == "middle at node 0"
        method = AutoStability(fallback=None if middle else _Refuse(), dense_max=0)
        dense, auto = _certify(model, g, s, psi, method)
        if middle:
            np.testing.assert_allclose(auto.abscissa, dense.abscissa, rtol=1e-12)
            assert float(auto.abscissa) > 0 and not bool(auto.stable)
        else:
            np.testing.assert_allclose(dense.abscissa, -GAMMA, rtol=1e-10)
            np.testing.assert_allclose(auto.abscissa, -GAMMA, rtol=1e-12)  # gamma from a probe
            assert bool(auto.stable)


def test_solve_default_certificate_is_auto_stability():
    """`solve` certifies by default with the `AutoStability` Module (no string flag), and its
    result is the one of an explicit `AutoStability()`."""
    import inspect

    default = inspect.signature(js.solve).parameters["stability"].default
    assert isinstance(default, AutoStability)
    model = js.GradientModel(js.DoubleWell(1.0, 1.0))
    g = _gradient_network(60)
    s = 0.1 * jr.normal(jr.key(1), (60, 1))
    sol = js.solve(model, g, s, jnp.zeros_like(s), throw=False)
    assert sol.result == js.RESULTS.unstable and float(sol.stability.abscissa) > 0
