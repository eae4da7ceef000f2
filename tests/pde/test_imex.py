"""Implicit-explicit (IMEX) SSP solvers: the implicit viscous solves against dense linear algebra,
time order, Cole-Hopf past the shock time, the automatic explicit/implicit choice."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxstat.pde as jp
from jaxstat.pde._stepping import FiniteVolumeTerm

from .test_burgers import _cole_hopf_averages, _exact_averages, _slope
from .test_hamilton_jacobi import _cole_hopf_2d, _P2, _U2


TWO_PI = 2 * np.pi


@eqx.filter_jit
def _dense_operator(equation, rhs):
    flat = rhs.reshape(-1)
    offset = equation.diffusion(jnp.zeros_like(rhs)).reshape(-1)
    diffusion = lambda v: equation.diffusion(v.reshape(rhs.shape)).reshape(-1)
    return jax.jacfwd(diffusion)(flat), offset


def _dense_solve(equation, rhs, a):
    """`(I - a D) z = rhs` with `D z = T z + D 0` written out densely (T = jacobian of D)."""
    matrix, offset = _dense_operator(equation, rhs)
    system = np.eye(rhs.size) - a * np.asarray(matrix)
    return np.linalg.solve(system, np.asarray(rhs.reshape(-1) + a * offset)).reshape(rhs.shape)


GRID_1D = jp.UniformGrid(0.0, 2.0, 24)
GRID_2D = jp.UniformGrid((0.0, 0.0), (1.0, 2.0), (8, 12))
EQUATIONS = [
    # Fourier: periodic, both viscous orders, 1-D and 2-D, Burgers (cell averages, face
    # gradients) and Hamilton-Jacobi (point values, central Laplacian).
    jp.Burgers(GRID_1D, viscous_order=2),
    jp.Burgers(GRID_1D, viscous_order=4),
    jp.Burgers(GRID_2D, viscous_order=4),
    jp.HamiltonJacobi(GRID_2D, viscous_order=2),
    # Tridiagonal: 1-D, second-order stencil, affine boundaries.
    jp.Burgers(GRID_1D, viscous_order=2, boundary=jp.Dirichlet(0.7, -1.3)),
    jp.Burgers(GRID_1D, viscous_order=2, boundary=jp.Neumann(0.2, 0.5)),
    jp.HamiltonJacobi(GRID_1D, viscous_order=2, boundary=jp.Outflow(order=1)),
]


@pytest.mark.parametrize("equation", EQUATIONS, ids=lambda e: type(e).__name__)
def test_implicit_viscous_solve_matches_dense_solve(equation, getkey):
    # The Fourier solve uses the exact eigenvalues of the stencil and the tridiagonal solve the
    # probed matrix: both equal a dense solve of the same affine operator to rounding.
    rhs = jax.random.normal(getkey(), equation.state_shape)
    solve = eqx.filter_jit(lambda eq, r, a: eq.solve_diffusion(r, a))
    for a in (1e-3, 0.05, 3.0):  # up to a / h^2 ~ 400: far beyond the explicit limit
        z = solve(equation, rhs, jnp.asarray(a))
        np.testing.assert_allclose(z, _dense_solve(equation, rhs, a), rtol=1e-11, atol=1e-11)


def test_implicit_solve_refuses_what_it_cannot_solve():
    eq = jp.Burgers(GRID_2D, boundary=jp.Neumann())
    with pytest.raises(ValueError, match="periodic boundaries on every axis"):
        eq.solve_diffusion(jnp.zeros(eq.state_shape), 0.1)
    eq = jp.Burgers(GRID_1D, viscous_order=4, boundary=jp.Neumann())
    with pytest.raises(ValueError, match="viscous_order=2"):
        eq.solve_diffusion(jnp.zeros(eq.state_shape), 0.1)


def _viscous_run(solver, n, dts, nu=0.1, t=0.5):
    grid = jp.UniformGrid(0.0, TWO_PI, n)
    eq = jp.Burgers(grid, viscous_order=4)
    ts = jnp.array([0.0, t])
    run = jax.jit(
        lambda dt: jp.solve(
            eq, grid.cell_averages(jnp.sin), ts, nu, solver=solver, step=jp.FixedStep(dt)
        )
    )
    return [run(jnp.asarray(dt)) for dt in dts]


@pytest.mark.parametrize(
    "solver,band",
    [
        pytest.param(jp.IMEXSSP2(), (1.85, 2.3), marks=pytest.mark.slow),
        (jp.IMEXSSP3(), (2.8, 3.4)),
    ],
    ids=str,
)
def test_imex_time_order_in_the_stiff_regime(solver, band):
    # Viscous Burgers, nu = 0.1, 64 cells, p0 = sin x to t = 0.5: nu c / h^2 = 37 is 3.6x the
    # hyperbolic rate, so every step is implicit; the steps (0.05 .. 0.00625) are up to 1.8x
    # beyond the explicit stability limit 1 / 47. The time error is measured against the same
    # semi-discretisation stepped with dt = 1e-3 (its own error below 1e-10). Measured slopes:
    # see the assertion's band (second order for IMEXSSP2, third for IMEXSSP3).
    dts = [0.05, 0.025, 0.0125, 0.00625]
    sols = _viscous_run(solver, 64, dts + [1e-3])
    reference = sols[-1].ys[-1]
    errors = [float(jnp.max(jnp.abs(s.ys[-1] - reference))) for s in sols[:-1]]
    assert all(float(s.stats["max_cfl"]) < 1 for s in sols)
    assert band[0] < _slope(1 / np.array(dts), errors) < band[1], errors


def test_imex_agrees_with_cole_hopf_past_the_shock_time():
    # nu = 0.1, 128 cells, WENO5 with the fourth-order viscous flux, to t = 1.5 > t* = 1 (a
    # viscous shock): IMEXSSP3 steps at twice the hyperbolic CFL step of CFLStep(0.4)
    # (`step_scale = 2`; viscosity is 7x the hyperbolic rate, so an explicit step is 16x
    # shorter). Measured max error against Cole-Hopf cell averages: 1.02e-5 at t = 0.75 (the
    # time error shows before the shock: 3.3e-6 with CFL 0.05 steps), 5.7e-5 at t = 1.5
    # (spatial: 5.4e-5 with CFL 0.05 steps); the bounds are twice that.
    grid = jp.UniformGrid(0.0, TWO_PI, 128)
    eq = jp.Burgers(grid, viscous_order=4)
    ts = jnp.array([0.0, 0.75, 1.5])
    sol = jp.solve(eq, grid.cell_averages(jnp.sin), ts, 0.1, solver=jp.IMEXSSP3())
    assert jnp.max(jnp.abs(sol.ys[1] - _cole_hopf_averages(128, 0.75))) < 2e-5
    assert jnp.max(jnp.abs(sol.ys[2] - _cole_hopf_averages(128, 1.5))) < 1.2e-4
    # Steps at CFL 0.8 of the hyperbolic rate max|p| / h <= 20.4 (max|p| decays): 36 measured;
    # the reported CFL number is relative to the scaled rate, at most CFLStep's 0.4.
    steps = int(sol.stats["num_steps"])
    assert 30 <= steps < 45
    assert float(sol.stats["max_cfl"]) < 0.4 + 1e-12
    # `step_scale = 1`: CFL 0.4 of the hyperbolic rate, twice the steps (71 measured) and the
    # smaller time error before the shock (4.3e-6 measured at t = 0.75).
    unscaled = jp.solve(
        eq, grid.cell_averages(jnp.sin), ts, 0.1, solver=jp.IMEXSSP3(step_scale=1.0)
    )
    assert 1.8 * steps < int(unscaled.stats["num_steps"]) < 2.2 * steps
    assert jnp.max(jnp.abs(unscaled.ys[1] - _cole_hopf_averages(128, 0.75))) < 6e-6


def test_step_scale_is_validated():
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="step_scale"):
            jp.IMEXSSP3(step_scale=bad)


@pytest.mark.slow
def test_step_scale_and_default_threshold():
    # Explicit steps ignore the scale: with nu = 0 the solver is SSPRK3 whatever `step_scale`.
    # nu = 0.05 puts the viscous rate at 1.0x the hyperbolic one (64 cells, sin x): implicit
    # under IMEXSSP3's default threshold 0.5, the same steps as with threshold 0.
    grid = jp.UniformGrid(0.0, TWO_PI, 64)
    eq = jp.Burgers(grid, reconstruction=jp.FirstOrder())
    p0, ts = grid.cell_averages(jnp.sin), jnp.array([0.0, 0.5])
    inviscid = [
        jp.solve(eq, p0, ts, solver=jp.IMEXSSP3(step_scale=s)).stats["num_steps"]
        for s in (1.0, 4.0)
    ]
    assert int(inviscid[0]) == int(inviscid[1])
    default = jp.solve(eq, p0, ts, 0.05, solver=jp.IMEXSSP3())
    always = jp.solve(eq, p0, ts, 0.05, solver=jp.IMEXSSP3(threshold=0.0))
    explicit = jp.solve(eq, p0, ts, 0.05, solver=jp.SSPRK3())
    assert int(default.stats["num_steps"]) == int(always.stats["num_steps"])
    assert 3 * int(default.stats["num_steps"]) < int(explicit.stats["num_steps"])


@pytest.mark.slow
def test_imex_spatial_order_against_cole_hopf():
    # IMEXSSP3 (CFL steps) with the second-order viscous flux past the shock time: the order of
    # the spatial scheme, 2, as for the explicit solve (test_burgers.py).
    ns = [32, 64, 128]
    errors = []
    for n in ns:
        grid = jp.UniformGrid(0.0, TWO_PI, n)
        eq = jp.Burgers(grid, viscous_order=2)
        sol = jp.solve(
            eq, grid.cell_averages(jnp.sin), jnp.array([0.0, 1.5]), 0.1, solver=jp.IMEXSSP3()
        )
        errors.append(float(jnp.mean(jnp.abs(sol.ys[-1] - _cole_hopf_averages(n, 1.5)))))
    assert 1.8 < _slope(ns, errors) < 2.5, errors


def test_automatic_choice_inviscid_is_ssprk3():
    # With nu = 0 viscosity never dominates: IMEXSSP3 takes the explicit tableau, which is
    # SSPRK3 in Butcher form: the same steps and the same result to rounding.
    grid = jp.UniformGrid(0.0, TWO_PI, 64)
    eq = jp.Burgers(grid, reconstruction=jp.FirstOrder())
    p0 = grid.cell_averages(lambda x: jnp.sin(x) + 0.5)
    ts = jnp.array([0.0, 1.5])
    imex = jp.solve(eq, p0, ts, solver=jp.IMEXSSP3())
    explicit = jp.solve(eq, p0, ts, solver=jp.SSPRK3())
    assert int(imex.stats["num_steps"]) == int(explicit.stats["num_steps"])
    np.testing.assert_allclose(imex.ys, explicit.ys, rtol=0, atol=1e-13)


def test_implicit_steady_viscous_shock_with_dirichlet_boundaries():
    # The steady viscous shock p = -tanh(x / (2 nu)) between Dirichlet values on [-1, 1],
    # nu = 0.05, 64 cells, MUSCL with the second-order viscous flux (nu c / h^2 = 102 against
    # max|p| / h = 32): IMEXSSP2 with the tridiagonal solve takes 80 steps where SSPRK2 takes
    # 336. Both hold the profile up to the scheme's spatial error (measured drift at t = 1:
    # 1.20e-2 implicit, 1.16e-2 explicit) and differ by the time error, 4.8e-4 (bound 1e-3).
    nu = 0.05
    grid = jp.UniformGrid(-1.0, 1.0, 64)
    bc = jp.Dirichlet(jnp.tanh(1 / (2 * nu)), -jnp.tanh(1 / (2 * nu)))
    eq = jp.Burgers(grid, boundary=bc, reconstruction=jp.MUSCL(), viscous_order=2)
    p = _exact_averages(-2 * nu * jnp.log(jnp.cosh(grid.faces() / (2 * nu))), grid)
    ts = jnp.array([0.0, 1.0])
    sol = jp.solve(eq, p, ts, nu, solver=jp.IMEXSSP2())
    explicit = jp.solve(eq, p, ts, nu, solver=jp.SSPRK2())
    assert jnp.max(jnp.abs(sol.ys[-1] - p)) < 1.3e-2
    assert jnp.max(jnp.abs(sol.ys[-1] - explicit.ys[-1])) < 1e-3
    assert 4 * int(sol.stats["num_steps"]) < int(explicit.stats["num_steps"])


def test_threshold_decides_implicit_steps():
    # nu = 0.1, 64 cells, first order: the viscous rate nu c / h^2 = 20.8 is 2.0x the hyperbolic
    # rate max|p| / h = 10.2 at t = 0. With threshold 5 every step is explicit (the SSPRK3 steps,
    # to rounding); with threshold 0 every step is implicit, at the hyperbolic CFL limit (3x
    # longer steps).
    grid = jp.UniformGrid(0.0, TWO_PI, 64)
    eq = jp.Burgers(grid, reconstruction=jp.FirstOrder())
    p0, ts = grid.cell_averages(jnp.sin), jnp.array([0.0, 0.5])
    explicit = jp.solve(eq, p0, ts, 0.1, solver=jp.SSPRK3())
    never = jp.solve(eq, p0, ts, 0.1, solver=jp.IMEXSSP3(threshold=5.0))
    always = jp.solve(eq, p0, ts, 0.1, solver=jp.IMEXSSP3(threshold=0.0))
    assert int(never.stats["num_steps"]) == int(explicit.stats["num_steps"])
    np.testing.assert_allclose(never.ys, explicit.ys, rtol=0, atol=1e-13)
    assert 2.5 * int(always.stats["num_steps"]) < int(explicit.stats["num_steps"])
    # Both solve the same semi-discretisation: they differ by time errors only.
    assert jnp.max(jnp.abs(always.ys[-1] - explicit.ys[-1])) < 1e-4
    with pytest.raises(ValueError, match="threshold"):
        jp.IMEXSSP2(threshold=-1.0)


@pytest.mark.slow
def test_2d_imex_against_cole_hopf():
    # The 2-D check of test_hamilton_jacobi.py (nu = 0.1, t = 0.5, 32 x 32, non-separable data)
    # with every step implicit (Fourier solves in 2-D): the same bounds, 2e-3 for HJ at the
    # nodes and 1e-2 for Burgers cell averages against point values.
    n = 32
    grid = jp.UniformGrid((0.0, 0.0), (TWO_PI, TWO_PI), (n, n))
    u_exact, p_exact = _cole_hopf_2d(n)
    u0 = jax.vmap(jax.vmap(_U2))(jnp.moveaxis(grid.mesh(), 0, -1))
    solver, ts = jp.IMEXSSP3(threshold=0.0), jnp.array([0.0, 0.5])
    sol = jp.solve(jp.HamiltonJacobi(grid, viscous_order=2), u0, ts, 0.1, solver=solver)
    assert jnp.max(jnp.abs(sol.ys[-1] - u_exact)) < 2e-3
    burgers = jp.Burgers(grid, viscous_order=2)
    sol = jp.solve(burgers, grid.cell_averages(_P2), ts, 0.1, solver=solver)
    assert jnp.max(jnp.abs(sol.ys[-1] - jnp.moveaxis(p_exact, -1, 0))) < 1e-2


def _dense_imex_step(solver, equation, y0, dt, nu):
    """One implicit IMEX step from the Butcher tableaux, with `D` written out densely (numpy
    solves with `I - dt a_ii nu D`): the reference for the Fourier and stagewise steps."""
    matrix, offset = (np.asarray(m, np.float64) for m in _dense_operator(equation, y0))
    shape = y0.shape
    diffusion = lambda y: (matrix @ y.reshape(-1) + offset).reshape(shape)
    field = eqx.filter_jit(lambda eq, y: eq.hyperbolic_field(y))
    hyperbolic = lambda y: np.asarray(field(equation, jnp.asarray(y)))
    a, ai = solver.explicit, solver.implicit
    stages, y0 = len(solver.explicit_weights), np.asarray(y0)
    fields, laplacians = [], []
    for i in range(stages):
        rhs = y0 + dt * sum(a[i][j] * fields[j] + nu * ai[i][j] * laplacians[j] for j in range(i))
        c = dt * nu * ai[i][i]
        system = np.eye(y0.size) - c * matrix
        y = np.linalg.solve(system, (rhs + c * offset.reshape(shape)).reshape(-1)).reshape(shape)
        fields.append(hyperbolic(y))
        laplacians.append(diffusion(y))
    weights = zip(solver.explicit_weights, solver.implicit_weights, fields, laplacians)
    return y0 + dt * sum(b * f + nu * bi * lap for b, bi, f, lap in weights)


_SSP2, _SSP3 = jp.IMEXSSP2(threshold=0.0), jp.IMEXSSP3(threshold=0.0)


@pytest.mark.parametrize(
    "solver,equation",
    [
        # Fourier-space steps (periodic): 1-D and 2-D vector Burgers, 2-D Hamilton-Jacobi.
        (_SSP3, jp.Burgers(GRID_1D, viscous_order=4)),
        (_SSP2, jp.Burgers(GRID_1D, viscous_order=4)),
        pytest.param(_SSP3, jp.Burgers(GRID_2D, viscous_order=2), marks=pytest.mark.slow),
        pytest.param(_SSP3, jp.HamiltonJacobi(GRID_2D, viscous_order=4), marks=pytest.mark.slow),
        # Stagewise tridiagonal solves (affine Dirichlet boundary).
        pytest.param(
            _SSP3,
            jp.Burgers(GRID_1D, viscous_order=2, boundary=jp.Dirichlet(0.7, -1.3)),
            marks=pytest.mark.slow,
        ),
    ],
    ids=["ssp3-burgers1d", "ssp2-burgers1d", "ssp3-burgers2d", "ssp3-hj2d", "ssp3-dirichlet"],
)
def test_implicit_step_matches_dense_butcher_step(solver, equation, getkey):
    # One implicit step (threshold 0) beyond the explicit viscous limit against the tableaux
    # evaluated with dense solves: the Fourier step's algebra in transformed space (and the
    # stagewise one) equals the textbook IMEX step to rounding.
    y0 = 0.02 * jax.random.normal(getkey(), equation.state_shape)
    nu = 0.3
    dt = min(4.0 / float(equation.viscous_rate(nu)), 0.5 / float(equation.hyperbolic_rate(y0)))
    assert dt * float(equation.viscous_rate(nu)) > 1.5
    step = eqx.filter_jit(
        lambda eq, y: solver.step(FiniteVolumeTerm(eq), 0.0, dt, y, nu, None, False)
    )
    expected = _dense_imex_step(solver, equation, y0, dt, nu)
    np.testing.assert_allclose(step(equation, y0)[0], expected, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize(
    "equation",
    [jp.Burgers(GRID_1D, viscous_order=o) for o in (2, 4)] + [jp.HamiltonJacobi(GRID_1D)],
    ids=["burgers2", "burgers4", "hj4"],
)
def test_viscous_rate_is_half_the_spectral_radius(equation):
    # `viscous_rate(nu) = nu c / h^2` with `c` half the largest eigenvalue of `-D h^2`: forward
    # Euler on `nu D` is stable exactly for `dt * rate <= 1` (8/3 for both fourth-order
    # stencils, whose Laplacian is (-1, 16, -30, 16, -1) / 12 h^2; 2 for second order).
    matrix, _ = _dense_operator(equation, jnp.zeros(equation.state_shape))
    radius = np.max(np.abs(np.linalg.eigvals(np.asarray(matrix))))
    np.testing.assert_allclose(float(equation.viscous_rate(1.0)), radius / 2, rtol=1e-12)
