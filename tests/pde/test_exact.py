"""Exact solutions: Cole-Hopf, local entropy, Hopf-Lax, Riemann problems."""

import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxstat.pde as jp


def test_cole_hopf_quadratic_closed_form():
    # u0 = a x^2 / 2: phi is a Gaussian, u = a x^2 / (2 (1 + a t)) + nu log(1 + a t) exactly.
    a, nu, t = 0.7, 0.1, 1.3
    x = jnp.linspace(-2, 2, 9)[:, None]
    u, p = jp.cole_hopf(lambda y: 0.5 * a * y[0] ** 2, x, t, nu, half_width=8.0, num_nodes=801)
    x = x[:, 0]
    # Machine precision: the trapezoidal rule is spectrally accurate for this Gaussian.
    np.testing.assert_allclose(
        u, a * x**2 / (2 * (1 + a * t)) + nu * jnp.log(1 + a * t), atol=1e-14
    )
    np.testing.assert_allclose(p[:, 0], a * x / (1 + a * t), atol=1e-14)


def test_cole_hopf_viscous_shock_closed_form():
    # u0 = -2 nu log cosh(x / (2 nu)): p = -tanh(x / (2 nu)) is a steady viscous shock and
    # u = u0 - t / 2. The integrand has two peaks at x -+ t of width sqrt(2 nu t); the window
    # must hold both with ~9 widths of margin.
    nu, t = 0.05, 1.3
    u0 = lambda y: -2 * nu * jnp.log(jnp.cosh(y[0] / (2 * nu)))
    x = jnp.linspace(-1, 1, 11)[:, None]
    u, p = jp.cole_hopf(u0, x, t, nu, half_width=6.0, num_nodes=3001)
    np.testing.assert_allclose(u, jax.vmap(u0)(x) - t / 2, atol=1e-13)
    np.testing.assert_allclose(p[:, 0], -jnp.tanh(x[:, 0] / (2 * nu)), atol=1e-13)


def test_cole_hopf_converges_geometrically_in_nodes():
    # For sin data the error falls geometrically with the node count until roundoff: each step
    # of +100 nodes gains orders of magnitude; 801 nodes agree with 1601 to 1e-14.
    x = jnp.linspace(0, 2 * np.pi, 7)[:, None]
    u0 = lambda y: -jnp.cos(y[0])
    ref, pref = jp.cole_hopf(u0, x, 1.0, 0.1, half_width=5.0, num_nodes=1601)
    errors = []
    for m in (101, 201, 801):
        u, _ = jp.cole_hopf(u0, x, 1.0, 0.1, half_width=5.0, num_nodes=m)
        errors.append(float(jnp.max(jnp.abs(u - ref))))
    assert errors[0] > 1e3 * errors[1] or errors[1] < 1e-13, errors
    assert errors[2] < 1e-14
    # p is the gradient of u: compare with central differences of u (error h^2 u''' ~ 1e-10).
    h = 1e-5
    up, _ = jp.cole_hopf(u0, x + h, 1.0, 0.1, half_width=5.0, num_nodes=1601)
    um, _ = jp.cole_hopf(u0, x - h, 1.0, 0.1, half_width=5.0, num_nodes=1601)
    np.testing.assert_allclose(pref[:, 0], (up - um) / (2 * h), atol=1e-9)


def test_cole_hopf_space_time_batch_and_time_zero():
    x = jnp.linspace(0, 2 * np.pi, 5)[:, None]
    u0 = lambda y: -jnp.cos(y[0])
    ts = jnp.array([0.0, 0.3, 0.3, 1.0, 1.0])
    u, p = jp.cole_hopf(u0, x, ts, 0.1, half_width=5.0, num_nodes=801)
    np.testing.assert_allclose(u[0], -jnp.cos(x[0, 0]), atol=1e-15)
    np.testing.assert_allclose(p[0, 0], jnp.sin(x[0, 0]), atol=1e-15)
    for k in (1, 3):
        uk, pk = jp.cole_hopf(u0, x[k : k + 1], ts[k], 0.1, half_width=5.0, num_nodes=801)
        np.testing.assert_allclose(u[k], uk[0], rtol=1e-14)
        np.testing.assert_allclose(p[k], pk[0], rtol=1e-14)


def test_cole_hopf_tends_to_hopf_lax_as_nu_vanishes():
    # |u_nu - u_0| = O(nu log(1/nu)) away from shocks (Laplace's method): the ratio of errors
    # for nu = 0.01 and 0.001 is about 10 (measured 7.6, the log makes it less than 10).
    x = jnp.linspace(0.2, 2.8, 6)[:, None]  # away from the shock at pi
    u0 = lambda y: -jnp.cos(y[0])
    exact, p_exact = jp.hopf_lax(u0, x, 1.5, half_width=2.0, num_nodes=801)
    errors = []
    for nu in (0.01, 0.001):
        u, _ = jp.cole_hopf(u0, x, 1.5, nu, half_width=2.5, num_nodes=4001)
        errors.append(float(jnp.max(jnp.abs(u - exact))))
    assert 5 < errors[0] / errors[1] < 12, errors
    assert errors[1] < 0.02


def test_local_entropy_quadratic_closed_form():
    # f(y) = a |y|^2 / 2: F(x) = a gamma |x|^2 / (2 (a + gamma)) - d / (2 beta) log(2 pi /
    # (beta (a + gamma))), grad F = a gamma x / (a + gamma). 1-D and 2-D.
    a, gamma, beta = 2.0, 0.5, 3.0
    for d, m in ((1, 801), (2, 161)):
        x = jnp.array([[0.3] * d, [-1.2] * d, [0.0] * d])
        loss = lambda y: 0.5 * a * jnp.sum(y**2)
        F, dF = jp.local_entropy(loss, x, gamma=gamma, beta=beta, half_width=6.0, num_nodes=m)
        r2 = jnp.sum(x**2, axis=-1)
        exact = a * gamma * r2 / (2 * (a + gamma)) - d / (2 * beta) * jnp.log(
            2 * jnp.pi / (beta * (a + gamma))
        )
        np.testing.assert_allclose(F, exact, atol=1e-13)
        np.testing.assert_allclose(dF, a * gamma * x / (a + gamma), atol=1e-13)


def test_local_entropy_is_hj_at_time_one_over_gamma():
    # F = u(x, 1/gamma) - d / (2 beta) log(2 pi / (beta gamma)), nu = 1 / (2 beta): a double well.
    loss = lambda y: (y[0] ** 2 - 1) ** 2
    x = jnp.linspace(-1.5, 1.5, 7)[:, None]
    gamma, beta = 2.0, 5.0
    F, dF = jp.local_entropy(loss, x, gamma=gamma, beta=beta, half_width=4.0, num_nodes=2001)
    u, p = jp.cole_hopf(loss, x, 1 / gamma, 1 / (2 * beta), half_width=4.0, num_nodes=2001)
    np.testing.assert_allclose(
        F, u - 1 / (2 * beta) * jnp.log(2 * jnp.pi / (beta * gamma)), atol=1e-13
    )
    np.testing.assert_allclose(dF, p, atol=1e-13)


def test_hopf_lax_matches_characteristics_before_the_shock():
    # t < t* = 1: p(x, t) = sin(y) with y + t sin y = x (a Newton solve here, independent).
    t = 0.6
    y = jnp.linspace(0.1, 6.0, 13)
    x = y + t * jnp.sin(y)
    u, p = jp.hopf_lax(lambda z: -jnp.cos(z[0]), x[:, None], t, half_width=1.0, num_nodes=401)
    np.testing.assert_allclose(p[:, 0], jnp.sin(y), atol=1e-13)
    # u = u0(y) + t |p|^2 / 2 along the characteristic.
    np.testing.assert_allclose(u, -jnp.cos(y) + t * jnp.sin(y) ** 2 / 2, atol=1e-13)


def test_hopf_lax_2d_separable_sum_and_general_hamiltonian():
    # A separable u0 gives the sum of 1-D solutions; H = cosh p - 1 (non-quadratic) against the
    # characteristics x = y + t H'(p0(y)) before the shock.
    u1 = lambda y: -jnp.cos(y[0])
    x = jnp.array([[0.5, 2.0], [3.0, 1.0]])
    u2, p2 = jp.hopf_lax(lambda y: u1(y[:1]) + u1(y[1:]), x, 0.5, half_width=1.0, num_nodes=81)
    u, p = jp.hopf_lax(u1, x.reshape(4, 1), 0.5, half_width=1.0, num_nodes=401)
    np.testing.assert_allclose(u2, u.reshape(2, 2).sum(axis=1), atol=1e-13)
    np.testing.assert_allclose(p2, p.reshape(2, 2), atol=1e-12)
    flux = jp.Convex(lambda q: jnp.cosh(q) - 1, argmin=0.0)
    t = 0.5
    y = jnp.linspace(0.2, 3.0, 5)
    x1 = y + t * jnp.sinh(jnp.sin(y))
    u, p = jp.hopf_lax(u1, x1[:, None], t, half_width=1.5, num_nodes=301, hamiltonian=flux)
    np.testing.assert_allclose(p[:, 0], jnp.sin(y), atol=1e-11)


@pytest.mark.parametrize(
    "flux",
    [
        jp.Quadratic(),
        # Newton inverse of f' inside the fan: a slow compile; general fluxes are also covered
        # by test_flux.py and the Hopf-Lax test above.
        pytest.param(jp.Convex(lambda q: q**4 / 4 + q**2 / 2), marks=pytest.mark.slow),
    ],
    ids=["quadratic", "quartic"],
)
def test_riemann_solutions(flux):
    x = jnp.linspace(-1.95, 1.95, 400)  # avoids the fan's corners, where u is only C^1 in t
    t = 1.0
    # Shock: speed from Rankine-Hugoniot, states on either side, u continuous with u_x = p.
    u, p = jp.riemann(1.0, -0.5, x, t, flux)
    s = jp.rankine_hugoniot(1.0, -0.5, flux)
    np.testing.assert_allclose(s, (flux(1.0) - flux(-0.5)) / 1.5, rtol=1e-14)
    assert jnp.all(p[x < s * t - 1e-9] == 1.0) and jnp.all(p[x > s * t + 1e-9] == -0.5)
    # Rarefaction: continuous fan f'(p) = x / t between the states.
    u, p = jp.riemann(-1.0, 1.5, x, t, flux)
    inside = (x > flux.derivative(-1.0) * t) & (x < flux.derivative(1.5) * t)
    np.testing.assert_allclose(flux.derivative(p[inside]), x[inside] / t, rtol=1e-10, atol=1e-12)
    assert jnp.all(jnp.abs(jnp.diff(p)) < 0.1)  # no jump
    # u_x = p (central differences of the potential, away from the fan's corners).
    du = jnp.gradient(u, x)
    np.testing.assert_allclose(du[5:-5], p[5:-5], atol=2e-2)
    # u solves u_t + f(u_x) = 0: d/dt by central differences in time.
    ut = (
        jp.riemann(-1.0, 1.5, x, t + 1e-5, flux)[0] - jp.riemann(-1.0, 1.5, x, t - 1e-5, flux)[0]
    ) / 2e-5
    np.testing.assert_allclose(ut, -flux(p), atol=1e-6)


def test_exact_solution_errors():
    x = jnp.zeros((3, 1))
    with pytest.raises(Exception, match="positive"):
        jp.cole_hopf(lambda y: y[0], x, 1.0, 0.0, half_width=1.0)
    with pytest.raises(Exception, match="non-negative"):
        jp.hopf_lax(lambda y: y[0], x, -1.0, half_width=1.0)
    with pytest.raises(ValueError, match="broadcast"):
        jp.cole_hopf(lambda y: y[0], x, jnp.ones(4), 0.1, half_width=1.0)
    with pytest.raises(ValueError, match="num_nodes"):
        jp.cole_hopf(lambda y: y[0], x, 1.0, 0.1, half_width=1.0, num_nodes=2)
    with pytest.raises(Exception, match="gamma"):
        jp.local_entropy(lambda y: y[0] ** 2, x, gamma=-1.0, beta=1.0, half_width=1.0)


def test_cole_hopf_linear_plus_quadratic_closed_form_2d_scalar_points():
    # Separable u0 = sum_k (a_k y_k^2 / 2 + c_k y_k): completing the square,
    # u = sum_k [a_k (x_k + c_k / a_k)^2 / (2 (1 + a_k t)) + nu log(1 + a_k t) - c_k^2 / (2 a_k)],
    # p_k = a_k (x_k + c_k / a_k) / (1 + a_k t). A Gaussian integrand: spectral accuracy.
    a, c, nu, t = jnp.array([0.7, 2.0]), jnp.array([0.4, -0.3]), 0.1, 0.9
    u0 = lambda y: jnp.sum(0.5 * a * y**2 + c * y)
    x = jnp.array([[0.3, -0.2], [-1.0, 0.8], [0.0, 0.0]])
    u, p = jp.cole_hopf(u0, x, t, nu, half_width=6.0, num_nodes=301)
    shift = x + c / a
    exact = jnp.sum(
        a * shift**2 / (2 * (1 + a * t)) + nu * jnp.log(1 + a * t) - c**2 / (2 * a), axis=-1
    )
    np.testing.assert_allclose(u, exact, atol=1e-13)
    np.testing.assert_allclose(p, a * shift / (1 + a * t), atol=1e-13)
    # 1-D points given as a vector, datum a function of a scalar: the same as the (n, 1) form,
    # and the closed form of the first axis.
    x1 = jnp.linspace(-2, 2, 9)
    u1, p1 = jp.cole_hopf(lambda y: 0.5 * a[0] * y**2 + c[0] * y, x1, t, nu, half_width=8.0)
    assert u1.shape == p1.shape == (9,)
    s1 = x1 + c[0] / a[0]
    exact1 = (
        a[0] * s1**2 / (2 * (1 + a[0] * t)) + nu * jnp.log(1 + a[0] * t) - c[0] ** 2 / (2 * a[0])
    )
    np.testing.assert_allclose(u1, exact1, atol=1e-13)
    np.testing.assert_allclose(p1, a[0] * s1 / (1 + a[0] * t), atol=1e-13)


@pytest.mark.parametrize("fn", ["cole_hopf", "local_entropy", "hopf_lax"])
def test_scalar_points_and_scalar_functions(fn):
    # x of shape (n,) with a function of a scalar, x of shape (n, 1) with a function of a scalar,
    # and x of shape (n, 1) with a function of a (1,) vector give the same values.
    x = jnp.linspace(0.2, 2.8, 5)
    call = {
        "cole_hopf": lambda f, x: jp.cole_hopf(f, x, 0.7, 0.1, half_width=4.0, num_nodes=401),
        "local_entropy": lambda f, x: jp.local_entropy(
            f, x, gamma=1.5, beta=5.0, half_width=4.0, num_nodes=401
        ),
        "hopf_lax": lambda f, x: jp.hopf_lax(f, x, 0.7, half_width=1.0, num_nodes=401),
    }[fn]
    v1, d1 = call(lambda y: -jnp.cos(y), x)
    v2, d2 = call(lambda y: -jnp.cos(y), x[:, None])
    v3, d3 = call(lambda y: -jnp.cos(y[0]), x[:, None])
    assert v1.shape == d1.shape == (5,) and d2.shape == d3.shape == (5, 1)
    np.testing.assert_allclose(v1, v3, rtol=1e-14)
    np.testing.assert_allclose(v2, v3, rtol=1e-14)
    np.testing.assert_allclose(d1, d3[:, 0], rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(d2, d3, rtol=1e-14, atol=1e-15)


_X = jnp.linspace(-0.5, 0.5, 5)
# (call with traced t and nu (local entropy: gamma = 1 / t, beta = 1 / (2 nu)), message). Each
# is wrong without the check:
# half_width = 0.01 gives 7e-4 where u is about 0.97 (window cut), num_nodes = 3 gives zeros, a
# strongly convex datum (u0'' = 50) at 41 nodes has a peak of width 0.06 between nodes 0.15 apart.
BAD_QUADRATURE = {
    "window": (
        lambda t, nu: jp.cole_hopf(lambda y: -jnp.cos(y), _X + 3.0, t, nu, half_width=0.01),
        "half_width",
    ),
    "three-nodes": (
        lambda t, nu: jp.cole_hopf(lambda y: -jnp.cos(y), _X, t, nu, half_width=4.0, num_nodes=3),
        "num_nodes",
    ),
    "convex-peak": (
        lambda t, nu: jp.cole_hopf(lambda y: 25 * y**2, _X, t, nu, half_width=3.0, num_nodes=41),
        "num_nodes",
    ),
    "entropy-window": (
        lambda t, nu: jp.local_entropy(
            lambda y: y**2, _X + 3, gamma=1 / t, beta=1 / (2 * nu), half_width=1.0
        ),
        "half_width",
    ),
    "entropy-nodes": (
        lambda t, nu: jp.local_entropy(
            lambda y: y**2, _X, gamma=1 / t, beta=1 / (2 * nu), half_width=4.0, num_nodes=9
        ),
        "num_nodes",
    ),
    "hopf-lax-window": (
        lambda t, _: jp.hopf_lax(lambda y: 3 * y, _X, t, half_width=1.0),
        "half_width",
    ),
}


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("case", BAD_QUADRATURE, ids=str)
def test_quadrature_that_cannot_be_accurate_raises(case, jit):
    fn, match = BAD_QUADRATURE[case]
    if jit:  # t, nu traced: the checks run on values inside the compiled program
        fn = jax.jit(fn)
    # Eager: `eqx.EquinoxRuntimeError` (local_entropy on concrete values: its program returns
    # the flags, raised after it); under `jax.jit`, XLA's runtime error carrying the message.
    with pytest.raises(RuntimeError if jit else eqx.EquinoxRuntimeError, match=match):
        jax.block_until_ready(fn(jnp.asarray(1.0), jnp.asarray(0.1)))


def test_local_entropy_program_checks_only_what_the_host_did_not():
    # Concrete gamma, beta are checked on the host (`checked=True`) and the quadrature's flags
    # are returned: the compiled program has no host callback (JAX's persistent compilation
    # cache cannot store one). Unchecked, the positivity checks stay in the program.
    from jaxstat.pde._exact import _local_entropy

    def program(checked):
        return jax.make_jaxpr(
            lambda g, b: _local_entropy(
                lambda y: y**2,
                _X,
                gamma=g,
                beta=b,
                half_width=4.0,
                num_nodes=65,
                batch_size=None,
                checked=checked,
            )
        )(1.0, 1.0)

    assert "callback" not in str(program(True))
    assert "callback" in str(program(False))


def test_quadrature_checks_pass_where_it_is_accurate():
    # The same problems with an adequate window / resolution: no error, and the closed forms.
    u, _ = jp.cole_hopf(lambda y: 25 * y**2, _X, 1.0, 0.1, half_width=3.0, num_nodes=401)
    np.testing.assert_allclose(u, 25 * _X**2 / 51 + 0.1 * jnp.log(51.0), atol=1e-13)
    u, p = jp.hopf_lax(lambda y: 3 * y, _X, 1.0, half_width=4.0, num_nodes=401)
    np.testing.assert_allclose(u, 3 * _X - 4.5, atol=1e-12)  # u0 = c y: u = c x - t c^2 / 2
    np.testing.assert_allclose(p, 3.0, atol=1e-12)


@pytest.mark.parametrize(
    "call",
    [
        lambda: jp.cole_hopf(lambda y: y, _X, 1.0, 0.1 + 0j, half_width=4.0),
        lambda: jp.cole_hopf(lambda y: y, _X, 1.0 + 0j, 0.1, half_width=4.0),
        lambda: jp.cole_hopf(lambda y: y, _X + 0j, 1.0, 0.1, half_width=4.0),
        lambda: jp.local_entropy(lambda y: y**2, _X, gamma=1j, beta=1.0, half_width=4.0),
        lambda: jp.hopf_lax(lambda y: y, _X, jnp.asarray(1.0 + 0j), half_width=4.0),
    ],
    ids=["nu", "t", "x", "gamma", "hopf-lax-t"],
)
def test_complex_arguments_are_refused(call):
    # Our TypeError says "must be real"; in the test suite the jaxtyping hook (also a TypeError)
    # may refuse the argument first.
    with pytest.raises(TypeError):
        call()


def test_functions_that_do_not_return_a_scalar_are_refused():
    with pytest.raises(ValueError, match="scalar"):
        jp.cole_hopf(lambda y: jnp.stack([y, y]), _X, 1.0, 0.1, half_width=4.0)
    with pytest.raises(ValueError, match="scalar"):
        jp.local_entropy(lambda y: y, _X[:, None].repeat(2, 1), gamma=1.0, beta=1.0, half_width=4.0)


def test_trapezoidal_nodes_and_riemann_closed_forms():
    from jaxstat.pde._exact import _nodes

    # Three nodes on [-2, 2]: s = -2, 0, 2 with weights h/2, h, h/2 (h = 2); in 2-D the tensor
    # grid (ij order) with products of weights. The weights integrate 1 exactly: (2 W)^d.
    s, logw = _nodes(2.0, 3, 1, jnp.float64)
    np.testing.assert_allclose(s[:, 0], [-2.0, 0.0, 2.0], rtol=1e-15)
    np.testing.assert_allclose(jnp.exp(logw), [1.0, 2.0, 1.0], rtol=1e-15)
    s, logw = _nodes(2.0, 3, 2, jnp.float64)
    np.testing.assert_allclose(s[1], [-2.0, 0.0], rtol=1e-15)
    np.testing.assert_allclose(
        jnp.exp(logw), np.outer([1, 2, 1], [1, 2, 1]).reshape(-1), rtol=1e-15
    )
    _, logw = _nodes(0.7, 41, 2, jnp.float64)
    np.testing.assert_allclose(jnp.sum(jnp.exp(logw)), 1.4**2, rtol=1e-14)
    with pytest.raises(ValueError, match="`num_nodes` must be at least 3, got 2"):
        _nodes(1.0, 2, 1, jnp.float64)
    # Rankine-Hugoniot: (f(a) - f(b)) / (a - b), f'(a) for equal states (finite derivative).
    np.testing.assert_allclose(jp.rankine_hugoniot(1.0, 0.0), 0.5, rtol=1e-15)
    np.testing.assert_allclose(jp.rankine_hugoniot(0.7, 0.7), 0.7, rtol=1e-15)
    assert np.isfinite(jax.grad(jp.rankine_hugoniot)(0.7, 0.7))
    # At t = 0 the Riemann solution is its datum: p = left (x < 0), right (x > 0), and
    # u = max(left x, right x) (rarefaction), min(left x, right x) (shock).
    x = jnp.array([-1.5, -0.2, 0.3, 2.0])
    for left, right, pick in ((-1.0, 0.5, jnp.maximum), (1.0, -0.5, jnp.minimum)):
        u, p = jp.riemann(left, right, x, 0.0)
        np.testing.assert_allclose(p, jnp.where(x < 0, left, right), rtol=1e-15)
        np.testing.assert_allclose(u, pick(left * x, right * x), rtol=1e-15)


def test_quadrature_helpers_float32_shapes_and_refusals():
    # The helpers behind cole_hopf / local_entropy / hopf_lax, called directly (one cheap test):
    # nodes and weights in float32, points and scalars mapped over a batch of shape (2, 3) with
    # a batch size that does not divide it, and the refusals in the library's words.
    from jaxstat.pde._exact import _check_batch, _check_points, _map_points, _nodes, _point_function

    # Trapezoidal rule on [-1.5, 1.5]^2 with 5 nodes per axis: h = 0.75, weights h (1/2, 1, 1, 1,
    # 1/2) per axis, tensor grid in ij order, all float32.
    s, logw = _nodes(1.5, 5, 2, jnp.float32)
    assert s.dtype == logw.dtype == jnp.float32 and s.shape == (25, 2)
    np.testing.assert_allclose(s[1], [-1.5, -0.75], rtol=1e-7)
    np.testing.assert_allclose(s[5], [-0.75, -1.5], rtol=1e-7)
    w1 = 0.75 * np.array([0.5, 1, 1, 1, 0.5])
    np.testing.assert_allclose(jnp.exp(logw), np.outer(w1, w1).reshape(-1), rtol=1e-6)
    # Points: a vector is n points on the line, a scalar one point, (n, d) is kept.
    for shape, expect, scalar in (((4,), (4, 1), True), ((), (1,), True), ((4, 2), (4, 2), False)):
        x, scalar_points = _check_points(jnp.zeros(shape))
        assert x.shape == expect and scalar_points == scalar
    assert _check_points(jnp.zeros(3, jnp.float32))[0].dtype == jnp.float32
    with pytest.raises(TypeError, match=r"^`x` must be real floating point, got int32\.$"):
        _check_points(jnp.arange(3, dtype=jnp.int32))
    # A function of a (2,) point, one of a scalar in 1-D (called on y[0]), and refusals.
    y = jnp.array([0.7, -0.2])
    assert _point_function(lambda p: p @ p, "u0", 2, jnp.float64)(y) == y @ y
    scalar_only = lambda p: jnp.broadcast_to(p, ())  # fails on a (1,) vector
    np.testing.assert_allclose(_point_function(scalar_only, "u0", 1, jnp.float64)(y[:1]), 0.7)
    with pytest.raises(ValueError, match=r"^`u0` must map a point of shape \(2,\) to a scalar\.$"):
        _point_function(lambda p: 2 * p, "u0", 2, jnp.float64)
    with pytest.raises(
        ValueError,
        match=r"^`loss` must map a point of shape \(1,\) to a scalar \(in 1-D a function of a "
        r"scalar is accepted too\)\.$",
    ):
        _point_function(lambda p: jnp.stack([p, p]), "loss", 1, jnp.float64)
    # In d >= 2 the function's own error propagates (no scalar form to try).
    with pytest.raises(ValueError) as info:
        _point_function(scalar_only, "u0", 2, jnp.float64)
    assert "must map" not in str(info.value)
    # Mapping over a (2, 3) batch of 2-D points with a scalar broadcast from (3,) and a float64
    # scalar cast to the points' float32.
    x = jnp.arange(12.0, dtype=jnp.float32).reshape(2, 3, 2)
    c = jnp.array([1.0, 2.0, 3.0])
    fn = lambda xi, ci, ki: (jnp.sum(xi) * ci * ki, xi * ci)
    total, scaled = _map_points(fn, x, (c, jnp.asarray(0.5, jnp.float64)), 4)
    assert total.shape == (2, 3) and scaled.shape == (2, 3, 2)
    assert total.dtype == scaled.dtype == jnp.float32
    np.testing.assert_allclose(total, np.sum(np.asarray(x), -1) * np.asarray(c) * 0.5, rtol=1e-6)
    np.testing.assert_allclose(scaled, np.asarray(x) * np.asarray(c)[:, None], rtol=1e-6)
    # Per-point parameters: real, broadcastable against the batch shape; returned as given.
    np.testing.assert_array_equal(_check_batch("t", jnp.ones(3), (2, 3)), jnp.ones(3))
    with pytest.raises(TypeError, match=r"^`t` must be real, got complex128\.$"):
        _check_batch("t", jnp.ones(3, jnp.complex128), (3,))
    with pytest.raises(
        ValueError,
        match=r"^`nu` of shape \(4,\) does not broadcast against the points' batch shape "
        r"\(3,\)\.$",
    ):
        _check_batch("nu", jnp.ones(4), (3,))


def test_quadrature_checks_at_their_thresholds():
    # A concave loss f = -c y^2 / 2 widens the Gibbs peak to sigma^2 = 1 / (beta (gamma - c)):
    # the node-weight check then passes and the kernel check h^2 beta gamma <= 1 decides alone.
    # F = a gamma x^2 / (2 (a + gamma)) - 1 / (2 beta) log(2 pi / (beta (a + gamma))), a = -c,
    # grad F = a gamma x / (a + gamma). Node spacing h = 2 W / (m - 1) = 1; one compiled program;
    # the points in a batch of shape (2, 2) (1-D points of shape (2, 2, 1)).
    x = jnp.array([[-1.0, -0.5], [0.5, 1.0]])[..., None]
    loss = lambda y: -0.25 * y**2  # c = 1/2

    def entropy(gamma, beta):
        return jp.local_entropy(loss, x, gamma=gamma, beta=beta, half_width=12.0, num_nodes=25)

    # h^2 beta gamma = 1 exactly: accepted; the edge of the window is exp(-25) ~ 1e-11 of the
    # peak (below sqrt(eps) = 1.5e-8: accepted); the closed form to the truncated tail.
    F, dF = entropy(1.0, 1.0)
    assert F.shape == (2, 2) and dF.shape == (2, 2, 1)
    np.testing.assert_allclose(F, -(x[..., 0] ** 2) / 2 - 0.5 * jnp.log(4 * jnp.pi), atol=1e-9)
    np.testing.assert_allclose(dF, -x, atol=1e-9)
    # h^2 beta gamma = 1.1025 > 1 (by less than ((m + 1) / (m - 1))^2 = 1.17) with the peak's
    # largest node weight 0.30 < (2 pi)^-1/2: refused.
    with pytest.raises(Exception, match="`num_nodes` is too small"):
        jax.block_until_ready(entropy(1.05, 1.05))
    # gamma - c = 0.05: the edge at exp(-3.6) (x = 0) to exp(-0.025) (x = 1) of the peak: refused
    # (the window cuts the integrand).
    with pytest.raises(Exception, match="`half_width` is too small"):
        jax.block_until_ready(entropy(0.55, 1.0))


def test_quadrature_node_weight_check_in_float32():
    # A convex loss f = a y^2 / 2, a = 1/2, narrows the Gibbs peak to sigma^2 = 1 / (beta (gamma
    # + a)) below the kernel's width: the node-weight check decides. At x = 0 the peak sits on a
    # node of spacing h = 1, whose weight is 1 / sum_k exp(-k^2 / (2 sigma^2)). float32 points:
    # float32 nodes, weights and window tolerance sqrt(eps_32) = 3.5e-4. F(0) = -1 / (2 beta)
    # log(2 pi / (beta (gamma + a))), grad F(0) = 0. One compiled program.
    x = jnp.zeros(1, jnp.float32)
    loss = lambda y: 0.25 * y**2

    def entropy(gamma, beta):
        return jp.local_entropy(loss, x, gamma=gamma, beta=beta, half_width=12.0, num_nodes=25)

    # (gamma, beta): beta (gamma + a) = 0.81, largest node weight 0.359 < (2 pi)^-1/2 = 0.399:
    # accepted. beta (gamma + a) = 0.16: the window's edge at exp(-11.5) = 1e-5 of the peak,
    # between sqrt(eps_64) and sqrt(eps_32): accepted in float32.
    for gamma, beta in ((0.31, 1.0), (0.3, 0.2)):
        F, dF = entropy(gamma, beta)
        assert F.dtype == dF.dtype == jnp.float32
        expect = -0.5 / beta * np.log(2 * np.pi / (beta * (gamma + 0.5)))
        np.testing.assert_allclose(F, [expect], rtol=1e-5)
        np.testing.assert_allclose(dF, [0.0], atol=1e-6)
    # beta (gamma + a) = 1.44: node weight 0.479 > (2 pi)^-1/2 with h^2 beta gamma = 0.94 <= 1:
    # refused by the node-weight check alone.
    with pytest.raises(Exception, match="`num_nodes` is too small"):
        jax.block_until_ready(entropy(0.94, 1.0))


def test_riemann_in_float32():
    # float32 points (the default dtype): the solution is float32, with Burgers' closed forms, at
    # t = 2 (x / t, not x t) and t = 0.
    # Shock (1, -1/2): s = (a + b) / 2 = 1/4, p = a for x < s t, b after, u = min(a x - t a^2 / 2,
    # b x - t b^2 / 2). Rarefaction (-1, 1/2): p = clip(x / t, a, b), u = p x - t p^2 / 2. At t = 0
    # the datum.
    x = jnp.linspace(-1.5, 1.5, 6, dtype=jnp.float32)
    xs = np.asarray(x, np.float64)
    for a, b in ((1.0, -0.5), (-1.0, 0.5)):
        for t in (2.0, 0.0):
            u, p = jp.riemann(a, b, x, t)
            assert u.dtype == p.dtype == jnp.float32
            if a > b:
                expect_p = np.where(xs < (a + b) / 2 * t, a, b)
                expect_u = np.minimum(a * xs - t * a**2 / 2, b * xs - t * b**2 / 2)
            else:
                expect_p = np.clip(xs / t, a, b) if t > 0 else np.where(xs < 0, a, b)
                expect_u = expect_p * xs - t * expect_p**2 / 2
            np.testing.assert_allclose(p, expect_p, rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(u, expect_u, rtol=1e-6, atol=1e-7)


def test_riemann_fan_with_bounded_speeds():
    # f(p) = sqrt(1 + p^2): f'(p) = p / sqrt(1 + p^2) lies in (-1, 1), so (f')^-1 exists only
    # there. The fan between -1 and 1 ends at x / t = f'(+-1) = +-1/sqrt(2); points beyond it are
    # the states themselves, without asking (f')^-1 of x / t. Inside, p = s / sqrt(1 - s^2).
    flux = jp.Convex(lambda p: jnp.sqrt(1 + p**2), argmin=0.0)
    x = jnp.array([-3.0, -0.2, 0.3, 3.0])
    u, p = jp.riemann(-1.0, 1.0, x, 1.0, flux)
    s = np.clip(np.asarray(x), -(0.5**0.5), 0.5**0.5)
    expect = s / np.sqrt(1 - s**2)
    np.testing.assert_allclose(p, expect, rtol=1e-12)
    np.testing.assert_allclose(u, expect * np.asarray(x) - np.sqrt(1 + expect**2), rtol=1e-12)


def test_cole_hopf_float32_batch_rank_two_and_time_zero():
    # Points of shape (2, 2, 1) in float32, t = 0 at two of them (x = 0.3, -0.6: there p is
    # u0'(x), not a quadrature): u0 = a y^2 / 2, u = a x^2 / (2 (1 + a t)) + nu log(1 + a t),
    # p = a x / (1 + a t), float32 out. The refusals name `u0`, `t` and `nu` (in the suite
    # jaxtyping's hook appends its own lines to the message).
    a, nu = 0.7, 0.1
    x = jnp.array([[0.3, -1.1], [0.8, -0.6]], jnp.float32)[..., None]
    t = jnp.array([[0.0, 0.5], [1.3, 0.0]], jnp.float32)
    u0 = lambda y: 0.5 * a * y[0] ** 2
    u, p = jp.cole_hopf(u0, x, t, nu, half_width=6.0, num_nodes=401)
    assert u.dtype == p.dtype == jnp.float32 and u.shape == (2, 2) and p.shape == (2, 2, 1)
    xs, ts = np.asarray(x, np.float64), np.asarray(t, np.float64)[..., None]
    expect_u = a * xs**2 / (2 * (1 + a * ts)) + nu * np.log1p(a * ts)
    np.testing.assert_allclose(u, expect_u[..., 0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(p, a * xs / (1 + a * ts), rtol=1e-5, atol=1e-5)
    with pytest.raises(
        ValueError,
        match=r"^`u0` must map a point of shape \(1,\) to a scalar \(in 1-D a function of a "
        r"scalar is accepted too\)\.(\n|$)",
    ):
        jp.cole_hopf(lambda y: jnp.stack([y[0], y[0]]), x, 1.0, nu, half_width=6.0)
    for name, args in (("t", (jnp.ones(3), nu)), ("nu", (1.0, jnp.ones(3)))):
        with pytest.raises(
            ValueError,
            match=rf"^`{name}` of shape \(3,\) does not broadcast against the points' batch "
            r"shape \(2, 2\)\.(\n|$)",
        ):
            jp.cole_hopf(u0, x, *args, half_width=6.0)


def test_cole_hopf_time_zero_points_skip_the_quadrature_checks_and_refusals_are_whole():
    # u0 = y^2 / 2, nu = 0.05, half-width 1: at t = 0.01 the window holds the integrand, at t = 1
    # its edge keeps e^-10 of the peak and the window check refuses. A point at t = 0 is u0 itself
    # (no quadrature), so its check, which would run at the placeholder time 1, must be skipped.
    u0 = lambda y: 0.5 * y[0] ** 2  # noqa: E731
    x, t, nu = jnp.array([[0.0], [0.3]]), jnp.array([0.01, 0.0]), 0.05
    u, p = jp.cole_hopf(u0, x, t, nu, half_width=1.0)
    xs, ts = np.asarray(x[:, 0]), np.asarray(t)
    np.testing.assert_allclose(u, xs**2 / (2 * (1 + ts)) + nu * np.log1p(ts), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(p[:, 0], xs / (1 + ts), rtol=1e-8, atol=1e-12)
    with pytest.raises(RuntimeError):
        jp.cole_hopf(u0, x, jnp.array([0.01, 1.0]), nu, half_width=1.0)
    # The refusals of nu <= 0 and t < 0, their message lines whole.
    for args, message in (
        ((1.0, -0.1), r"`nu` must be positive \(use `hopf_lax` for nu = 0\)\."),
        ((-1.0, 0.1), r"`t` must be non-negative\."),
    ):
        with pytest.raises(RuntimeError, match=rf"(?m)^equinox\.EquinoxRuntimeError: {message}$"):
            jp.cole_hopf(u0, x, *args, half_width=6.0)


def test_local_entropy_float32_batch_rank_two_and_refusals():
    # Points of shape (2, 2, 1) in float32 with a scope per point: for f = a y^2 / 2,
    # F = u(x, 1/gamma) - 1/(2 beta) log(2 pi / (beta gamma)) with u the viscous HJ solution at
    # nu = 1/(2 beta), u = a x^2 / (2 (1 + a t)) + nu log(1 + a t), and grad F = a x / (1 + a t).
    a, beta = 0.7, 5.0
    x = jnp.array([[0.3, -1.1], [0.8, -0.6]], jnp.float32)[..., None]
    gamma = jnp.array([[2.0, 0.8], [1.5, 4.0]], jnp.float32)
    loss = lambda y: 0.5 * a * y[0] ** 2  # noqa: E731
    F, dF = jp.local_entropy(loss, x, gamma=gamma, beta=beta, half_width=6.0, num_nodes=401)
    assert F.dtype == dF.dtype == jnp.float32 and F.shape == (2, 2) and dF.shape == (2, 2, 1)
    xs, t = np.asarray(x, np.float64)[..., 0], 1 / np.asarray(gamma, np.float64)
    nu = 1 / (2 * beta)
    u = a * xs**2 / (2 * (1 + a * t)) + nu * np.log1p(a * t)
    expect = u - np.log(2 * np.pi * t / beta) / (2 * beta)
    np.testing.assert_allclose(F, expect, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dF[..., 0], a * xs / (1 + a * t), rtol=1e-5, atol=1e-5)
    with pytest.raises(
        ValueError,
        match=r"^`loss` must map a point of shape \(1,\) to a scalar \(in 1-D a function of a "
        r"scalar is accepted too\)\.(\n|$)",
    ):
        jp.local_entropy(lambda y: jnp.stack([y[0], y[0]]), x, gamma=1.0, beta=beta, half_width=6.0)
    wrong_shape = (
        ("gamma", dict(gamma=jnp.ones(3), beta=beta)),
        ("beta", dict(gamma=1.0, beta=jnp.ones(3))),
    )
    for name, kwargs in wrong_shape:
        with pytest.raises(
            ValueError,
            match=rf"^`{name}` of shape \(3,\) does not broadcast against the points' batch "
            r"shape \(2, 2\)\.(\n|$)",
        ):
            jp.local_entropy(loss, x, **kwargs, half_width=6.0)
    # gamma = 0 and beta = 0 are refused (the scope and the temperature are positive): concrete,
    # a ValueError before compiling; traced (inside jit), by the program.
    zero = (("gamma", dict(gamma=0.0, beta=beta)), ("beta", dict(gamma=1.0, beta=0.0)))
    for name, kwargs in zero:
        with pytest.raises(ValueError, match=rf"^`{name}` must be positive\.$"):
            jp.local_entropy(loss, x, **kwargs, half_width=6.0)
        with pytest.raises(
            RuntimeError, match=rf"EquinoxRuntimeError: `{name}` must be positive\."
        ):
            jax.jit(lambda kw: jp.local_entropy(loss, x, **kw, half_width=6.0))(kwargs)


def test_hopf_lax_float32_batch_rank_two_time_zero_and_refusals():
    # u0 = a y^2 / 2, H = p^2 / 2: u = a x^2 / (2 (1 + a t)), p = a x / (1 + a t), on float32
    # points of shape (2, 2, 1) with t = 0 at two of them (there u = u0, p = u0', no search).
    a = 0.7
    x = jnp.array([[0.3, -1.1], [0.8, -0.6]], jnp.float32)[..., None]
    t = jnp.array([[0.0, 0.5], [1.3, 0.0]], jnp.float32)
    u0 = lambda y: 0.5 * a * y[0] ** 2  # noqa: E731
    u, p = jp.hopf_lax(u0, x, t, half_width=6.0, num_nodes=401)
    assert u.dtype == p.dtype == jnp.float32 and u.shape == (2, 2) and p.shape == (2, 2, 1)
    xs, ts = np.asarray(x, np.float64)[..., 0], np.asarray(t, np.float64)
    np.testing.assert_allclose(u, a * xs**2 / (2 * (1 + a * ts)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(p[..., 0], a * xs / (1 + a * ts), rtol=1e-5, atol=1e-5)
    # scalar points give scalar momenta
    u1, p1 = jp.hopf_lax(lambda y: 0.5 * a * y**2, jnp.array([0.3, -1.1, 0.8]), 0.5, half_width=6.0)
    assert p1.shape == (3,)
    np.testing.assert_allclose(p1, a * np.array([0.3, -1.1, 0.8]) / (1 + 0.5 * a), rtol=1e-5)
    with pytest.raises(
        ValueError,
        match=r"^`u0` must map a point of shape \(1,\) to a scalar \(in 1-D a function of a "
        r"scalar is accepted too\)\.(\n|$)",
    ):
        jp.hopf_lax(lambda y: jnp.stack([y[0], y[0]]), x, 1.0, half_width=6.0)
    with pytest.raises(
        ValueError,
        match=r"^`t` of shape \(3,\) does not broadcast against the points' batch shape "
        r"\(2, 2\)\.(\n|$)",
    ):
        jp.hopf_lax(u0, x, jnp.ones(3), half_width=6.0)
    line = r"(?m)^equinox\.EquinoxRuntimeError: {}$"
    with pytest.raises(RuntimeError, match=line.format(r"`t` must be non-negative\.")):
        jp.hopf_lax(u0, x, -1.0, half_width=6.0)
    # u0 = 5 y: the minimiser y* = x - 5 t. At t = 1 it lies outside a window of half-width 1
    # (refused, message line whole); at t = 0.01 inside. A t = 0 point is not searched: its
    # placeholder time 1 would put y* on the window's edge, which must not be refused.
    slope = lambda y: 5.0 * y[0]  # noqa: E731
    window = re.escape(
        "`half_width` is too small: the minimiser of `u_0(y) + t L((x - y) / t)` over the search "
        "window lies on its edge, so the true minimiser may lie outside it. Use `half_width` "
        "larger than `t max|H'(grad u_0)|` (for `H = |p|^2 / 2`: `t max|grad u_0|`)."
    )
    with pytest.raises(RuntimeError, match=line.format(window)):
        jp.hopf_lax(slope, jnp.array([[0.0], [0.3]]), 1.0, half_width=1.0)
    u, p = jp.hopf_lax(slope, jnp.array([[0.0], [0.3]]), jnp.array([0.01, 0.0]), half_width=1.0)
    np.testing.assert_allclose(u, [-0.5 * 25 * 0.01, 1.5], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(p[:, 0], [5.0, 5.0], rtol=1e-6)


def test_hopf_lax_at_a_kink_falls_back_to_the_grid_minimiser():
    # u0 = |y|, t = 1/2: for |x| <= t the minimiser is the kink y* = 0, where Newton on the
    # objective's gradient cannot converge; the search returns the grid minimiser instead of
    # raising (error O(h), h = 6 / 1000). Exact: u = x^2 / (2t), p = x / t there, else
    # u = |x| - t/2, p = sign x.
    x, t = np.array([0.1, -0.25, 0.7]), 0.5
    u, p = jp.hopf_lax(
        lambda y: jnp.abs(y[0]), jnp.asarray(x)[:, None], t, half_width=3.0, num_nodes=1001
    )
    inside = np.abs(x) <= t
    np.testing.assert_allclose(u, np.where(inside, x**2 / (2 * t), np.abs(x) - t / 2), atol=3e-3)
    np.testing.assert_allclose(p[:, 0], np.where(inside, x / t, np.sign(x)), atol=1e-2)
