"""Hamilton-Jacobi finite differences (1-D, 2-D) and 2-D Burgers against exact solutions."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxstat.pde as jp


TWO_PI = 2 * np.pi
_U0 = lambda y: -jnp.cos(y[0])  # u0 = -cos x, p0 = sin x: shock (kink in u) at t = 1
# A non-separable 2-D potential: Hessian with off-diagonal terms.
_U2 = lambda y: -jnp.cos(y[0]) - 0.5 * jnp.cos(y[1]) - 0.3 * jnp.sin(y[0] + y[1])
_P2 = lambda x, y: jnp.stack(
    [jnp.sin(x) - 0.3 * jnp.cos(x + y), 0.5 * jnp.sin(y) - 0.3 * jnp.cos(x + y)]
)
NS = (32, 64, 128)


def _slope(ns, errors):
    return -np.polyfit(np.log(ns), np.log(errors), 1)[0]


@functools.cache
def _hopf_lax_nodes(t):
    """u(x, t) at the cell centres of every grid in NS (one Hopf-Lax call)."""
    xs = jnp.concatenate([jp.UniformGrid(0.0, TWO_PI, n).centres() for n in NS])[:, None]
    u, _ = jp.hopf_lax(_U0, xs, t, half_width=2.0, num_nodes=801)
    return dict(zip(NS, jnp.split(u, np.cumsum(NS)[:-1])))


def test_semidiscrete_hamiltonian_order():
    # For smooth u the exact du/dt = -H(u_x) + nu u_xx at the nodes; the WENO5 derivatives of
    # Jiang & Peng are fifth order, first-order differences first order. u_x = cos x - 0.6 sin 2x
    # crosses 0, the sonic point of the numerical Hamiltonians.
    u = lambda x: jnp.sin(x) + 0.3 * jnp.cos(2 * x)
    ux = lambda x: jnp.cos(x) - 0.6 * jnp.sin(2 * x)
    uxx = lambda x: -jnp.sin(x) - 1.2 * jnp.cos(2 * x)
    cases = [
        (jp.FirstOrder(), jp.Godunov(), 2, 0.0, (0.85, 1.2)),
        (jp.WENO5(), jp.EngquistOsher(), 2, 0.0, (4.6, 6.2)),
        (jp.WENO5Z(), jp.LocalLaxFriedrichs(), 4, 0.1, (3.8, 6.2)),
    ]
    for reconstruction, numerical, viscous_order, nu, band in cases:
        errors = []
        for n in NS:
            grid = jp.UniformGrid(0.0, TWO_PI, n)
            x = grid.centres()
            eq = jp.HamiltonJacobi(
                grid,
                numerical_hamiltonian=numerical,
                reconstruction=reconstruction,
                viscous_order=viscous_order,
            )
            exact = -0.5 * ux(x) ** 2 + nu * uxx(x)
            rate = jax.jit(eq.vector_field)(0.0, u(x), nu)
            errors.append(float(jnp.mean(jnp.abs(rate - exact))))
        assert band[0] < _slope(NS, errors) < band[1], (reconstruction, errors)


@pytest.mark.parametrize(
    "reconstruction,solver,small_steps,band",
    [
        pytest.param(jp.FirstOrder(), jp.SSPRK1(), False, (0.85, 1.15), marks=pytest.mark.slow),
        pytest.param(jp.WENO5Z(), jp.SSPRK3(), True, (4.3, 6.0), marks=pytest.mark.slow),
    ],
    ids=["first-order", "weno5z"],
)
def test_inviscid_convergence_to_hopf_lax_past_the_kink(reconstruction, solver, small_steps, band):
    # nu = 0, t = 1.5 > t* = 1: u has a kink (the shock of p). The viscosity solution from the
    # Hopf-Lax formula; monotone schemes converge to it. The kink is a single point, so the mean
    # error keeps the smooth order: measured slopes 0.97 and 4.5 (WENO5Z, dt ~ h^(5/3)).
    exact = _hopf_lax_nodes(1.5)
    errors = []
    for n in NS:
        grid = jp.UniformGrid(0.0, TWO_PI, n)
        h = grid.spacing[0]
        step = jp.FixedStep(0.5 * h ** (5 / 3)) if small_steps else jp.CFLStep()
        eq = jp.HamiltonJacobi(grid, reconstruction=reconstruction)
        sol = jp.solve(
            eq, -jnp.cos(grid.centres()), jnp.array([0.0, 1.5]), solver=solver, step=step
        )
        errors.append(float(jnp.mean(jnp.abs(sol.ys[-1] - exact[n]))))
    assert band[0] < _slope(NS, errors) < band[1], errors


@pytest.mark.parametrize(
    "numerical_hamiltonian",
    [
        jp.Godunov(),
        pytest.param(jp.EngquistOsher(), marks=pytest.mark.slow),
        pytest.param(jp.LocalLaxFriedrichs(), marks=pytest.mark.slow),
    ],
    ids=str,
)
def test_viscous_hj_matches_cole_hopf(numerical_hamiltonian):
    # u at the nodes against Cole-Hopf, nu = 0.1, t = 1.5; fourth-order viscous term. Measured
    # max errors ~2e-6 for all three Hamiltonians at N = 128.
    grid = jp.UniformGrid(0.0, TWO_PI, 128)
    eq = jp.HamiltonJacobi(grid, numerical_hamiltonian=numerical_hamiltonian, viscous_order=4)
    u0, ts = -jnp.cos(grid.centres()), jnp.array([0.0, 1.5])
    sol = jp.solve(eq, u0, ts, 0.1)
    exact, _ = jp.cole_hopf(_U0, grid.centres()[:, None], 1.5, 0.1, half_width=6.0, num_nodes=3001)
    assert jnp.max(jnp.abs(sol.ys[-1] - exact)) < 1e-5
    # nu = 0 with the same compiled solve: the viscosity solution (Hopf-Lax) past the kink at
    # t* = 1. Measured mean / max errors: 3.3e-7 / 2.8e-6 (Godunov, Engquist-Osher, equal here),
    # 2.2e-5 / 1.4e-3 (LLF, whose extra dissipation rounds the kink); bounds 3x / 3.5x that.
    sol = jp.solve(eq, u0, ts, 0.0)
    errors = jnp.abs(sol.ys[-1] - _hopf_lax_nodes(1.5)[128])
    llf = isinstance(numerical_hamiltonian, jp.LocalLaxFriedrichs)
    mean_bound, max_bound = (7e-5, 5e-3) if llf else (1e-6, 1e-5)
    assert jnp.mean(errors) < mean_bound and jnp.max(errors) < max_bound, errors


@functools.cache
def _cole_hopf_2d(n):
    grid = jp.UniformGrid((0.0, 0.0), (TWO_PI, TWO_PI), (n, n))
    x = jnp.moveaxis(grid.mesh(), 0, -1)
    # nu t = 0.05: the integrand's peaks have width >= 0.2, resolved by 81 nodes on [-4, 4]
    # (converged to 1e-15 against 241 nodes).
    return jp.cole_hopf(_U2, x, 0.5, 0.1, half_width=4.0, num_nodes=81)


def test_2d_hj_and_burgers_against_cole_hopf():
    # Non-separable 2-D data, nu = 0.1, t = 0.5, 32 x 32 cells. HJ values at the nodes: measured
    # max error 1.1e-3 (3.6e-3 on 16 x 16: second order, from the viscous term). Burgers cell
    # averages against Cole-Hopf point values at the centres (an O(h^2) difference by itself):
    # measured 5.1e-3 (2.0e-2 on 16 x 16).
    n = 32
    grid = jp.UniformGrid((0.0, 0.0), (TWO_PI, TWO_PI), (n, n))
    u_exact, p_exact = _cole_hopf_2d(n)
    x = jnp.moveaxis(grid.mesh(), 0, -1)
    u0 = jax.vmap(jax.vmap(_U2))(x)
    sol = jp.solve(jp.HamiltonJacobi(grid, viscous_order=2), u0, jnp.array([0.0, 0.5]), 0.1)
    assert jnp.max(jnp.abs(sol.ys[-1] - u_exact)) < 2e-3
    burgers = jp.Burgers(grid, viscous_order=2)  # LocalLaxFriedrichs in 2-D
    sol = jp.solve(burgers, grid.cell_averages(_P2), jnp.array([0.0, 0.5]), 0.1)
    assert sol.ys.shape == (2, 2, n, n)
    assert jnp.max(jnp.abs(sol.ys[-1] - jnp.moveaxis(p_exact, -1, 0))) < 1e-2


@pytest.mark.slow  # Neumann ghost cells are checked exactly in test_grid.py
def test_neumann_keeps_linear_potentials_exact():
    # u0 = a x is an exact solution u = a x - t a^2 / 2 on [0, 1] when the boundary conditions
    # continue the slope, Neumann(a, a): the scheme is exact to rounding.
    a = 0.7
    grid = jp.UniformGrid(0.0, 1.0, 20)
    x = grid.centres()
    # (Outflow(order=1) fills the same ghost values for linear data, see test_grid.py.)
    eq = jp.HamiltonJacobi(grid, boundary=jp.Neumann(a, a))
    sol = jp.solve(eq, a * x, jnp.array([0.0, 0.5]), 0.05)
    np.testing.assert_allclose(sol.ys[-1], a * x - 0.5 * a**2 / 2, atol=1e-13)


def test_hj_errors():
    grid = jp.UniformGrid(0.0, 1.0, 16)
    with pytest.raises(TypeError, match="hamiltonian"):
        jp.HamiltonJacobi(grid, hamiltonian=lambda p: p**2)
    with pytest.raises(TypeError, match="numerical_hamiltonian"):
        jp.HamiltonJacobi(grid, numerical_hamiltonian="godunov")
    eq = jp.HamiltonJacobi(grid)
    with pytest.raises(ValueError, match="shape"):
        jp.solve(eq, jnp.zeros((16, 2)), jnp.array([0.0, 1.0]))
