r"""Boundary conditions, applied by filling ghost cells.

A boundary condition extends the `n` cell averages along one axis by `width` ghost cells on each
side; the numerical fluxes at the two boundary faces then see the condition. All conditions are
`eqx.Module`s: the boundary values are differentiable leaves.
"""

import abc
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike


def _take(y: Array, start: int, stop: int, axis: int) -> Array:
    return jnp.take(y, jnp.arange(start, stop), axis=axis)


def _flip(y: Array, axis: int) -> Array:
    return jnp.flip(y, axis=axis)


def _ghost_index(width: int, ndim: int, axis: int, dtype) -> Array:
    """`k` for the k-th ghost cell on the left, k = width..1 (outermost first), shaped to
    broadcast along `axis` of an `ndim`-dimensional array."""
    shape = [1] * ndim
    shape[axis] = width
    return jnp.arange(width, 0, -1, dtype=dtype).reshape(shape)


class AbstractBoundary(eqx.Module):
    """A boundary condition: how ghost cells are filled along one axis.

    `periodic` says whether the data wrap around (the grid is a circle along the axis): shock
    detection and the spectral implicit viscous solve read it.
    """

    periodic: eqx.AbstractClassVar[bool]

    @abc.abstractmethod
    def pad(self, y: Array, width: int, axis: int, spacing: float) -> Array:
        """Extend `y` by `width` ghost cells on both sides of `axis`.

        **Arguments:**

        - `y`: cell averages; `axis` has `n >= width` cells.
        - `width`: the number of ghost cells on each side.
        - `axis`: the grid axis (negative values count from the end).
        - `spacing`: the cell width `h` along `axis`.

        **Returns:**

        `y` with `n + 2 width` cells along `axis`.
        """


class Periodic(AbstractBoundary):
    """Periodic boundaries: `y_{-k} = y_{n-k}`, `y_{n-1+k} = y_{k-1}`.

    **Example:** `Periodic()`.
    """

    periodic: ClassVar[bool] = True

    def pad(self, y, width, axis, spacing):
        del spacing
        n = y.shape[axis]
        left = _take(y, n - width, n, axis)
        right = _take(y, 0, width, axis)
        return jnp.concatenate([left, y, right], axis=axis)


class Outflow(AbstractBoundary):
    """Outflow (extrapolation) boundaries: ghost cells continue the edge cells.

    `order=0` copies the edge value (zero-gradient outflow, the usual choice for conservation
    laws); `order=1` extrapolates linearly from the two edge cells (the usual choice for a
    Hamilton-Jacobi potential `u`, whose gradient is then continued).

    **Arguments:**

    - `order`: 0 or 1.

    **Example:** `Outflow()`, `Outflow(order=1)`.
    """

    periodic: ClassVar[bool] = False

    order: int = eqx.field(static=True, default=0)

    def __check_init__(self):
        if self.order not in (0, 1):
            raise ValueError(f"`Outflow(order=...)` must be 0 or 1, got {self.order}.")

    def pad(self, y, width, axis, spacing):
        del spacing
        n = y.shape[axis]
        first = _take(y, 0, 1, axis)
        last = _take(y, n - 1, n, axis)
        k = _ghost_index(width, y.ndim, axis, y.dtype)
        if self.order == 0:
            left = jnp.broadcast_to(first, jnp.broadcast_shapes(first.shape, k.shape))
            right = jnp.broadcast_to(last, left.shape)
        else:
            if n < 2:
                raise ValueError("`Outflow(order=1)` needs at least two cells along each axis.")
            second = _take(y, 1, 2, axis)
            before_last = _take(y, n - 2, n - 1, axis)
            left = first - k * (second - first)
            right = last + _flip(k, axis) * (last - before_last)
        return jnp.concatenate([left, y, right], axis=axis)


class Dirichlet(AbstractBoundary):
    r"""Dirichlet boundaries: the solution equals `left` / `right` on the two boundary faces.

    Ghost cells are the odd reflection about the boundary value,
    `y_{-k} = 2 g_left - y_{k-1}`, so that the face value and the face gradient
    `(y_0 - y_{-1}) / h` are second-order accurate.

    **Arguments:**

    - `left`, `right`: the boundary values (scalars, or arrays broadcastable against a slice of
        the state at the boundary, e.g. one value per component).

    **Example:** `Dirichlet(1.0, -1.0)`.
    """

    periodic: ClassVar[bool] = False

    left: ArrayLike = eqx.field(default=0.0, converter=jnp.asarray)
    right: ArrayLike = eqx.field(default=0.0, converter=jnp.asarray)

    def pad(self, y, width, axis, spacing):
        del spacing
        n = y.shape[axis]
        if n < width:
            raise ValueError(f"`Dirichlet` needs at least {width} cells along each axis, got {n}.")
        left = 2 * jnp.asarray(self.left, y.dtype) - _flip(_take(y, 0, width, axis), axis)
        right = 2 * jnp.asarray(self.right, y.dtype) - _flip(_take(y, n - width, n, axis), axis)
        return jnp.concatenate([left, y, right], axis=axis)


class Neumann(AbstractBoundary):
    r"""Neumann boundaries: the normal derivative `dy/dx` equals `left` / `right` on the faces.

    Ghost cells are the even reflection corrected by the gradient,
    `y_{-k} = y_{k-1} - (2k - 1) h g_left` and `y_{n-1+k} = y_{n-k} + (2k - 1) h g_right`, exact
    for data that is linear near the boundary.

    **Arguments:**

    - `left`, `right`: the derivatives `dy/dx` (along the increasing axis) at the two faces.

    **Example:** `Neumann()` (zero flux), `Neumann(0.5, 0.5)`.
    """

    periodic: ClassVar[bool] = False

    left: ArrayLike = eqx.field(default=0.0, converter=jnp.asarray)
    right: ArrayLike = eqx.field(default=0.0, converter=jnp.asarray)

    def pad(self, y, width, axis, spacing):
        n = y.shape[axis]
        if n < width:
            raise ValueError(f"`Neumann` needs at least {width} cells along each axis, got {n}.")
        d = 2 * _ghost_index(width, y.ndim, axis, y.dtype) - 1
        gl = jnp.asarray(self.left, y.dtype)
        gr = jnp.asarray(self.right, y.dtype)
        left = _flip(_take(y, 0, width, axis), axis) - d * spacing * gl
        right = _flip(_take(y, n - width, n, axis), axis) + _flip(d, axis) * spacing * gr
        return jnp.concatenate([left, y, right], axis=axis)
