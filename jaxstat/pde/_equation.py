r"""Finite-volume discretisations (method of lines) of viscous Burgers and Hamilton-Jacobi.

An equation object holds the grid and the numerical strategies and provides the semi-discrete
vector field `dy/dt = L(y; nu)` and the CFL rate `rate(y; nu)` (the inverse of the largest stable
forward-Euler step). `solve` integrates it in time with diffrax.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
from jaxtyping import Array, ArrayLike

from ._boundary import AbstractBoundary, Periodic
from ._flux import (
    _NO_SYSTEM_SOLVER,
    AbstractConvexFlux,
    AbstractNumericalFlux,
    Godunov,
    LocalLaxFriedrichs,
    Quadratic,
)
from ._grid import UniformGrid
from ._reconstruction import AbstractReconstruction, WENO5


# Face gradient `(d v / dx)_{j+1/2}` from the cell averages `v` (the second derivative of the
# primitive at the face), of order 2 or 4: (ghost cells, coefficients of v_{j-g+1} .. v_{j+g}) and
# the viscous CFL constant `c` (half the largest eigenvalue of the resulting discrete Laplacian,
# times h^2) so that forward Euler is stable for `nu dt c / h^2 <= 1`.
_FACE_GRADIENT = {2: (1, (-1.0, 1.0), 2.0), 4: (2, (1 / 12, -15 / 12, 15 / 12, -1 / 12), 8 / 3)}
# Node Laplacian `(d^2 v / dx^2)_j` of point values, of order 2 or 4: (ghost cells, coefficients
# of v_{j-g} .. v_{j+g}), viscous CFL constant.
_LAPLACIAN = {
    2: (1, (1.0, -2.0, 1.0), 2.0),
    4: (2, (-1 / 12, 16 / 12, -30 / 12, 16 / 12, -1 / 12), 8 / 3),
}


def _trim(v: Array, have: int, want: int) -> Array:
    """Drop ghost cells from the last axis: `have` on each side to `want`."""
    cut = have - want
    return v if cut == 0 else v[..., cut : v.shape[-1] - cut]


def _face_gradient(v: Array, order: int, h: float) -> Array:
    """`(d v/dx)` at the `m - 2g + 1` faces of `v` (last axis, `g` ghost cells)."""
    g, coeffs, _ = _FACE_GRADIENT[order]
    m = v.shape[-1]
    return sum(c * v[..., i : m - 2 * g + 1 + i] for i, c in enumerate(coeffs)) / h


def _laplacian(v: Array, order: int, h: float) -> Array:
    """`(d^2 v/dx^2)` at the `m - 2g` interior cells of `v` (last axis, `g` ghost cells)."""
    g, coeffs, _ = _LAPLACIAN[order]
    m = v.shape[-1]
    return sum(c * v[..., i : m - 2 * g + i] for i, c in enumerate(coeffs)) / h**2


class AbstractEquation(eqx.Module):
    """A finite-volume semi-discretisation `dy/dt = L(y; nu) = A(y) + nu D y` on a uniform grid.

    `A` is the hyperbolic part (numerical fluxes or Hamiltonian), `D` the discrete Laplacian
    with the boundary conditions (affine in `y` when a boundary value is nonzero). Explicit
    solvers step `L`; implicit-explicit ones step `A` explicitly and solve with `I - a D`
    (`solve_diffusion`).
    """

    grid: eqx.AbstractVar[UniformGrid]
    boundary: eqx.AbstractVar[AbstractBoundary | tuple[AbstractBoundary, ...]]
    reconstruction: eqx.AbstractVar[AbstractReconstruction]
    viscous_order: eqx.AbstractVar[int | None]

    @property
    @abc.abstractmethod
    def state_shape(self) -> tuple[int, ...]:
        """The shape of a state `y`."""

    @property
    @abc.abstractmethod
    def _viscous_stencil(self) -> dict[int, tuple]:
        """`_FACE_GRADIENT` or `_LAPLACIAN`: the viscous stencils by order."""

    @abc.abstractmethod
    def _padded(self, y: Array, axis: int) -> Array:
        """`y` with its ghost cells along `axis`, that axis moved last."""

    @abc.abstractmethod
    def _axis_hyperbolic(self, v: Array, y: Array, axis: int) -> Array:
        """The contribution of `axis` to `A(y)` (state shape), from `v = _padded(y, axis)`."""

    @abc.abstractmethod
    def _axis_viscous(self, v: Array, y: Array, axis: int) -> Array:
        """The contribution of `axis` to `D y` (state shape), from `v = _padded(y, axis)`."""

    @abc.abstractmethod
    def hyperbolic_rate(self, y: Array) -> Array:
        """`sum_k max|f'| / h_k`: the hyperbolic limit of the forward-Euler step."""

    def vector_field(self, t: ArrayLike, y: Array, nu: ArrayLike) -> Array:
        """The semi-discrete right-hand side `L(y; nu) = A(y) + nu D y`."""
        del t
        nu = jnp.asarray(nu, y.dtype)
        out = jnp.zeros_like(y)
        for axis in range(self.grid.ndim):
            v = self._padded(y, axis)
            out = out + self._axis_hyperbolic(v, y, axis) + nu * self._axis_viscous(v, y, axis)
        return out

    def split_field(self, y: Array) -> tuple[Array, Array]:
        """`(A(y), D y)`: the hyperbolic part and the discrete Laplacian, from one padding."""
        hyperbolic, viscous = jnp.zeros_like(y), jnp.zeros_like(y)
        for axis in range(self.grid.ndim):
            v = self._padded(y, axis)
            hyperbolic = hyperbolic + self._axis_hyperbolic(v, y, axis)
            viscous = viscous + self._axis_viscous(v, y, axis)
        return hyperbolic, viscous

    def hyperbolic_field(self, y: Array) -> Array:
        """The hyperbolic part `A(y)` of the right-hand side (`L` with `nu = 0`)."""
        axes = range(self.grid.ndim)
        return sum(self._axis_hyperbolic(self._padded(y, k), y, k) for k in axes)

    def diffusion(self, y: Array) -> Array:
        """The discrete Laplacian `D y` with the boundary conditions (the viscous part of `L`
        divided by `nu`)."""
        axes = range(self.grid.ndim)
        return sum(self._axis_viscous(self._padded(y, k), y, k) for k in axes)

    def viscous_rate(self, nu: ArrayLike) -> Array:
        """`nu sum_k c / h_k^2`: the viscous limit of the forward-Euler step (`c` is half the
        largest eigenvalue of `-D` times `h^2`: 2 for the second-order stencil)."""
        c = self._viscous_stencil[self.order_of_viscous_term][2]
        return jnp.asarray(nu) * sum(c / h**2 for h in self.grid.spacing)

    def cfl_rate(self, y: Array, nu: ArrayLike) -> Array:
        """`sum_k max|f'| / h_k + nu sum_k c / h_k^2`: forward Euler is stable for
        `dt * rate <= 1`."""
        nu = jnp.asarray(nu, y.dtype)
        return self.hyperbolic_rate(y) + self.viscous_rate(nu)

    @property
    def periodic(self) -> bool:
        """Whether every axis is periodic: then `D` is circulant (block-circulant in `d >= 2`),
        diagonal in the discrete Fourier basis (`to_fourier`, `diffusion_symbol`)."""
        return all(self._boundary(k).periodic for k in range(self.grid.ndim))

    def to_fourier(self, y: Array) -> Array:
        """The real discrete Fourier transform of `y` over the grid axes (the trailing `d`;
        `jnp.fft.rfftn`), in which `D` is diagonal on periodic grids."""
        return jnp.fft.rfftn(y, axes=tuple(range(-self.grid.ndim, 0)))

    def from_fourier(self, y_hat: Array, dtype) -> Array:
        """The inverse of `to_fourier` (`jnp.fft.irfftn` over the grid axes), in `dtype`."""
        axes = tuple(range(-self.grid.ndim, 0))
        return jnp.fft.irfftn(y_hat, s=self.grid.shape, axes=axes).astype(dtype)

    def diffusion_symbol(self, dtype) -> Array:
        r"""The eigenvalues `lambda_k <= 0` of `D` on a periodic grid, in the layout of
        `to_fourier` (`D y = from_fourier(lambda * to_fourier(y))`): the transform of `D`
        applied to a unit impulse, i.e. of the discrete stencil (not of the continuous
        Laplacian), so that a Fourier solve inverts exactly the operator `L` uses. A constant of
        the grid, evaluated once at trace time."""
        if not self.periodic:
            raise ValueError(
                f"`D` is diagonal in the Fourier basis only on periodic grids, got boundary "
                f"{self.boundary!r}."
            )
        d = self.grid.ndim
        with jax.ensure_compile_time_eval():
            delta = jnp.zeros(self.state_shape, dtype).at[(..., *([0] * d))].set(1)
            column = self.diffusion(delta)
            column = column if column.ndim == d else column[0]
            return jnp.fft.rfftn(column, axes=tuple(range(-d, 0))).real

    def solve_diffusion(self, rhs: Array, a: ArrayLike) -> Array:
        r"""Solve `(I - a D) z = rhs` for `z`, `a >= 0` (the implicit stage of an IMEX step,
        `a = dt a_ii nu`).

        With periodic boundaries on every axis `D` is a circulant (block-circulant in `d >= 2`)
        matrix: the solve is diagonal in Fourier space, `z = F^{-1}(F rhs / (1 - a lambda))`,
        with the exact eigenvalues `lambda = F(D delta)` of the discrete stencil
        (`diffusion_symbol`). On a 1-D grid with the second-order stencil and any boundary,
        `D z = T z + D 0` with `T` tridiagonal (a ghost cell depends on the two edge cells),
        read off by applying `D` to three comb vectors, and the solve is lineax's tridiagonal
        (Thomas) solve. Both cost `O(n log n)` or `O(n)`; other cases raise a `ValueError`.
        """
        a = jnp.asarray(a, rhs.dtype)
        if self.periodic:
            symbol = self.diffusion_symbol(rhs.dtype)
            return self.from_fourier(self.to_fourier(rhs) / (1 - a * symbol), rhs.dtype)
        if self.grid.ndim == 1 and self._viscous_stencil[self.order_of_viscous_term][0] == 1:
            return self._tridiagonal_solve(rhs, a)
        raise ValueError(
            "an implicit viscous solve needs periodic boundaries on every axis, or a 1-D grid "
            f"with `viscous_order=2` (got a {self.grid.ndim}-D grid, boundary "
            f"{self.boundary!r}, viscous order {self.order_of_viscous_term}): use an explicit "
            "solver such as `SSPRK3()` here."
        )

    def _tridiagonal_solve(self, rhs, a):
        n = self.grid.shape[0]
        if n < 3:
            raise ValueError(f"an implicit viscous solve needs at least 3 cells, got {n}.")
        offset = self.diffusion(jnp.zeros_like(rhs))
        index = jnp.arange(n)
        # Column j of T is in T e_{j mod 3} (rows j-1, j, j+1), e_c the comb of cells = c mod 3.
        combs = [self.diffusion((index % 3 == c).astype(rhs.dtype)) - offset for c in range(3)]
        columns = jnp.stack(combs)
        diagonal = columns[index % 3, index]
        lower = columns[index[:-1] % 3, index[1:]]  # T[j + 1, j]
        upper = columns[index[1:] % 3, index[:-1]]  # T[j, j + 1]
        operator = lx.TridiagonalLinearOperator(1 - a * diagonal, -a * lower, -a * upper)
        return lx.linear_solve(operator, rhs + a * offset, lx.Tridiagonal()).value

    def _boundary(self, axis: int) -> AbstractBoundary:
        b = self.boundary
        return b[axis] if isinstance(b, tuple) else b

    def _check_common(self):
        if not isinstance(self.grid, UniformGrid):
            raise TypeError(f"`grid` must be a `UniformGrid`, got {type(self.grid).__name__}.")
        if not isinstance(self.reconstruction, AbstractReconstruction):
            raise TypeError(
                "`reconstruction` must be an `AbstractReconstruction` (e.g. `WENO5()`), got "
                f"{self.reconstruction!r}."
            )
        bs = self.boundary if isinstance(self.boundary, tuple) else (self.boundary,)
        if isinstance(self.boundary, tuple) and len(bs) != self.grid.ndim:
            raise ValueError(
                f"give one boundary condition per axis: {self.grid.ndim} axes, {len(bs)} given."
            )
        if not all(isinstance(b, AbstractBoundary) for b in bs):
            raise TypeError(
                f"`boundary` must be `AbstractBoundary` modules, got {self.boundary!r}."
            )
        if self.viscous_order not in (None, 2, 4):
            raise ValueError(f"`viscous_order` must be 2, 4 or None, got {self.viscous_order}.")

    @property
    def order_of_viscous_term(self) -> int:
        """The order of the central viscous discretisation in use: `viscous_order`, or by
        default 4 with a reconstruction of order above 2 (WENO) and 2 otherwise.

        Measured on Burgers from `p0 = sin x`, `nu = 0.1`, to `t = 1.5` (past the shock time,
        a viscous shock of width ~`4 nu`) against Cole-Hopf, max error, with the work in cell
        updates (steps x cells; a step of either order costs the same up to the stencil):
        WENO5 with order 2: 7.6e-3 (64 cells, 7.3e3 updates), 1.9e-3 (128, 4.9e4),
        4.8e-4 (256, 3.6e5); with order 4: 8.3e-4 (64, 9.0e3), 5.4e-5 (128, 6.2e4),
        3.7e-6 (256, 4.6e5). At equal work order 4 is about 10x (128 cells) to 100x more
        accurate: the second-order viscous flux, not WENO, limits the accuracy. With a first- or
        second-order reconstruction the hyperbolic error dominates: MUSCL (van Leer) with order
        2: 1.8e-3 (128 cells, 4.9e4 updates), 5.1e-4 (256, 3.6e5); with order 4: 1.3e-3 (128,
        6.2e4), 2.8e-4 (256, 4.6e5), about the same accuracy at equal work (order 4 takes more
        steps: its viscous CFL constant is 8/3 instead of 2), so the simpler order 2 is kept
        there.
        """
        if self.viscous_order is not None:
            return self.viscous_order
        return 4 if self.reconstruction.order > 2 else 2


class Burgers(AbstractEquation):
    r"""Viscous Burgers `p_t + div F(p) = nu Lap p` by conservative finite volumes.

    In one dimension `p_t + f(p)_x = nu p_xx` (`f(p) = p^2 / 2` by default, any convex `f`), with
    `p` the `n` cell averages. In `d >= 2` dimensions `p = grad u` is a vector field of shape
    `(d, *grid.shape)` and the equation is the gradient of the Hamilton-Jacobi equation,
    `p_t + grad H(p) = nu Lap p` with `H(p) = sum_k f(p_k)` (equal to
    `p_t + (p . grad) p = nu Lap p` for curl-free `p` and `f(p) = p^2 / 2`).

    **The state is cell averages**, `p_i = h^{-1} int_{C_i} p(x) dx` over the cells
    `C_i = [x_{i-1/2}, x_{i+1/2}]` of the grid (not point values): start from
    `grid.cell_averages(p0)` and compare with exact cell averages (for `p = u_x`:
    `(u(x_{i+1/2}) - u(x_{i-1/2})) / h` from the potential at the faces `grid.faces()`). Point
    values differ from averages by `h^2 p'' / 24`, which caps a high-order scheme at second
    order. (`HamiltonJacobi` instead holds point values of `u` at the cell centres.)

    Semi-discretisation, cell `i`, axis `k`:
    `dp_i/dt = -(F_{i+1/2} - F_{i-1/2}) / h_k`, `F = F_num(p^-, p^+) - nu (dp/dx)_{i+1/2}`, with the
    face states `p^-`, `p^+` from `reconstruction`, a monotone numerical flux `F_num`, and a central
    face gradient of order `viscous_order`. Conservative: with periodic boundaries the total
    `sum_i p_i h` is constant to rounding.

    **Arguments:**

    - `grid`: a `UniformGrid`.
    - `flux`: the convex flux `f` (`Quadratic()` is Burgers').
    - `numerical_flux`: `Godunov()`, `EngquistOsher()` or `LocalLaxFriedrichs()` in 1-D;
        `LocalLaxFriedrichs()` in `d >= 2` (the vector system has no scalar Riemann solver).
    - `reconstruction`: `FirstOrder()`, `MUSCL(limiter)`, `WENO5()` or `WENO5Z()`. `WENO5Z`
        costs about as much as `WENO5` and is more accurate across a resolved viscous layer:
        `nu = 0.01`, `p0 = sin x + 1/2` to `t = 1.5`, IMEXSSP3, L1 error against Cole-Hopf
        2.05e-4, 1.78e-5, 4.84e-6 against WENO5's 3.66e-4, 4.67e-5, 1.27e-5 (N = 512, 768,
        1024).
    - `boundary`: one `AbstractBoundary` for every axis, or a tuple with one per axis.
    - `viscous_order`: 2 or 4, the order of the central viscous flux; by default (`None`) 4
        with a reconstruction of order above 2 (`WENO5`, `WENO5Z`: about 10x more accurate at
        equal work past the shock time) and 2 with `FirstOrder` or `MUSCL` (where order 4 only
        shortens the viscous time step). See `AbstractEquation.order_of_viscous_term` for the
        measurements.

    **Example:**

    ```python
    import jax.numpy as jnp
    from jaxstat.pde import Burgers, Godunov, UniformGrid, WENO5, solve

    grid = UniformGrid(0.0, 2 * jnp.pi, 512)
    burgers = Burgers(grid, numerical_flux=Godunov(), reconstruction=WENO5())
    sol = solve(burgers, grid.cell_averages(jnp.sin), jnp.array([0.0, 1.5]), nu=0.01)
    ```
    """

    grid: UniformGrid
    flux: AbstractConvexFlux = Quadratic()
    numerical_flux: AbstractNumericalFlux | None = None
    reconstruction: AbstractReconstruction = WENO5()
    boundary: AbstractBoundary | tuple[AbstractBoundary, ...] = Periodic()
    viscous_order: int | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        self._check_common()
        if not isinstance(self.flux, AbstractConvexFlux):
            raise TypeError(f"`flux` must be an `AbstractConvexFlux`, got {self.flux!r}.")
        nf = self._numerical_flux
        if not isinstance(nf, AbstractNumericalFlux):
            raise TypeError(
                "`numerical_flux` must be an `AbstractNumericalFlux` (e.g. `Godunov()`), "
                f"got {nf!r}."
            )
        if self.grid.ndim > 1 and not nf.solves_systems:
            raise TypeError(_NO_SYSTEM_SOLVER.format(d=self.grid.ndim, flux=nf))

    @property
    def _numerical_flux(self) -> AbstractNumericalFlux:
        if self.numerical_flux is not None:
            return self.numerical_flux
        return Godunov() if self.grid.ndim == 1 else LocalLaxFriedrichs()

    @property
    def state_shape(self):
        d = self.grid.ndim
        return self.grid.shape if d == 1 else (d, *self.grid.shape)

    @property
    def _ghost(self) -> int:
        return max(self.reconstruction.ghost, _FACE_GRADIENT[self.order_of_viscous_term][0])

    def _padded(self, y, axis):
        g, h = self._ghost, self.grid.spacing[axis]
        space_axis = y.ndim - self.grid.ndim + axis
        v = self._boundary(axis).pad(y, g, space_axis, h)
        return jnp.moveaxis(v, space_axis, -1)

    @property
    def _viscous_stencil(self):
        return _FACE_GRADIENT

    def _divergence(self, flux, y, axis):
        """`-(F_{i+1/2} - F_{i-1/2}) / h` from the face values `F` (last axis), in place."""
        div = (flux[..., 1:] - flux[..., :-1]) / self.grid.spacing[axis]
        return jnp.moveaxis(-div, -1, y.ndim - self.grid.ndim + axis)

    def _axis_hyperbolic(self, v, y, axis):
        a, b = self.reconstruction(_trim(v, self._ghost, self.reconstruction.ghost))
        if self.grid.ndim == 1:
            flux = self._numerical_flux(self.flux, a, b)
        else:
            flux = self._numerical_flux.system(self.flux, a, b, axis)
        return self._divergence(flux, y, axis)

    def _axis_viscous(self, v, y, axis):
        order = self.order_of_viscous_term
        trimmed = _trim(v, self._ghost, _FACE_GRADIENT[order][0])
        return -self._divergence(_face_gradient(trimmed, order, self.grid.spacing[axis]), y, axis)

    def hyperbolic_rate(self, y):
        if self.grid.ndim == 1:
            speeds = [jnp.max(jnp.abs(self.flux.derivative(y)))]
        else:
            speeds = [jnp.max(jnp.abs(self.flux.derivative(y[k]))) for k in range(self.grid.ndim)]
        return sum(s / h for s, h in zip(speeds, self.grid.spacing))


class HamiltonJacobi(AbstractEquation):
    r"""Viscous Hamilton-Jacobi `u_t + H(grad u) = nu Lap u` with a monotone numerical Hamiltonian.

    `H(p) = sum_k f(p_k)` is separable with a convex `f` (`Quadratic()`: `H = |p|^2 / 2`).

    **The state is point values** `u_i = u(x_i)` at the nodes `x_i`, the cell centres of the grid
    (`grid.centres()`, `grid.mesh()`), not cell averages: start from `u0(*grid.mesh())` and compare
    with exact point values there. (`Burgers` instead holds cell averages of `p = grad u`.)

    At node `i` the one-sided derivatives `p_k^-`, `p_k^+` come from `reconstruction` applied to the
    difference quotients `(u_{j+1} - u_j) / h_k` (with `WENO5` this is the WENO scheme of Jiang &
    Peng, 2000), and
    `du_i/dt = -sum_k F_num(p_k^-, p_k^+) + nu sum_k (d^2 u/dx_k^2)_i`
    with a central Laplacian of order `viscous_order`. A monotone `F_num` (Godunov, Engquist-Osher,
    local Lax-Friedrichs) converges to the viscosity solution when `nu = 0`.

    **Arguments:**

    - `grid`: a `UniformGrid` (1-D or 2-D, or more).
    - `hamiltonian`: the convex `f` with `H(p) = sum_k f(p_k)`.
    - `numerical_hamiltonian`: `Godunov()`, `EngquistOsher()` or `LocalLaxFriedrichs()`.
    - `reconstruction`: `FirstOrder()`, `MUSCL(limiter)`, `WENO5()` or `WENO5Z()`.
    - `boundary`: for the potential `u` (e.g. `Periodic()` or `Outflow(order=1)`).
    - `viscous_order`: 2 or 4, the order of the central Laplacian; by default (`None`) 4 with a
        reconstruction of order above 2, else 2 (as for `Burgers`).

    **Example:**

    ```python
    import jax.numpy as jnp
    from jaxstat.pde import HamiltonJacobi, UniformGrid, solve

    grid = UniformGrid((0.0, 0.0), (2 * jnp.pi, 2 * jnp.pi), (64, 64))
    hj = HamiltonJacobi(grid)
    x, y = grid.mesh()
    sol = solve(hj, -jnp.cos(x) - jnp.cos(y), jnp.array([0.0, 0.5]), nu=0.05)
    ```
    """

    grid: UniformGrid
    hamiltonian: AbstractConvexFlux = Quadratic()
    numerical_hamiltonian: AbstractNumericalFlux = Godunov()
    reconstruction: AbstractReconstruction = WENO5()
    boundary: AbstractBoundary | tuple[AbstractBoundary, ...] = Periodic()
    viscous_order: int | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        self._check_common()
        if not isinstance(self.hamiltonian, AbstractConvexFlux):
            raise TypeError(
                f"`hamiltonian` must be an `AbstractConvexFlux` (e.g. `Quadratic()`), got "
                f"{self.hamiltonian!r}."
            )
        if not isinstance(self.numerical_hamiltonian, AbstractNumericalFlux):
            raise TypeError(
                "`numerical_hamiltonian` must be an `AbstractNumericalFlux` (e.g. `Godunov()`), "
                f"got {self.numerical_hamiltonian!r}."
            )

    @property
    def state_shape(self):
        return self.grid.shape

    @property
    def _ghost(self) -> int:
        return max(self.reconstruction.ghost, _LAPLACIAN[self.order_of_viscous_term][0])

    def _padded(self, u, axis):
        v = self._boundary(axis).pad(u, self._ghost, axis, self.grid.spacing[axis])
        return jnp.moveaxis(v, axis, -1)

    @property
    def _viscous_stencil(self):
        return _LAPLACIAN

    def _axis_hyperbolic(self, v, y, axis):
        h = self.grid.spacing[axis]
        differences = jnp.diff(_trim(v, self._ghost, self.reconstruction.ghost), axis=-1) / h
        p_minus, p_plus = self.reconstruction(differences)
        hamiltonian = self.numerical_hamiltonian(self.hamiltonian, p_minus, p_plus)
        return jnp.moveaxis(-hamiltonian, -1, axis)

    def _axis_viscous(self, v, y, axis):
        order = self.order_of_viscous_term
        trimmed = _trim(v, self._ghost, _LAPLACIAN[order][0])
        return jnp.moveaxis(_laplacian(trimmed, order, self.grid.spacing[axis]), -1, axis)

    def hyperbolic_rate(self, y):
        rate = 0
        for axis, h in enumerate(self.grid.spacing):
            differences = jnp.diff(self._padded(y, axis), axis=-1) / h
            rate = rate + jnp.max(jnp.abs(self.hamiltonian.derivative(differences))) / h
        return rate
