"""Numerical fluxes, limiters and reconstructions: consistency, monotonicity, order."""

import types

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import jaxstat.pde as jp


FLUXES = [jp.Godunov(), jp.EngquistOsher(), jp.LocalLaxFriedrichs()]
PHYSICAL = [jp.Quadratic(), jp.Convex(lambda p: jnp.cosh(p) - 1, argmin=0.0)]


@pytest.mark.parametrize("flux", PHYSICAL, ids=["quadratic", "cosh"])
@pytest.mark.parametrize("numerical", FLUXES, ids=lambda f: type(f).__name__)
def test_numerical_flux_consistent_and_monotone(numerical, flux, getkey):
    a, b = 2 * jr.normal(getkey(), (2, 200))
    # Consistency F(a, a) = f(a).
    np.testing.assert_allclose(numerical(flux, a, a), flux(a), rtol=1e-14, atol=1e-15)
    # Monotone: nondecreasing in the left state, nonincreasing in the right state.
    da, db = jax.vmap(jax.grad(lambda x, y: numerical(flux, x, y), argnums=(0, 1)))(a, b)
    assert jnp.all(da >= -1e-14) and jnp.all(db <= 1e-14)


@pytest.mark.parametrize("flux", PHYSICAL, ids=["quadratic", "cosh"])
def test_godunov_is_flux_of_exact_riemann_solution(flux, getkey):
    # Independent check: the Riemann solution evaluated on the face x/t = 0.
    a, b = 2 * jr.normal(getkey(), (2, 200))
    _, p_face = jax.vmap(lambda left, right: jp.riemann(left, right, jnp.array(0.0), 1.0, flux))(
        a, b
    )
    np.testing.assert_allclose(jp.Godunov()(flux, a, b), flux(p_face), rtol=1e-12, atol=1e-13)


def test_engquist_osher_integral_form(getkey):
    # F_EO(a, b) = f(a) + int_a^b min(f'(s), 0) ds, by a fine trapezoidal rule.
    flux = jp.Convex(lambda p: jnp.cosh(p) - 1, argmin=0.0)
    a, b = 2 * jr.normal(getkey(), (2, 50))
    s = jnp.linspace(0, 1, 20001)
    path = a[:, None] + s[None, :] * (b - a)[:, None]
    integrand = jnp.minimum(jnp.sinh(path), 0) * (b - a)[:, None]
    integral = jnp.trapezoid(integrand, s, axis=1)
    # Trapezoid error O(ds^2 |f''| (b - a)^3) < 1e-7 here.
    np.testing.assert_allclose(
        jp.EngquistOsher()(flux, a, b), flux(a) + integral, rtol=1e-7, atol=1e-7
    )


def test_convex_flux_generic_derivative_inverse_conjugate():
    flux = jp.Convex(lambda p: jnp.cosh(p) - 1, argmin=0.0)
    p = jnp.linspace(-2, 2, 9)
    np.testing.assert_allclose(flux.derivative(p), jnp.sinh(p), rtol=1e-14)
    np.testing.assert_allclose(flux.inverse_derivative(jnp.sinh(p)), p, rtol=1e-12, atol=1e-14)
    # cosh* (q) = q asinh q - sqrt(1 + q^2) + 1.
    q = jnp.linspace(-3, 3, 7)
    np.testing.assert_allclose(
        flux.conjugate(q), q * jnp.arcsinh(q) - jnp.sqrt(1 + q**2) + 1, rtol=1e-12, atol=1e-14
    )


@pytest.mark.parametrize(
    "limiter,expected",
    [
        (jp.MinMod(), [1.0, 0.0, 0.0, 1.0]),
        (jp.VanLeer(), [4 / 3, 0.0, 0.0, 1.0]),
        (jp.MonotonizedCentral(), [1.5, 0.0, 0.0, 1.0]),
    ],
    ids=lambda x: type(x).__name__ if not isinstance(x, list) else "",
)
def test_limiters(limiter, expected):
    a = jnp.array([1.0, 1.0, -1.0, 1.0])
    b = jnp.array([2.0, -1.0, 0.0, 1.0])
    np.testing.assert_allclose(limiter(a, b), expected, rtol=1e-14)
    # Symmetry phi(a, b) = phi(b, a) (the TVD bounds over all ratios: next test).
    np.testing.assert_allclose(limiter(b, a), limiter(a, b), rtol=1e-14)


# Closed forms of sigma / a as functions of the ratio r = b / a > 0 (Sweby's phi(r)).
LIMITER_PHI = [
    (jp.MinMod(), lambda r: np.minimum(1.0, r)),
    (jp.VanLeer(), lambda r: 2 * r / (1 + r)),
    (jp.MonotonizedCentral(), lambda r: np.minimum(np.minimum(2.0, 2 * r), (1 + r) / 2)),
]


@pytest.mark.parametrize("limiter,phi", LIMITER_PHI, ids=lambda x: type(x).__name__)
def test_limiters_lie_in_the_tvd_region(limiter, phi):
    # Over a dense grid of ratios r = b / a (1e-4 .. 1e4, both signs of a): where a b > 0,
    # 0 <= sigma / a <= 2 and 0 <= sigma / b <= 2 (Sweby's TVD region 0 <= phi(r) <= min(2, 2r)),
    # sigma / a equals the limiter's closed form phi(r), phi(1) = 1 (second order on smooth
    # data), and sigma is symmetric, odd and positively homogeneous; where a b <= 0, sigma = 0.
    r = np.logspace(-4, 4, 2001)
    for scale in (1.0, -2.5, 1e-3):
        a = np.full_like(r, scale)
        b = r * scale
        sigma = np.asarray(limiter(jnp.asarray(a), jnp.asarray(b)))
        ratio_a, ratio_b = sigma / a, sigma / b
        assert np.all(ratio_a >= 0) and np.all(ratio_a <= 2 + 1e-14)
        assert np.all(ratio_b >= 0) and np.all(ratio_b <= 2 + 1e-14)
        np.testing.assert_allclose(ratio_a, phi(r), rtol=1e-13)
        np.testing.assert_allclose(limiter(jnp.asarray(b), jnp.asarray(a)), sigma, rtol=1e-14)
        np.testing.assert_allclose(limiter(-jnp.asarray(a), -jnp.asarray(b)), -sigma, rtol=1e-14)
        np.testing.assert_allclose(
            limiter(3 * jnp.asarray(a), 3 * jnp.asarray(b)), 3 * sigma, rtol=1e-14
        )
        # Opposite signs or a zero difference: no slope (an extremum is not steepened).
        for other in (-b, 0 * b):
            assert np.all(np.asarray(limiter(jnp.asarray(a), jnp.asarray(other))) == 0)
            assert np.all(np.asarray(limiter(jnp.asarray(other), jnp.asarray(a))) == 0)
    np.testing.assert_allclose(limiter(jnp.array(0.7), jnp.array(0.7)), 0.7, rtol=1e-15)
    # Flat data (a = b = 0, a constant region) has zero slope, with finite derivatives: no 0 / 0
    # (found by mutation testing: `a b >= 0` instead of `a b > 0` gave NaN here for van Leer).
    zero = jnp.zeros(3)
    assert np.all(np.asarray(limiter(zero, zero)) == 0)
    grads = jax.grad(lambda a, b: jnp.sum(limiter(a, b)), argnums=(0, 1))(zero, zero)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)
    flat = jnp.full(12, 0.3)  # MUSCL on constant data: the constant at every face
    left, right = jp.MUSCL(limiter)(flat)
    assert np.all(np.asarray(left) == 0.3) and np.all(np.asarray(right) == 0.3)


# (reconstruction, accepted band of the fitted order). The bands are the formal order -0.2/+0.4,
# except WENO: on coarse grids the nonlinear weights approach the optimal linear weights faster
# than h^5, so the observed pre-asymptotic slope exceeds 5 (measured 5.0 for WENO5, 5.7 for
# WENO5Z on these grids); we accept [4.6, 6.2].
RECONSTRUCTIONS = [
    (jp.FirstOrder(), (0.8, 1.2)),
    (jp.MUSCL(jp.MinMod()), (1.8, 2.4)),
    (jp.MUSCL(jp.VanLeer()), (1.8, 2.4)),
    (jp.MUSCL(jp.MonotonizedCentral()), (1.8, 2.4)),
    (jp.WENO5(), (4.6, 6.2)),
    (jp.WENO5Z(), (4.6, 6.2)),
]


@pytest.mark.parametrize("reconstruction,band", RECONSTRUCTIONS, ids=lambda r: str(r).split("(")[0])
def test_reconstruction_order(reconstruction, band):
    # Face values from exact cell averages of a smooth periodic function with critical points,
    # compared with the exact point values at the faces; fitted slope of log L1 error vs log h.
    fn = lambda x: jnp.sin(x) + 0.3 * jnp.cos(2 * x)
    primitive = lambda x: -jnp.cos(x) + 0.15 * jnp.sin(2 * x)
    ns = [32, 64, 128, 256]
    errors = []
    for n in ns:
        grid = jp.UniformGrid(0.0, 2 * np.pi, n)
        averages = jnp.diff(primitive(grid.faces())) / grid.spacing[0]
        g = reconstruction.ghost
        padded = jp.Periodic().pad(averages, g, 0, grid.spacing[0])
        left, right = jax.jit(reconstruction)(padded)
        exact = fn(grid.faces())
        errors.append(float(jnp.mean(jnp.abs(left - exact) + jnp.abs(right - exact))))
    slope = -np.polyfit(np.log(ns), np.log(errors), 1)[0]
    assert band[0] < slope < band[1], (errors, slope)


@pytest.mark.parametrize("reconstruction", [r for r, _ in RECONSTRUCTIONS[:4]], ids=str)
def test_tvd_reconstructions_create_no_new_extrema(reconstruction, getkey):
    # MUSCL face values lie between neighbouring cell averages (the property behind TVD).
    v = jnp.cumsum(jr.normal(getkey(), (200,)))
    left, right = reconstruction(v)
    g = reconstruction.ghost
    j = jnp.arange(g - 1, 200 - g)
    lo = jnp.minimum(v[j], v[j + 1])
    hi = jnp.maximum(v[j], v[j + 1])
    for face in (left, right):
        assert jnp.all(face >= lo - 1e-12) and jnp.all(face <= hi + 1e-12)


def test_weno_essentially_non_oscillatory_at_a_jump():
    # A step: WENO5 face values stay within the data range up to O(eps)-sized overshoots.
    v = jnp.where(jnp.arange(40) < 20, 1.0, 0.0)
    for reconstruction in (jp.WENO5(), jp.WENO5Z()):
        left, right = reconstruction(v)
        assert jnp.all(left > -1e-6) and jnp.all(left < 1 + 1e-6)
        assert jnp.all(right > -1e-6) and jnp.all(right < 1 + 1e-6)


def test_local_lax_friedrichs_system_closed_form(getkey):
    # Vector Burgers in d = 2 across a face normal to `axis`: the flux F_k(p) = H(p) e_k with
    # H(p) = sum_l f(p_l), F = (F_k(a) + F_k(b)) / 2 - alpha (b - a) / 2, alpha = max(|f'(a_k)|,
    # |f'(b_k)|); written out componentwise. In d = 1 it is the scalar flux.
    flux, llf = jp.Convex(lambda p: jnp.cosh(p) - 1, argmin=0.0), jp.LocalLaxFriedrichs()
    a, b = np.asarray(2 * jr.normal(getkey(), (2, 2, 7)))
    f = lambda p: np.cosh(p) - 1
    for axis in (0, 1):
        alpha = np.maximum(np.abs(np.sinh(a[axis])), np.abs(np.sinh(b[axis])))
        expect = -0.5 * alpha * (b - a)
        expect[axis] += 0.5 * (f(a[0]) + f(a[1]) + f(b[0]) + f(b[1]))
        np.testing.assert_allclose(llf.system(flux, a, b, axis), expect, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(
        llf.system(flux, a[:1], b[:1], 0)[0], llf(flux, a[0], b[0]), rtol=1e-14
    )
    # Godunov and Engquist-Osher have no system form: refused, naming the remedy.
    for numerical in (jp.Godunov(), jp.EngquistOsher()):
        assert not numerical.solves_systems
        name = type(numerical).__name__
        with pytest.raises(
            TypeError,
            match=rf"^the 2-D Burgers system .* only `LocalLaxFriedrichs\(\)` applies "
            rf"\(got {name}\(\)\)",
        ):
            numerical.system(flux, a, b, 0)
    assert llf.solves_systems


@pytest.mark.parametrize("numerical", FLUXES[:2], ids=lambda f: type(f).__name__)
def test_sonic_point_does_not_promote_the_states(numerical):
    # A float64 argmin with float32 states: the flux is float32, and the value is the
    # float64 one to float32 rounding.
    flux = jp.Convex(lambda p: p * p / 2, argmin=jnp.zeros((), jnp.float64))
    a, b = jnp.array([-1.0, 0.5, 2.0], jnp.float32), jnp.array([1.0, -0.5, 3.0], jnp.float32)
    out = numerical(flux, a, b)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, numerical(jp.Quadratic(), a, b), rtol=1e-7)


@pytest.mark.parametrize("numerical", FLUXES, ids=lambda f: type(f).__name__)
def test_consistency_with_a_shifted_sonic_point(numerical, getkey):
    # f(p) = (p - 1/2)^2 + 1: the sonic point m = 1/2 and f(m) = 1 are not 0 (the fluxes above
    # have f(0) = 0, blind to a wrong `- f(m)`). Consistency F(a, a) = f(a), and the Legendre
    # conjugates of the closed form, f^*(q) = q^2 / 4 + q / 2 - 1, and of Quadratic, q^2 / 2.
    flux = jp.Convex(lambda p: (p - 0.5) ** 2 + 1, argmin=0.5)
    a = 2 * jr.normal(getkey(), (50,))
    np.testing.assert_allclose(numerical(flux, a, a), flux(a), rtol=1e-14)
    q = jnp.array([-2.0, 0.5, 3.0])
    np.testing.assert_allclose(flux.conjugate(q), q**2 / 4 + q / 2 - 1, rtol=1e-12)
    np.testing.assert_allclose(jp.Quadratic().conjugate(q), [2.0, 0.125, 4.5], rtol=1e-15)


def test_generic_inverse_derivative_in_float32():
    # Newton's tolerance and start follow the states' dtype: float32 in, float32 out, to float32
    # accuracy (sinh^-1 of the characteristic speeds of cosh).
    flux = jp.Convex(lambda p: jnp.cosh(p) - 1, argmin=jnp.zeros((), jnp.float64))
    s = jnp.array([-3.0, -0.2, 0.0, 1.5], jnp.float32)
    p = flux.inverse_derivative(s)
    assert p.dtype == jnp.float32
    np.testing.assert_allclose(p, np.arcsinh(np.asarray(s, np.float64)), rtol=1e-6, atol=1e-7)

    # No p has f'(p) = 2 for f = sqrt(1 + p^2) (|f'| < 1): Newton's iteration is bounded and
    # raises instead of running forever or returning a wrong value.
    bounded = jp.Convex(lambda p: jnp.sqrt(1 + p**2), argmin=0.0)
    with pytest.raises(Exception):
        jax.block_until_ready(bounded.inverse_derivative(jnp.array(2.0)))


def _cell_fit(values, first):
    """The polynomial (numpy, increasing powers) whose averages over the unit cells
    `[i - 1/2, i + 1/2]`, `i = first .. first + len(values) - 1`, are `values` (exact)."""
    n = len(values)
    cells = np.arange(first, first + n)
    # Average of x^k over [i - 1/2, i + 1/2] = ((i + 1/2)^{k+1} - (i - 1/2)^{k+1}) / (k + 1).
    k = np.arange(n)
    averages = ((cells[:, None] + 0.5) ** (k + 1) - (cells[:, None] - 0.5) ** (k + 1)) / (k + 1)
    return np.polynomial.Polynomial(np.linalg.solve(averages, values))


def _weno5_peer(stencil, eps, z):
    """WENO5 (Jiang-Shu) or WENO5-Z at the face `x = 1/2` of cell 0 from the cell averages of
    cells -2 .. 2, from the definitions: `q_r`, `beta_r` from the quadratic fitting cells
    `r - 2 .. r`, `beta_r = int_cell (p_r')^2 + (p_r'')^2` (unit cells)."""
    qs, betas = [], []
    for r in range(3):
        p = _cell_fit(stencil[r : r + 3], r - 2)
        qs.append(p(0.5))
        i1 = (p.deriv() ** 2).integ()
        i2 = (p.deriv(2) ** 2).integ()
        betas.append(i1(0.5) - i1(-0.5) + i2(0.5) - i2(-0.5))
    qs, betas, d = np.array(qs), np.array(betas), np.array([0.1, 0.6, 0.3])
    if z:
        alphas = d * (1 + (abs(betas[0] - betas[2]) / (betas + eps)) ** 2)
    else:
        alphas = d / (eps + betas) ** 2
    return qs, betas, alphas @ qs / alphas.sum()


def test_weno5_candidates_indicators_and_weights_closed_forms(getkey):
    # The three candidates and Jiang-Shu indicators against their definitions (quadratics fitted
    # to the cell averages, integrals of squared derivatives); the linear weights (1, 6, 3) / 10
    # against the quartic fitted to all five cells (fifth order: exact for degree <= 4); the
    # nonlinear WENO5 and WENO5-Z weights, both faces, on random data with a batch axis.
    from jaxstat.pde._reconstruction import _weno5_parts

    stencil = np.asarray(jr.normal(getkey(), (5,)))
    qs, betas, ds = jax.jit(_weno5_parts)(*jnp.asarray(stencil))
    peer_q, peer_beta, _ = _weno5_peer(stencil, 1e-6, False)
    np.testing.assert_allclose(qs, peer_q, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(betas, peer_beta, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(ds @ np.asarray(qs), _cell_fit(stencil, -2)(0.5), rtol=1e-13)
    np.testing.assert_allclose(np.sum(ds), 1.0, rtol=1e-15)
    v = np.asarray(jr.normal(getkey(), (2, 11)))
    for reconstruction, z in ((jp.WENO5(), False), (jp.WENO5Z(), True)):
        assert (reconstruction.ghost, reconstruction.order) == (3, 5)
        left, right = map(np.asarray, jax.jit(reconstruction)(jnp.asarray(v)))
        assert left.shape == right.shape == (2, 11 - 2 * 3 + 1)
        for row in range(2):
            for face, j in enumerate(range(2, 11 - 3)):  # the face j + 1/2
                expect_left = _weno5_peer(v[row, j - 2 : j + 3], reconstruction.eps, z)[2]
                expect_right = _weno5_peer(v[row, j + 3 : j - 2 : -1], reconstruction.eps, z)[2]
                np.testing.assert_allclose(left[row, face], expect_left, rtol=1e-12)
                np.testing.assert_allclose(right[row, face], expect_right, rtol=1e-12)


@pytest.mark.parametrize("limiter", [jp.MinMod(), jp.VanLeer()], ids=lambda x: type(x).__name__)
def test_muscl_and_first_order_closed_forms(limiter, getkey):
    # MUSCL: sigma_j = phi(v_j - v_{j-1}, v_{j+1} - v_j), v^-_{j+1/2} = v_j + sigma_j / 2,
    # v^+_{j+1/2} = v_{j+1} - sigma_{j+1} / 2 at the faces j = 1 .. m - 3, written out; first
    # order: v^- = v_j, v^+ = v_{j+1}. A batch axis in front; exact on linear data.
    v = np.cumsum(np.asarray(jr.normal(getkey(), (2, 12))) + 0.5, axis=-1)
    sigma = np.asarray(
        jax.jit(limiter)(jnp.asarray(v[:, 1:-1] - v[:, :-2]), jnp.asarray(v[:, 2:] - v[:, 1:-1]))
    )
    muscl = jax.jit(jp.MUSCL(limiter))
    left, right = muscl(jnp.asarray(v))
    assert jp.MUSCL.ghost == 2 and jp.MUSCL.order == 2
    np.testing.assert_allclose(left, v[:, 1:-2] + sigma[:, :-1] / 2, rtol=1e-14)
    np.testing.assert_allclose(right, v[:, 2:-1] - sigma[:, 1:] / 2, rtol=1e-14)
    line = 0.3 + 1.7 * jnp.arange(9.0)
    left, right = muscl(line)
    np.testing.assert_allclose(left, 0.3 + 1.7 * (jnp.arange(1.0, 7.0) + 0.5), rtol=1e-14)
    np.testing.assert_allclose(right, left, rtol=1e-14)
    left, right = jax.jit(jp.FirstOrder())(jnp.asarray(v))
    assert (jp.FirstOrder.ghost, jp.FirstOrder.order) == (1, 1)
    np.testing.assert_array_equal(left, v[:, :-1])
    np.testing.assert_array_equal(right, v[:, 1:])
    # The refusal in the library's words (called directly: in the test suite jaxtyping's hook
    # refuses the argument of `MUSCL("minmod")` before the check runs).
    with pytest.raises(
        TypeError, match=r"^`limiter` must be an `AbstractLimiter`, got 'minmod'\.$"
    ):
        jp.MUSCL.__check_init__(types.SimpleNamespace(limiter="minmod"))
