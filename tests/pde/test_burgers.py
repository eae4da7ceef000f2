"""Burgers finite volumes: orders, exact solutions, TV, conservation, Riemann problems, vmap,
gradients, failure paths."""

import functools

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import jaxstat.pde as jp

from ..helpers import check_grad_fd, finite_difference_jvp


TWO_PI = 2 * np.pi


def _slope(ns, errors):
    return -np.polyfit(np.log(ns), np.log(errors), 1)[0]


def _exact_averages(u_faces, grid):
    """Exact cell averages of p = u_x from the potential at the faces."""
    return jnp.diff(u_faces) / grid.spacing[0]


_U0 = lambda y: -jnp.cos(y[0])  # p0 = sin x; module level so jit caches are reused
# Every (cells, time) at which a Cole-Hopf reference with nu = 0.1 is needed: computed together.
_VISCOUS_CASES = ((32, 1.5), (64, 1.5), (128, 1.5), (128, 0.75))


@functools.cache
def _cole_hopf_references():
    # Window: the minimiser moves at most t max|p0| <= 1.5 and the Gaussian needs about
    # 9 sqrt(4 nu t); 3001 nodes resolve peaks of width sqrt(2 nu t / 2) >= 0.2 to roundoff.
    grids = [jp.UniformGrid(0.0, TWO_PI, n) for n, _ in _VISCOUS_CASES]
    faces = jnp.concatenate([g.faces() for g in grids])[:, None]
    times = jnp.concatenate(
        [jnp.full(g.shape[0] + 1, t) for g, (_, t) in zip(grids, _VISCOUS_CASES)]
    )
    u, _ = jp.cole_hopf(_U0, faces, times, 0.1, half_width=6.0, num_nodes=3001)
    out, start = {}, 0
    for g, case in zip(grids, _VISCOUS_CASES):
        out[case] = _exact_averages(u[start : start + g.shape[0] + 1], g)
        start += g.shape[0] + 1
    return out


def _cole_hopf_averages(n, t):
    """Exact cell averages of Burgers from p0 = sin x, nu = 0.1, on n cells at time t."""
    return _cole_hopf_references()[(n, t)]


def _characteristic_averages(n, t):
    """Exact cell averages of p0 = sin x at t < 1 (before the shock), independently of the
    package: along characteristics x = y + t sin y (Newton in numpy, to roundoff),
    u(x, t) = -cos y + t sin(y)^2 / 2, and cell averages (u(x_{i+1/2}) - u(x_{i-1/2})) / h."""
    x = np.linspace(0.0, TWO_PI, n + 1)
    y = x.copy()
    for _ in range(50):
        y -= (y + t * np.sin(y) - x) / (1 + t * np.cos(y))
    u = -np.cos(y) + 0.5 * t * np.sin(y) ** 2
    return np.diff(u) / (TWO_PI / n)


# ---------------------------------------------------------------------------------------------
# Spatial order of the semi-discrete operator (no time stepping): for smooth p the exact
# evolution of a cell average is -(F(x_{i+1/2}) - F(x_{i-1/2})) / h, F = f(p) - nu p_x. The data
# cross the sonic point p = 0, so the fluxes' sonic switches are exercised.

_P = lambda x: jnp.sin(x) + 0.3 * jnp.cos(2 * x) + 0.3
_DP = lambda x: jnp.cos(x) - 0.6 * jnp.sin(2 * x)
_PRIMITIVE = lambda x: -jnp.cos(x) + 0.15 * jnp.sin(2 * x) + 0.3 * x

# (reconstruction, numerical flux, viscous order, nu, accepted band for the fitted order). WENO's
# pre-asymptotic slopes exceed 5 (nonlinear weights converge to the linear ones faster than h^5,
# see test_flux.py); with nu > 0 and the second-order viscous flux the order drops to 2.
# Orders 1, 2, 5 and the viscous flux run by default; the other combinations in the slow suite
# (each grid size is a compilation). Measured slopes (this file's sizes): 0.94, 1.95, 1.93, 1.97,
# 5.14, 5.50, 2.33, 5.43 in the order of the list.
_SLOW = pytest.mark.slow
SPATIAL = [
    (jp.FirstOrder(), jp.Godunov(), 2, 0.0, (0.85, 1.2)),
    pytest.param(jp.MUSCL(jp.MinMod()), jp.Godunov(), 2, 0.0, (1.8, 2.3), marks=_SLOW),
    (jp.MUSCL(jp.VanLeer()), jp.EngquistOsher(), 2, 0.0, (1.8, 2.3)),
    pytest.param(
        jp.MUSCL(jp.MonotonizedCentral()), jp.LocalLaxFriedrichs(), 2, 0.0, (1.8, 2.3), marks=_SLOW
    ),
    (jp.WENO5(), jp.Godunov(), 2, 0.0, (4.6, 6.2)),
    pytest.param(jp.WENO5Z(), jp.EngquistOsher(), 2, 0.0, (4.6, 6.2), marks=_SLOW),
    pytest.param(jp.WENO5Z(), jp.LocalLaxFriedrichs(), 2, 0.1, (1.8, 2.5), marks=_SLOW),
    (jp.WENO5Z(), jp.Godunov(), 4, 0.1, (3.8, 6.2)),
]


@pytest.mark.parametrize(
    "reconstruction,numerical_flux,viscous_order,nu,band",
    SPATIAL,
    ids=lambda v: str(v).split("(")[0] if not isinstance(v, float | int | tuple) else str(v),
)
def test_semidiscrete_order(reconstruction, numerical_flux, viscous_order, nu, band):
    ns = [32, 64, 128, 256]
    errors = []
    for n in ns:
        grid = jp.UniformGrid(0.0, TWO_PI, n)
        x, h = grid.faces(), grid.spacing[0]
        averages = jnp.diff(_PRIMITIVE(x)) / h
        exact = -jnp.diff(0.5 * _P(x) ** 2 - nu * _DP(x)) / h
        eq = jp.Burgers(
            grid,
            numerical_flux=numerical_flux,
            reconstruction=reconstruction,
            viscous_order=viscous_order,
        )
        rate = jax.jit(eq.vector_field)(0.0, averages, nu)
        errors.append(float(jnp.mean(jnp.abs(rate - exact))))
    assert band[0] < _slope(ns, errors) < band[1], errors


@pytest.mark.parametrize("solver,order", [(jp.SSPRK1(), 1), (jp.SSPRK2(), 2), (jp.SSPRK3(), 3)])
def test_ssprk_time_order(solver, order):
    # y' = A y, A a rotation-damping matrix: exact expm; constant steps through diffrax.
    a = jnp.array([[-0.5, 2.0], [-2.0, -0.1]])
    y0 = jnp.array([1.0, 0.5])
    exact = jax.scipy.linalg.expm(2.0 * a) @ y0
    term = dfx.ODETerm(lambda t, y, args: a @ y)
    steps = [100, 200, 400, 800]
    errors = []
    for n in steps:
        # Arrays, not Python floats, so that diffrax compiles once for all step counts.
        sol = dfx.diffeqsolve(term, solver, jnp.array(0.0), jnp.array(2.0), jnp.array(2.0 / n), y0)
        errors.append(float(jnp.max(jnp.abs(sol.ys[-1] - exact))))
    assert abs(_slope(steps, errors) - order) < 0.1, errors


# ---------------------------------------------------------------------------------------------
# Full solves.


SMOOTH_NS = (32, 64, 128)


def test_fully_discrete_order_muscl_ssprk2_default_suite():
    # The cheap default-suite check of a fully discrete order: MUSCL (van Leer) + SSPRK2 on
    # smooth periodic Burgers, p0 = sin x up to t = 0.5 < t* = 1, against the exact cell
    # averages from the characteristics (independent of the package). Fixed dt = h / (2 pi)
    # (CFL 0.16), so space and time errors are both O(h^2). The time loop is the solver's own
    # step in a `fori_loop` (the `solve` driver, whose compilation per grid costs ~10 s, is
    # covered by the slow tests above and below). Measured errors 3.6e-3, 9.6e-4, 2.3e-4:
    # slope 1.98; the band rejects first order.
    ns, t_end = (32, 64, 128), 0.5
    errors = []
    for n in ns:
        grid = jp.UniformGrid(0.0, TWO_PI, n)
        eq = jp.Burgers(grid, reconstruction=jp.MUSCL(jp.VanLeer()))
        term = dfx.ODETerm(lambda t, y, nu, eq=eq: eq.vector_field(t, y, nu))
        steps = n // 2
        dt = t_end / steps

        @jax.jit
        def run(p, term=term, dt=dt, steps=steps):
            step = lambda i, p: jp.SSPRK2().step(term, i * dt, (i + 1) * dt, p, 0.0, None, False)
            return jax.lax.fori_loop(0, steps, lambda i, p: step(i, p)[0], p)

        p = run(grid.cell_averages(jnp.sin))
        errors.append(float(jnp.mean(jnp.abs(p - _characteristic_averages(n, t_end)))))
    assert 1.8 < _slope(ns, errors) < 2.3, errors


@pytest.mark.slow
def test_inviscid_smooth_convergence_weno_rk3():
    # sin x up to t = 0.5 < t* = 1 is smooth; dt ~ h^(5/3) makes the RK3 error O(h^5).
    errors = []
    for n in SMOOTH_NS:
        grid = jp.UniformGrid(0.0, TWO_PI, n)
        h = grid.spacing[0]
        eq = jp.Burgers(grid, reconstruction=jp.WENO5Z())
        sol = jp.solve(
            eq,
            grid.cell_averages(jnp.sin),
            jnp.array([0.0, 0.5]),
            step=jp.FixedStep(0.5 * h ** (5 / 3)),
        )
        errors.append(float(jnp.mean(jnp.abs(sol.ys[-1] - _characteristic_averages(n, 0.5)))))
    # Pre-asymptotic WENO-Z slopes are 5 to 6 (see test_flux.py).
    assert 4.6 < _slope(SMOOTH_NS, errors) < 6.2, errors


@pytest.mark.slow
def test_first_order_convergence():
    errors = []
    for n in SMOOTH_NS:
        grid = jp.UniformGrid(0.0, TWO_PI, n)
        eq = jp.Burgers(grid, reconstruction=jp.FirstOrder())
        sol = jp.solve(eq, grid.cell_averages(jnp.sin), jnp.array([0.0, 0.5]), solver=jp.SSPRK1())
        errors.append(float(jnp.mean(jnp.abs(sol.ys[-1] - _characteristic_averages(n, 0.5)))))
    # Slightly below 1 on these coarse grids: first order is approached from below.
    assert 0.8 < _slope(SMOOTH_NS, errors) < 1.15, errors


def test_viscous_agreement_with_cole_hopf_past_shock_time():
    # nu = 0.1 and t = 1.5 > t* = 1: a viscous shock of width ~ 4 nu. WENO5 with the fourth-order
    # viscous flux, N = 128: measured max errors 3.3e-6 (t = 0.75) and 5.4e-5 (t = 1.5, in the
    # shock layer); the bounds are twice that.
    grid = jp.UniformGrid(0.0, TWO_PI, 128)
    eq = jp.Burgers(grid, viscous_order=4)
    ts = jnp.array([0.0, 0.75, 1.5])
    sol = jp.solve(eq, grid.cell_averages(jnp.sin), ts, 0.1)
    assert jnp.max(jnp.abs(sol.ys[1] - _cole_hopf_averages(128, 0.75))) < 7e-6
    assert jnp.max(jnp.abs(sol.ys[2] - _cole_hopf_averages(128, 1.5))) < 1.1e-4


@pytest.mark.slow
def test_viscous_order_against_cole_hopf():
    # Second-order central viscous flux: observed order 2 on the nonlinear problem past t*.
    ns = [32, 64, 128]
    errors = []
    for n in ns:
        grid = jp.UniformGrid(0.0, TWO_PI, n)
        eq = jp.Burgers(grid, viscous_order=2)
        sol = jp.solve(eq, grid.cell_averages(jnp.sin), jnp.array([0.0, 1.5]), 0.1)
        errors.append(float(jnp.mean(jnp.abs(sol.ys[-1] - _cole_hopf_averages(n, 1.5)))))
    assert 1.8 < _slope(ns, errors) < 2.5, errors


def test_default_viscous_order_follows_the_reconstruction():
    grid = jp.UniformGrid(0.0, TWO_PI, 16)
    for rec, order in ((jp.WENO5(), 4), (jp.WENO5Z(), 4), (jp.MUSCL(), 2), (jp.FirstOrder(), 2)):
        assert jp.Burgers(grid, reconstruction=rec).order_of_viscous_term == order
        assert jp.HamiltonJacobi(grid, reconstruction=rec).order_of_viscous_term == order
        assert jp.Burgers(grid, reconstruction=rec, viscous_order=2).order_of_viscous_term == 2


@pytest.mark.slow
def test_fourth_order_viscous_flux_wins_at_equal_work_with_weno():
    # The measurement behind the default (see `AbstractEquation.order_of_viscous_term`): WENO5,
    # nu = 0.1, t = 1.5 past the shock time, against Cole-Hopf. Order 4 on 64 cells (measured
    # max error 8.4e-4, 1.1e4 cell updates) beats order 2 on 128 cells (1.9e-3, 4.9e4 updates)
    # with less work; the default (None) is order 4 here.
    results = {}
    for n, order in ((64, 4), (128, 2), (64, None)):
        grid = jp.UniformGrid(0.0, TWO_PI, n)
        eq = jp.Burgers(grid, viscous_order=order)
        sol = jp.solve(eq, grid.cell_averages(jnp.sin), jnp.array([0.0, 1.5]), 0.1)
        error = float(jnp.max(jnp.abs(sol.ys[-1] - _cole_hopf_averages(n, 1.5))))
        results[order] = (error, int(sol.stats["cell_updates"]))
    (e4, w4), (e2, w2) = results[4], results[2]
    assert e4 < 0.6 * e2 and w4 < 0.5 * w2, results
    assert results[None] == results[4]


@pytest.mark.slow
@pytest.mark.parametrize(
    "numerical_flux", [jp.Godunov(), jp.EngquistOsher(), jp.LocalLaxFriedrichs()], ids=str
)
@pytest.mark.parametrize(
    "reconstruction", [jp.FirstOrder(), jp.MUSCL(jp.VanLeer()), jp.WENO5(), jp.WENO5Z()], ids=str
)
def test_every_scheme_converges_to_cole_hopf(numerical_flux, reconstruction):
    # Every flux x reconstruction: the error at t = 1.5 (nu = 0.1) decreases at least at the
    # order min(r, 2) (second-order viscous flux) up to a 0.25 pre-asymptotic margin.
    ns = [32, 64, 128]
    errors = []
    for n in ns:
        grid = jp.UniformGrid(0.0, TWO_PI, n)
        eq = jp.Burgers(grid, numerical_flux=numerical_flux, reconstruction=reconstruction)
        sol = jp.solve(eq, grid.cell_averages(jnp.sin), jnp.array([0.0, 1.5]), 0.1)
        errors.append(float(jnp.mean(jnp.abs(sol.ys[-1] - _cole_hopf_averages(n, 1.5)))))
    assert _slope(ns, errors) > min(reconstruction.order, 2) - 0.25, errors


@pytest.mark.parametrize(
    "reconstruction,solver,tvd",
    [
        # The first-order case runs in the default suite inside the vmap test below.
        pytest.param(jp.FirstOrder(), jp.SSPRK1(), True, marks=pytest.mark.slow),
        pytest.param(jp.MUSCL(jp.MinMod()), jp.SSPRK2(), True, marks=pytest.mark.slow),
        pytest.param(jp.WENO5(), jp.SSPRK3(), False, marks=pytest.mark.slow),
    ],
    ids=["first-order", "muscl", "weno5"],
)
def test_total_variation_and_conservation(reconstruction, solver, tvd):
    # p0 = sin x + 1/2: a moving shock forms at t = 1. TVD schemes (CFL 0.4 <= 1/2): total
    # variation never increases. WENO5 is only essentially non-oscillatory: TV may grow by
    # O(h^r)-sized amounts; measured < 1e-3 relative here, we allow 1e-2.
    grid = jp.UniformGrid(0.0, TWO_PI, 200)
    eq = jp.Burgers(grid, reconstruction=reconstruction)
    p0 = grid.cell_averages(lambda x: jnp.sin(x) + 0.5)
    ts = jnp.linspace(0.0, 1.5, 16)
    sol = jp.solve(eq, p0, ts, 0.0, solver=solver)
    tv = jnp.sum(jnp.abs(sol.ys - jnp.roll(sol.ys, 1, axis=1)), axis=1)
    if tvd:
        assert jnp.all(jnp.diff(tv) <= 1e-12)
    else:
        assert jnp.all(tv <= tv[0] * (1 + 1e-2))
    # Conservation: sum p h is constant to rounding (exactly telescoping fluxes).
    mass = grid.integrate(sol.ys)
    np.testing.assert_allclose(mass, mass[0], atol=1e-12)
    # Maximum principle (entropy solutions of scalar laws): no new extrema for TVD schemes.
    if tvd:
        assert jnp.all(sol.ys <= jnp.max(p0) + 1e-12) and jnp.all(sol.ys >= jnp.min(p0) - 1e-12)


@pytest.mark.parametrize(
    "numerical_flux",
    [
        jp.Godunov(),
        # Engquist-Osher equals Godunov on both problems (no transonic shock): slow suite only.
        pytest.param(jp.EngquistOsher(), marks=pytest.mark.slow),
        pytest.param(jp.LocalLaxFriedrichs(), marks=pytest.mark.slow),
    ],
    ids=str,
)
def test_riemann_problems_entropy_solution(numerical_flux):
    # Shock (1 | 0) with speed 1/2, and the transonic rarefaction (-1 | 1) whose entropy solution
    # is the fan p = x / t. A non-entropic scheme keeps the stationary jump: L1 error 0.5 at t = .5.
    # Outflow boundaries, nu = 0, first order at N = 200 (the jump sits on the face x = 0).
    grid = jp.UniformGrid(-1.0, 1.0, 200)
    eq = jp.Burgers(
        grid, numerical_flux=numerical_flux, reconstruction=jp.FirstOrder(), boundary=jp.Outflow()
    )
    cases = jnp.array([[1.0, 0.0], [-1.0, 1.0]])
    p0 = jax.vmap(lambda c: jnp.where(grid.centres() < 0, c[0], c[1]))(cases)
    t = 0.5
    sol = jax.vmap(lambda p: jp.solve(eq, p, jnp.array([0.0, t]), solver=jp.SSPRK1()))(p0)
    # Measured L1 errors: shock 0.005 (Godunov, EO) / 0.007 (LLF), an O(h) smear over a few
    # cells; rarefaction 0.031 / 0.029, converging like h^0.7 (0.051, 0.031, 0.019 at N = 100,
    # 200, 400): the fan's corners are smeared over O(sqrt(h)).
    for k, bound in enumerate((0.012, 0.04)):
        u, _ = jp.riemann(cases[k, 0], cases[k, 1], grid.faces(), t)
        exact = _exact_averages(u, grid)
        assert grid.integrate(jnp.abs(sol.ys[k, -1] - exact)) < bound


@pytest.mark.slow
def test_riemann_weno_shock_position():
    # WENO5 + Godunov: the shock (2 | 0) moves at the Rankine-Hugoniot speed 1 and stays sharp.
    grid = jp.UniformGrid(-1.0, 1.0, 200)
    eq = jp.Burgers(grid, boundary=jp.Outflow())
    p0 = jnp.where(grid.centres() < -0.5, 2.0, 0.0)
    sol = jp.solve(eq, p0, jnp.array([0.0, 0.8]))
    u, _ = jp.riemann(2.0, 0.0, grid.faces() + 0.5, 0.8)
    exact = _exact_averages(u, grid)
    assert grid.integrate(jnp.abs(sol.ys[-1] - exact)) < 3 * grid.spacing[0]
    # The shock sits in the cells around x = -0.5 + 0.8 = 0.3 (between 1.9 and 0.1 within 3 cells).
    x = grid.centres()
    assert jnp.all(sol.ys[-1][x < 0.3 - 3 * grid.spacing[0]] > 1.9)
    assert jnp.all(sol.ys[-1][x > 0.3 + 3 * grid.spacing[0]] < 0.1)


def test_dirichlet_steady_viscous_shock():
    # p = -tanh(x / (2 nu)) is a steady solution; Dirichlet data from it at x = +-1. The error
    # after t = 1 is second order (viscous flux and reflection ghost cells): measured 5.0e-3 at
    # N = 32 and 1.25e-3 at N = 64 (ratio 4.0, checked once; one grid here for speed).
    nu = 0.1
    grid = jp.UniformGrid(-1.0, 1.0, 64)
    bc = jp.Dirichlet(jnp.tanh(1 / (2 * nu)), -jnp.tanh(1 / (2 * nu)))
    eq = jp.Burgers(grid, boundary=bc)
    primitive = -2 * nu * jnp.log(jnp.cosh(grid.faces() / (2 * nu)))
    p = _exact_averages(primitive, grid)
    sol = jp.solve(eq, p, jnp.array([0.0, 1.0]), nu)
    assert jnp.max(jnp.abs(sol.ys[-1] - p)) < 2.5e-3


# ---------------------------------------------------------------------------------------------
# Transformations.


def test_vmap_over_initial_conditions_and_nu_matches_loop(getkey):
    # p0 = a (sin x + 1/2), a moving shock from t = 1/a, first order + SSPRK1 (CFL 0.4), a batch
    # of amplitudes and viscosities (nu = 0 included) solved with vmap and in a loop.
    grid = jp.UniformGrid(0.0, TWO_PI, 200)
    eq = jp.Burgers(grid, reconstruction=jp.FirstOrder())
    ts = jnp.linspace(0.0, 1.5, 16)
    amplitude = 1 + 0.2 * jr.uniform(getkey(), (3,))
    nus = jnp.array([0.0, 0.05, 0.2])
    p0 = amplitude[:, None] * grid.cell_averages(lambda x: jnp.sin(x) + 0.5)[None, :]
    run = eqx.filter_jit(lambda p, nu: jp.solve(eq, p, ts, nu, solver=jp.SSPRK1()).ys)
    batched = jax.vmap(run)(p0, nus)
    looped = jnp.stack([run(p0[i], nus[i]) for i in range(3)])
    # Members take different steps (their own CFL), so the batch equals the loop to rounding.
    np.testing.assert_allclose(batched, looped, rtol=1e-12, atol=1e-12)
    # The monotone scheme is TVD at CFL 0.4 <= 1/2 (viscous part included in the CFL): the
    # total variation never increases; no new extrema (maximum principle); the total
    # sum p h is constant to rounding (exactly telescoping fluxes).
    tv = jnp.sum(jnp.abs(batched - jnp.roll(batched, 1, axis=-1)), axis=-1)
    assert jnp.all(jnp.diff(tv, axis=1) <= 1e-12)
    assert jnp.all(batched <= jnp.max(p0, axis=1)[:, None, None] + 1e-12)
    assert jnp.all(batched >= jnp.min(p0, axis=1)[:, None, None] - 1e-12)
    mass = grid.integrate(batched)
    np.testing.assert_allclose(mass, mass[:, :1] * jnp.ones_like(mass), atol=1e-12)
    # CFLStep adapts dt to the data: inf data cannot be stepped and are reported as non-finite
    # (same compiled function).
    with pytest.raises(Exception, match="non-finite"):
        run(p0[0].at[5].set(jnp.inf), nus[0])
    with pytest.raises(Exception, match="non-negative"):
        run(p0[0], -nus[1])


def test_float32_runs_in_float32():
    # The same viscous problem as above in float32: the state stays float32 and the error against
    # the float64 Cole-Hopf reference is float32 roundoff accumulated over ~400 steps (measured
    # 3e-6), far above float64's but below 1e-4.
    grid = jp.UniformGrid(0.0, TWO_PI, 128)
    p0 = grid.cell_averages(jnp.sin).astype(jnp.float32)
    ts = jnp.array([0.0, 1.5], jnp.float32)
    sol = jp.solve(jp.Burgers(grid, viscous_order=4), p0, ts, jnp.float32(0.1))
    assert sol.ys.dtype == jnp.float32
    assert jnp.max(jnp.abs(sol.ys[-1] - _cole_hopf_averages(128, 1.5))) < 1e-4


# ---------------------------------------------------------------------------------------------
# Gradients (float64, central differences). FixedStep makes the discrete map smooth.


@pytest.mark.parametrize(
    "numerical_flux,reconstruction",
    [
        (jp.EngquistOsher(), jp.WENO5()),
        pytest.param(jp.Godunov(), jp.FirstOrder(), marks=pytest.mark.slow),
        pytest.param(jp.LocalLaxFriedrichs(), jp.MUSCL(jp.VanLeer()), marks=pytest.mark.slow),
    ],
    ids=["eo-weno5", "godunov-first", "llf-muscl"],
)
def test_gradient_wrt_initial_condition_and_nu(numerical_flux, reconstruction, getkey):
    grid = jp.UniformGrid(0.0, TWO_PI, 32)
    eq = jp.Burgers(grid, numerical_flux=numerical_flux, reconstruction=reconstruction)
    weights = jr.normal(getkey(), (32,))
    ts = jnp.array([0.0, 0.6])

    def loss(p0, nu):
        sol = jp.solve(eq, p0, ts, nu, step=jp.FixedStep(0.02))
        return jnp.sum(weights * sol.ys[-1] ** 2)

    # Not symmetric: `sin x + 0.3` is symmetric about pi / 2, so its cell averages sit exactly on
    # the kinks of the limiter and of LLF's `max(|f'(a)|, |f'(b)|)` (equal slopes at the extrema),
    # where the one-sided derivatives differ (1.968 / 2.055 along the test's direction, LLF +
    # van Leer) and no derivative exists to compare with.
    p0 = grid.cell_averages(lambda x: jnp.sin(x) + 0.3 + 0.1 * jnp.sin(2 * x + 1.0))
    nu = jnp.array(0.05)
    # rtol: WENO5 weights with eps = 1e-6 ~ beta make the map's third derivatives large: the
    # finite-difference truncation error at the helper's step (6e-6) was measured up to 2e-6
    # relative and shrinks like step^2 (checked down to step 1.5e-6, error 6e-10).
    check_grad_fd(loss, p0, nu, key=getkey(), rtol=1e-5)


@pytest.mark.slow
def test_forward_mode_matches_reverse_mode(getkey):
    grid = jp.UniformGrid(0.0, TWO_PI, 32)
    eq = jp.Burgers(grid, numerical_flux=jp.EngquistOsher())
    ts = jnp.array([0.0, 0.6])
    weights, tangent = jr.normal(getkey(), (2, 32))
    p0 = grid.cell_averages(jnp.sin)

    def final(p, adjoint):
        return jp.solve(eq, p, ts, 0.05, step=jp.FixedStep(0.02), adjoint=adjoint).ys[-1]

    fwd = jax.jvp(lambda p: final(p, dfx.ForwardMode()), (p0,), (tangent,))[1]
    rev = jax.grad(lambda p: jnp.vdot(weights, final(p, dfx.RecursiveCheckpointAdjoint())))(p0)
    np.testing.assert_allclose(jnp.vdot(weights, fwd), jnp.vdot(rev, tangent), rtol=1e-10)


@pytest.mark.slow
def test_gradient_with_cfl_steps_matches_finite_differences_to_step_error(getkey):
    # With CFLStep the step sizes depend on the data but are not differentiated; the finite
    # difference sees the O(dt^3) change of the truncation error as well, so agreement is to
    # ~1e-4 relative instead of 1e-7.
    grid = jp.UniformGrid(0.0, TWO_PI, 32)
    eq = jp.Burgers(grid, numerical_flux=jp.EngquistOsher())
    direction = jr.normal(getkey(), (32,))
    loss = lambda p0: jnp.sum(jp.solve(eq, p0, jnp.array([0.0, 0.6]), 0.05).ys[-1] ** 3)
    p0 = grid.cell_averages(jnp.sin)
    ad = jnp.vdot(jax.grad(loss)(p0), direction)
    fd = finite_difference_jvp(loss, (p0,), (direction,))
    np.testing.assert_allclose(ad, fd, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# Failure paths.


def test_trace_time_errors():
    grid = jp.UniformGrid(0.0, TWO_PI, 16)
    eq = jp.Burgers(grid)
    ts = jnp.array([0.0, 1.0])
    with pytest.raises(ValueError, match="shape"):
        jp.solve(eq, jnp.zeros(17), ts)
    with pytest.raises(TypeError, match="floating"):
        jp.solve(eq, jnp.zeros(16, int), ts)
    with pytest.raises(ValueError, match="ts"):
        jp.solve(eq, jnp.zeros(16), jnp.array([0.0]))
    with pytest.raises(ValueError, match="nu"):
        jp.solve(eq, jnp.zeros(16), ts, jnp.zeros(2))
    with pytest.raises(TypeError, match="step"):
        jp.solve(eq, jnp.zeros(16), ts, step=0.1)
    with pytest.raises(ValueError, match="cfl"):
        jp.CFLStep(1.5)
    with pytest.raises(TypeError, match="reconstruction"):
        jp.Burgers(grid, reconstruction="weno")
    with pytest.raises(TypeError, match="numerical_flux"):
        jp.Burgers(grid, numerical_flux="godunov")
    with pytest.raises(ValueError, match="viscous_order"):
        jp.Burgers(grid, viscous_order=3)
    with pytest.raises(ValueError, match="one boundary"):
        jp.Burgers(grid, boundary=(jp.Periodic(), jp.Periodic()))
    grid2 = jp.UniformGrid((0.0, 0.0), (1.0, 1.0), (8, 8))
    with pytest.raises(TypeError, match="LocalLaxFriedrichs"):
        jp.Burgers(grid2, numerical_flux=jp.Godunov())


def test_value_errors_and_result_codes():
    grid = jp.UniformGrid(0.0, TWO_PI, 32)
    eq = jp.Burgers(grid, reconstruction=jp.FirstOrder())
    p0 = grid.cell_averages(jnp.sin)
    ts = jnp.array([0.0, 0.5])
    solve_ = eqx.filter_jit(
        lambda p, t, nu, dt: jp.solve(
            eq, p, t, nu, step=jp.FixedStep(dt), max_steps=64, throw=False
        )
    )
    # Arrays, not Python floats (which filter_jit would treat as static): one compilation.
    run = lambda p, nu, dt: solve_(p, ts, jnp.asarray(nu), jnp.asarray(dt))
    h = grid.spacing[0]
    ok = run(p0, 0.0, 0.5 * h)
    assert ok.result == jp.RESULTS.successful and ok.stats["max_cfl"] <= 0.5 + 1e-12
    # CFL violated: dt = 2 h with max|p| = 1.
    bad = run(p0, 0.0, 2 * h)
    assert bad.result == jp.RESULTS.cfl_violated
    assert bad.stats["max_cfl"] > 1.0
    # The viscous limit counts too: nu dt / h^2 large although the hyperbolic CFL is small.
    assert run(p0, 1.0, 0.5 * h).result == jp.RESULTS.cfl_violated
    # Non-finite initial data.
    assert run(p0.at[3].set(jnp.nan), 0.0, 0.5 * h).result == jp.RESULTS.nonfinite
    assert run(p0.at[3].set(jnp.inf), 0.0, 0.5 * h).result == jp.RESULTS.nonfinite
    # Too few steps.
    assert run(p0, 0.0, 0.001 * h).result == jp.RESULTS.max_steps_reached
    # Invalid values are result codes too (raised when throw=True, see the vmap test).
    assert run(p0, -0.1, 0.5 * h).result == jp.RESULTS.invalid_nu
    assert run(p0, jnp.nan, 0.5 * h).result == jp.RESULTS.invalid_nu
    backwards = solve_(p0, jnp.array([0.5, 0.2]), jnp.asarray(0.0), jnp.asarray(0.5 * h))
    assert backwards.result == jp.RESULTS.invalid_ts
    # Readable messages.
    assert "CFL" in jp.RESULTS[bad.result] and "non-negative" in jp.RESULTS[jp.RESULTS.invalid_nu]


def test_two_save_times_continue_the_solve_and_compile_without_host_callback():
    """Two save times are saved as `t0` and `t1`, without diffrax's checks of `SaveAt(ts)`
    (host callbacks, which keep JAX's persistent compilation cache from storing the program):
    the states of a longer `ts` through the same times, the same steps, and a solve from the end
    of another continues it."""
    grid = jp.UniformGrid(0.0, TWO_PI, 64)
    eq = jp.Burgers(grid)
    p0 = grid.cell_averages(lambda x: jnp.sin(x) + 0.5)
    whole = jp.solve(eq, p0, jnp.array([0.0, 0.8, 1.6]))
    early = jp.solve(eq, p0, jnp.array([0.0, 0.8]))
    late = jp.solve(eq, early.ys[-1], jnp.array([0.8, 1.6]))
    # (`SaveAt(ts)` evaluates the step's interpolant at its end, `t0`/`t1` save the step itself:
    # equal on this CPU; up to 3 units in the last place of |p| <= 1.5 in float32 allowed.)
    np.testing.assert_allclose(early.ys, whole.ys[:2], rtol=0, atol=4e-7)
    np.testing.assert_allclose(late.ys, whole.ys[1:], rtol=0, atol=4e-7)
    assert int(early.stats["num_steps"]) + int(late.stats["num_steps"]) == int(
        whole.stats["num_steps"]
    )
    # A save time repeated: nothing to integrate.
    same = jp.solve(eq, p0, jnp.array([0.3, 0.3]))
    np.testing.assert_array_equal(same.ys, jnp.stack([p0, p0]))

    def program(ts):
        return jax.jit(lambda p: jp.solve(eq, p, ts, throw=False).ys).lower(p0).as_text()

    assert "callback" not in program(jnp.array([0.0, 0.8]))
    assert "callback" in program(jnp.array([0.0, 0.8, 1.6]))


# Bad values: refused at construction when concrete (ValueError / TypeError in our words), and
# reported in the result code (raised with throw=True) when traced. Each used to slip through:
# FixedStep(0) and FixedStep(-0.01) were reported as CFL violations, NaN in `ts` as success.
# One compiled solve per `throw`, shared by every case (dt and ts traced).
_BAD_GRID = jp.UniformGrid(0.0, TWO_PI, 16)
_BAD_EQ = jp.Burgers(_BAD_GRID, reconstruction=jp.FirstOrder())


@functools.cache
def _bad_value_solve(throw):
    def run(dt, ts):
        p0 = _BAD_GRID.cell_averages(jnp.sin)
        return jp.solve(_BAD_EQ, p0, ts, step=jp.FixedStep(dt), max_steps=8, throw=throw)

    return jax.jit(run)


@pytest.mark.parametrize("dt", [0.0, -0.01, np.nan, np.inf], ids=["zero", "negative", "nan", "inf"])
def test_fixed_step_must_be_positive(dt):
    with pytest.raises(ValueError, match="positive"):
        jp.FixedStep(dt)
    # Traced: the result code says so (not "CFL"), and throw=True raises the same words.
    ts = jnp.array([0.0, 0.1])
    sol = _bad_value_solve(False)(jnp.asarray(dt), ts)
    assert sol.result == jp.RESULTS.invalid_step
    assert "positive" in jp.RESULTS[jp.RESULTS.invalid_step]
    with pytest.raises(Exception, match="must be positive and finite"):
        jax.block_until_ready(_bad_value_solve(True)(jnp.asarray(dt), ts).ys)


@pytest.mark.parametrize(
    "ts", [[0.0, np.nan], [np.nan, 1.0], [0.0, np.inf]], ids=["nan-end", "nan-start", "inf"]
)
def test_non_finite_save_times_are_reported(ts):
    dt = jnp.asarray(0.01)
    sol = _bad_value_solve(False)(dt, jnp.asarray(ts))
    assert sol.result == jp.RESULTS.invalid_ts
    with pytest.raises(Exception, match="finite and nondecreasing"):
        jax.block_until_ready(_bad_value_solve(True)(dt, jnp.asarray(ts)).ys)


@pytest.mark.parametrize(
    "args",
    [(0.0, np.nan, 64), (np.nan, 1.0, 64), (0.0, np.inf, 64), ((0.0, 0.0), (1.0, np.nan), (4, 4))],
    ids=["nan-upper", "nan-lower", "inf-upper", "2d-nan"],
)
def test_grid_refuses_non_finite_bounds(args):
    with pytest.raises(ValueError, match="finite"):
        jp.UniformGrid(*args)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_complex_viscosity_is_a_type_error(jit):
    grid = jp.UniformGrid(0.0, TWO_PI, 16)
    eq = jp.Burgers(grid)
    p0 = grid.cell_averages(jnp.sin)
    fn = lambda nu: jp.solve(eq, p0, jnp.array([0.0, 0.1]), nu)
    if jit:
        fn = jax.jit(fn)
    with pytest.raises(TypeError, match="real"):
        fn(jnp.asarray(0.1 + 0.0j))
