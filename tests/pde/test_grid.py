"""Grids, cell averages and boundary conditions."""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxstat.pde as jp


def test_grid_geometry():
    grid = jp.UniformGrid((0.0, -1.0), (2.0, 1.0), (4, 8))
    assert grid.ndim == 2
    assert grid.spacing == (0.5, 0.25)
    assert grid.cell_volume == 0.125
    np.testing.assert_allclose(grid.centres(0), [0.25, 0.75, 1.25, 1.75])
    np.testing.assert_allclose(grid.faces(1)[jnp.array([0, -1])], [-1.0, 1.0])
    assert grid.mesh().shape == (2, 4, 8)
    # A 1-D grid from scalars.
    assert jp.UniformGrid(0, 1, 10).shape == (10,)


@pytest.mark.parametrize(
    "args",
    [((0.0,), (1.0, 2.0), (4,)), (0.0, 1.0, 0), (1.0, 0.0, 4)],
    ids=["mismatch", "no-cells", "reversed"],
)
def test_grid_rejects_bad_geometry(args):
    with pytest.raises(ValueError):
        jp.UniformGrid(*args)


def test_cell_averages_exact_for_polynomials_and_sine():
    # 4-point Gauss-Legendre integrates degree <= 7 exactly: averages of x^7 match the primitive.
    grid = jp.UniformGrid(-1.0, 2.0, 7)
    faces = grid.faces()
    exact = jnp.diff(faces**8 / 8) / grid.spacing[0]
    np.testing.assert_allclose(grid.cell_averages(lambda x: x**7), exact, rtol=1e-13)
    # sin: error O(h^8); at h = 2 pi / 32 this is far below 1e-12.
    grid = jp.UniformGrid(0.0, 2 * np.pi, 32)
    exact = -jnp.diff(jnp.cos(grid.faces())) / grid.spacing[0]
    np.testing.assert_allclose(grid.cell_averages(jnp.sin), exact, atol=1e-13)


def test_cell_averages_2d_vector_field():
    grid = jp.UniformGrid((0.0, 0.0), (1.0, 2.0), (5, 6))
    field = grid.cell_averages(lambda x, y: jnp.stack([x * y, x + y**2]))
    assert field.shape == (2, 5, 6)
    xc, yc = grid.mesh()
    hy = grid.spacing[1]
    # Averages of x y and x + y^2 over a cell: xc yc and xc + yc^2 + hy^2 / 12.
    np.testing.assert_allclose(field[0], xc * yc, atol=1e-14)
    np.testing.assert_allclose(field[1], xc + yc**2 + hy**2 / 12, atol=1e-14)
    # Total integral.
    np.testing.assert_allclose(grid.integrate(field[0]), 0.5 * 2.0, rtol=1e-13)


def test_periodic_pad():
    y = jnp.arange(5.0)
    np.testing.assert_array_equal(jp.Periodic().pad(y, 2, 0, 1.0), [3, 4, 0, 1, 2, 3, 4, 0, 1])


@pytest.mark.parametrize("width", [1, 3])
def test_dirichlet_pad_reflects_about_boundary_value(width, getkey):
    import jax.random as jr

    y = jr.normal(getkey(), (3, 6))
    padded = jp.Dirichlet(1.5, -0.5).pad(y, width, 1, 0.1)
    assert padded.shape == (3, 6 + 2 * width)
    for k in range(1, width + 1):
        # The mean of a ghost cell and its mirror cell is the boundary value.
        np.testing.assert_allclose(0.5 * (padded[:, width - k] + y[:, k - 1]), 1.5, rtol=1e-14)
        np.testing.assert_allclose(0.5 * (padded[:, width + 5 + k] + y[:, 6 - k]), -0.5, rtol=1e-14)


def test_neumann_and_linear_outflow_exact_for_linear_data():
    h = 0.25
    x = (jnp.arange(6) + 0.5) * h
    y = 2.0 + 3.0 * x  # gradient 3
    xp = (jnp.arange(-3, 9) + 0.5) * h
    np.testing.assert_allclose(jp.Neumann(3.0, 3.0).pad(y, 3, 0, h), 2.0 + 3.0 * xp, rtol=1e-14)
    np.testing.assert_allclose(jp.Outflow(order=1).pad(y, 3, 0, h), 2.0 + 3.0 * xp, rtol=1e-14)
    padded = jp.Outflow().pad(y, 2, 0, h)
    np.testing.assert_allclose(padded[:2], y[0])
    np.testing.assert_allclose(padded[-2:], y[-1])


def test_boundary_errors():
    with pytest.raises(ValueError):
        jp.Outflow(order=2)
    with pytest.raises(ValueError):
        jp.Dirichlet().pad(jnp.zeros(2), 3, 0, 1.0)
