"""Shock formation from initial data and shock detection in solutions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import jaxstat.pde as jp


TWO_PI = 2 * np.pi


def test_shock_time_of_sine():
    # p0 = sin x: t* = 1 / max(-cos x) = 1, from y* = pi, at x* = pi + sin(pi) = pi.
    sf = jp.shock_formation(jnp.sin, 0.0, TWO_PI)
    np.testing.assert_allclose(sf.time, 1.0, rtol=1e-14)
    np.testing.assert_allclose(sf.rate, 1.0, rtol=1e-14)
    # The minimum of p0' is flat (quadratic), so its location is found to ~sqrt(eps).
    np.testing.assert_allclose(sf.origin, np.pi, atol=1e-7)
    np.testing.assert_allclose(sf.position, np.pi, atol=1e-7)


def test_shock_time_scales_and_moves_with_the_data():
    # p0 = a sin(k x) + c: t* = 1 / (a k); the characteristic from y* = pi / k moves at speed c.
    a, k, c = 0.5, 2.0, 0.3
    sf = jp.shock_formation(lambda x: a * jnp.sin(k * x) + c, 0.0, np.pi)
    np.testing.assert_allclose(sf.time, 1 / (a * k), rtol=1e-12)
    np.testing.assert_allclose(sf.position, np.pi / k + c / (a * k), atol=1e-6)
    # Expanding data never shock.
    assert jnp.isinf(jp.shock_formation(lambda x: x, -1.0, 1.0).time)


def test_shock_time_with_general_flux():
    # f = cosh p - 1, p0 = sin x: compression rate -(f'(p0))' = -cosh(sin y) cos y, maximal at
    # y = pi where it is 1: t* = 1 (and elsewhere smaller: checked by brute force).
    flux = jp.Convex(lambda p: jnp.cosh(p) - 1, argmin=0.0)
    sf = jp.shock_formation(jnp.sin, 0.0, TWO_PI, flux=flux)
    y = np.linspace(0, TWO_PI, 100001)
    np.testing.assert_allclose(sf.rate, np.max(-np.cosh(np.sin(y)) * np.cos(y)), rtol=1e-9)


def test_shock_time_2d_from_hessian_matches_brute_force():
    # t* = 1 / max(-lambda_min(Hess u0)) for a non-separable loss; independent check: numpy
    # eigenvalues of the Hessian on a 301^2 grid (grid error O(h^2) ~ 1e-4 in the rate).
    u0 = lambda y: -jnp.cos(y[0]) - 0.5 * jnp.cos(y[1]) - 0.3 * jnp.sin(y[0] + y[1])
    sf = jp.shock_formation(jax.grad(u0), (0.0, 0.0), (TWO_PI, TWO_PI), num_samples=64)
    g = np.linspace(0, TWO_PI, 301)
    X, Y = np.meshgrid(g, g, indexing="ij")
    points = jnp.stack([X.ravel(), Y.ravel()], -1)
    lam = np.linalg.eigvalsh(np.asarray(jax.vmap(jax.hessian(u0))(points)))[:, 0]
    best = np.argmin(lam)
    assert -lam[best] <= float(sf.rate) + 1e-12  # the refined maximum beats every grid point
    np.testing.assert_allclose(sf.rate, -lam[best], rtol=3e-4)
    np.testing.assert_allclose(sf.origin, np.asarray(points[best]), atol=4e-2)
    np.testing.assert_allclose(
        sf.position, sf.origin + sf.time * jax.grad(u0)(sf.origin), rtol=1e-12
    )


_ASYMMETRIC = lambda x: jnp.sin(x) + 0.3 * jnp.sin(2 * x) + 0.5


@pytest.fixture(scope="module")
def shock_solutions():
    # One vmapped solve (one compilation) on 512 cells for three cases:
    # - p0 = sin x + 1/2, nu = 0 and 0.01: by Galilean invariance the (viscous or inviscid) shock
    #   sits at pi + t / 2 and moves at 1/2; inviscid states 1/2 +- sin(y), y + t sin y = pi.
    # - p0 = sin x + 0.3 sin 2x + 1/2, nu = 0.005: two shocks.
    grid = jp.UniformGrid(0.0, TWO_PI, 512)
    ts = jnp.array([0.0, 0.7, 1.5, 1.55, 1.6])
    moving = grid.cell_averages(lambda x: jnp.sin(x) + 0.5)
    p0 = jnp.stack([moving, moving, grid.cell_averages(_ASYMMETRIC)])
    nus = jnp.array([0.0, 0.01, 0.005])
    ys = jax.vmap(lambda p, nu: jp.solve(jp.Burgers(grid), p, ts, nu).ys)(p0, nus)
    return grid, ts, ys


def test_detect_moving_shock(shock_solutions):
    grid, ts, ys = shock_solutions
    for k, nu in enumerate((0.0, 0.01)):
        # Before t* = 1 the solution is smooth: nothing is detected.
        assert not jnp.any(jp.detect_shocks(ys[k, 1], grid).valid)
        before = jp.detect_shocks(ys[k, 2], grid)
        after = jp.detect_shocks(ys[k, 4], grid)
        assert int(jnp.sum(after.valid)) == 1
        i = int(jnp.argmax(after.valid))
        # Position: exact pi + t / 2 up to a fraction of a cell (measured < 1e-4).
        np.testing.assert_allclose(after.position[i], np.pi + 0.8, atol=0.1 * grid.spacing[0])
        # States: the inviscid ones; the viscous layer is cut at 1% of its steepest drop and
        # the outer solution differs by O(nu): measured 1e-3 (nu = 0) and 2e-2 (nu = 0.01).
        y = scipy.optimize.brentq(lambda y: y + 1.6 * np.sin(y) - np.pi, 0.1, 3.0)
        tol = 5e-3 if nu == 0 else 4e-2
        np.testing.assert_allclose(after.left[i], 0.5 + np.sin(y), atol=tol)
        np.testing.assert_allclose(after.right[i], 0.5 - np.sin(y), atol=tol)
        assert after.entropic[i]
        # Speed: measured between the snapshots and from Rankine-Hugoniot, both 1/2.
        speed, ok = jp.shock_speed(before, after, ts[4] - ts[2], period=TWO_PI)
        assert ok[i]
        np.testing.assert_allclose(speed[i], 0.5, atol=2e-3)
        np.testing.assert_allclose(after.speed[i], 0.5, atol=2e-3 if nu == 0 else 1e-2)


def test_detect_shocks_rankine_hugoniot_for_asymmetric_data(shock_solutions):
    # p0 = sin x + 0.3 sin 2x + 0.5 forms two shocks; each moves at its Rankine-Hugoniot speed
    # (measured between t = 1.55 and 1.6 vs the mean of the two RH speeds: within 2e-2, the
    # shocks accelerate as they approach each other).
    grid, ts, ys = shock_solutions
    before, after = jp.detect_shocks(ys[2, 3], grid), jp.detect_shocks(ys[2, 4], grid)
    assert int(jnp.sum(after.valid)) == 2
    speed, ok = jp.shock_speed(before, after, ts[4] - ts[3], period=TWO_PI)
    for i in np.flatnonzero(np.asarray(after.valid)):
        j = int(jnp.argmin(jnp.abs(before.position - after.position[i])))
        rh = 0.5 * (before.speed[j] + after.speed[i])
        assert ok[i]
        np.testing.assert_allclose(speed[i], rh, atol=2e-2)


def test_steps_rarefaction_data_and_shock_data():
    grid = jp.UniformGrid(0.0, TWO_PI, 256)
    # A rising step (rarefaction data) is not compressive.
    step = jnp.where(grid.centres() < np.pi, -1.0, 1.0)
    detected = jp.detect_shocks(step, grid, boundary=jp.Outflow())
    assert not jnp.any(detected.valid)
    # Its mirror image is a shock at pi with strength 2, entropic.
    detected = jp.detect_shocks(-step, grid, boundary=jp.Dirichlet(1.0, -1.0))
    assert int(jnp.sum(detected.valid)) == 1
    i = int(jnp.argmax(detected.valid))
    np.testing.assert_allclose(detected.position[i], np.pi, atol=1e-12)
    np.testing.assert_allclose(detected.strength[i], 2.0)
    assert detected.entropic[i]


def test_shock_across_the_periodic_seam_follows_the_boundary():
    # p = -cos(x / 2) rises smoothly from -1 to 1 over [0, 2 pi]: read periodically, the face at
    # 2 pi = 0 carries a drop from cos(h / 4) to -cos(h / 4), a shock of strength 2 cos(h / 4)
    # at 0; with any other boundary that face is not inside the data and nothing is compressive.
    grid = jp.UniformGrid(0.0, TWO_PI, 256)
    p = -jnp.cos(grid.centres() / 2)
    periodic = jp.detect_shocks(p, grid, boundary=jp.Periodic())
    assert int(jnp.sum(periodic.valid)) == 1
    i = int(jnp.argmax(periodic.valid))
    position = float(periodic.position[i])
    assert min(position, TWO_PI - position) < 1e-12
    np.testing.assert_allclose(periodic.strength[i], 2 * np.cos(grid.spacing[0] / 4), rtol=1e-12)
    for boundary in (jp.Outflow(), jp.Neumann(), jp.Dirichlet(1.0, 1.0)):
        assert not jnp.any(jp.detect_shocks(p, grid, boundary=boundary).valid)
    with pytest.raises(TypeError, match="AbstractBoundary"):
        jp.detect_shocks(p, grid, boundary=True)


def test_shock_errors():
    grid2 = jp.UniformGrid((0.0, 0.0), (1.0, 1.0), (40, 40))
    with pytest.raises(ValueError, match="1-D"):
        jp.detect_shocks(jnp.zeros((40, 40)), grid2)
    grid = jp.UniformGrid(0.0, 1.0, 40)
    with pytest.raises(ValueError, match="shape"):
        jp.detect_shocks(jnp.zeros(41), grid)
    with pytest.raises(ValueError, match="cells"):
        jp.detect_shocks(jnp.zeros(40), grid, max_width=32)
    with pytest.raises(ValueError, match="same number"):
        jp.shock_formation(lambda y: y, (0.0, 0.0), (1.0,))
