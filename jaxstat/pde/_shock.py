r"""Shock diagnostics: formation time and place from initial data, detection in a solution.

Inviscid formation. Characteristics of `p_t + grad H(p) = 0` (`H(p) = sum_k f(p_k)`) are
straight lines `x = y + t f'(p_0(y))`; they first cross when the Jacobian
`I + t D(y) J(y)` becomes singular, `J = grad p_0 = Hess u_0`, `D = diag f''(p_0)`. Since
`D J` is similar to the symmetric `D^{1/2} J D^{1/2}`, the first crossing is at
`t* = 1 / max_y (-lambda_min(D^{1/2} J D^{1/2}))`, from the point `y*` of strongest compression,
and the shock appears at `x* = y* + t* f'(p_0(y*))`. In 1-D with Burgers' flux this is
`t* = 1 / max(-p_0')`; for `p_0 = sin x`, `t* = 1` at `x* = pi`.

Detection. A shock in a (viscous or numerical) solution `p_i` on a 1-D grid is a narrow
compressive layer: a contiguous run of faces whose drops `p_j - p_{j+1}` are at least a fraction
`tail` of the steepest one, no wider than `max_width` cells on either side, across which `p`
falls by at least `min_jump` (see `detect_shocks`). Its Rankine-Hugoniot speed
`(f(p_L) - f(p_R)) / (p_L - p_R)` can be compared with the speed measured between two snapshots
(`shock_speed`); the Lax entropy condition is `f'(p_L) > s > f'(p_R)`.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, ArrayLike, Bool, Float

from .._jit import jit
from ._boundary import AbstractBoundary, Periodic
from ._exact import rankine_hugoniot
from ._flux import AbstractConvexFlux, Quadratic
from ._grid import UniformGrid


class ShockFormation(eqx.Module):
    """When and where the first shock of inviscid data forms.

    **Attributes:**

    - `time`: `t* = 1 / max(-lambda_min)`; `inf` if the data never compress.
    - `position`: `x* = y* + t* f'(p_0(y*))`, where the shock appears (a scalar in 1-D).
    - `origin`: `y*`, the foot of the first crossing characteristics.
    - `rate`: `max(-lambda_min)`, the strongest compression rate of the initial data.
    """

    time: Float[Array, ""]
    position: Float[Array, "*d"]
    origin: Float[Array, "*d"]
    rate: Float[Array, ""]


@jit()
def shock_formation(
    p0,
    lower: float | tuple[float, ...],
    upper: float | tuple[float, ...],
    *,
    num_samples: int = 1024,
    flux: AbstractConvexFlux = Quadratic(),
) -> ShockFormation:
    r"""The inviscid shock formation time and place of initial data `p_0 = grad u_0`.

    `t* = 1 / max_y (-lambda_min(D^{1/2} J D^{1/2}))` with `J = grad p_0` (the Hessian of the
    initial loss `u_0`) and `D = diag f''(p_0)`; in 1-D with Burgers' flux `t* = 1 / max(-p_0')`.
    The maximum is located on a sample grid of the box and refined by optimistix BFGS.

    **Arguments:**

    - `p0`: in 1-D (`lower` a float) a scalar function of a scalar; in `d` dimensions (`lower` a
        tuple) a function from `(d,)` to `(d,)`, the gradient of the initial loss (e.g.
        `jax.grad(u0)`).
    - `lower`, `upper`: the box searched.
    - `num_samples`: sample points per axis (a total of `num_samples^d`).
    - `flux`: the convex flux `f` (`H = sum_k f(p_k)`).

    **Returns:**

    A `ShockFormation`.

    **Example:**

    ```python
    import jax.numpy as jnp
    from jaxstat.pde import shock_formation

    shock_formation(jnp.sin, 0.0, 2 * jnp.pi).time  # 1.0, at position pi
    ```
    """
    scalar = np.ndim(lower) == 0
    lower_a = jnp.atleast_1d(jnp.asarray(lower, dtype=float))
    upper_a = jnp.atleast_1d(jnp.asarray(upper, dtype=float))
    if lower_a.shape != upper_a.shape:
        raise ValueError("`lower` and `upper` must have the same number of entries.")
    d = lower_a.shape[0]
    field = (lambda y: jnp.atleast_1d(p0(y[0]))) if scalar else p0

    def compression(y):
        p = field(y)
        jac = jax.jacfwd(field)(y)
        jac = 0.5 * (jac + jac.T)
        curvature = jnp.vectorize(jax.grad(flux.derivative))(p)
        root = jnp.sqrt(jnp.maximum(curvature, 0))
        return jnp.linalg.eigvalsh(root[:, None] * jac * root[None, :])[0]

    axes = [jnp.linspace(lower_a[k], upper_a[k], num_samples) for k in range(d)]
    samples = jnp.stack([g.reshape(-1) for g in jnp.meshgrid(*axes, indexing="ij")], axis=-1)
    values = jax.vmap(compression)(samples)
    best = jnp.argmin(values)
    y_grid = samples[best]
    tol = 1e3 * jnp.finfo(samples.dtype).eps
    sol = optx.minimise(
        lambda y, _: compression(y),
        optx.BFGS(rtol=tol, atol=tol),
        y_grid,
        max_steps=256,
        throw=False,
    )
    refined = compression(sol.value)
    inside = jnp.all((sol.value >= lower_a) & (sol.value <= upper_a))
    ok = jnp.isfinite(refined) & (refined <= values[best]) & inside
    origin = jnp.where(ok, sol.value, y_grid)
    rate = -jnp.where(ok, refined, values[best])
    time = jnp.where(rate > 0, 1 / jnp.where(rate > 0, rate, 1), jnp.inf)
    position = origin + jnp.where(rate > 0, time, 0) * flux.derivative(field(origin))
    if scalar:
        origin, position = origin[0], position[0]
    return ShockFormation(time=time, position=position, origin=origin, rate=rate)


class Shocks(eqx.Module):
    """Shocks detected in a 1-D solution (fixed-size arrays of length `max_shocks`).

    **Attributes:**

    - `valid`: which entries are shocks (the others are padding, their values meaningless).
    - `position`: the shock positions (centroids of the drop).
    - `left`, `right`: the states `p_L`, `p_R` on either side, extrapolated to the position.
    - `strength`: `p_L - p_R`.
    - `speed`: the Rankine-Hugoniot speed `(f(p_L) - f(p_R)) / (p_L - p_R)`.
    - `entropic`: the Lax condition `f'(p_L) > speed > f'(p_R)`.
    """

    valid: Bool[Array, " k"]
    position: Float[Array, " k"]
    left: Float[Array, " k"]
    right: Float[Array, " k"]
    strength: Float[Array, " k"]
    speed: Float[Array, " k"]
    entropic: Bool[Array, " k"]


@jit(arrays=("min_jump",))
def detect_shocks(
    p: Float[Array, "*shape"],
    grid: UniformGrid,
    *,
    boundary: AbstractBoundary = Periodic(),
    max_shocks: int = 4,
    max_width: int = 32,
    tail: float = 0.01,
    min_jump: Float[ArrayLike, ""] | None = None,
    flux: AbstractConvexFlux = Quadratic(),
) -> Shocks:
    r"""Detect shocks in cell averages `p` of a 1-D solution: position, states, strength, speed.

    Let `d_j = p_j - p_{j+1}` be the drop across face `j`. Around a local maximum `d_i > 0`, the
    shock layer is the contiguous run of faces whose drops decrease outwards and stay above
    `tail d_i` (a valley between two adjacent shocks separates their layers); `i` is a shock if
    the layer is at most `max_width` faces on either side (a smooth compression wave is wider)
    and the total drop across it is at least `min_jump`. The
    position is the drop-weighted centroid of the layer's faces, the states `p_L`, `p_R` are
    extrapolated linearly from the two cells just outside the layer to the position (removing
    the smooth flanks' slope), the strength is `p_L - p_R` and the Rankine-Hugoniot speed is
    `(f(p_L) - f(p_R)) / (p_L - p_R)`. Works under `jit` and `vmap` (e.g. over `sol.ys`).

    **Arguments:**

    - `p`: cell averages on `grid`, shape `(n,)`.
    - `grid`: the 1-D `UniformGrid`.
    - `boundary`: the boundary condition of the solve (the equation's `boundary`): with
        `Periodic()` (default) the data wrap around; with any other the layers stop at the
        ends of the grid.
    - `max_shocks`: the number of slots returned (the steepest shocks first).
    - `max_width`: the largest half-width of a shock layer, in cells; a viscous layer of drop
        `D` has half-width about `12 nu / D` in space (to `tail = 0.01`).
    - `tail`: the drop, relative to the steepest, where a shock layer ends.
    - `min_jump`: the smallest drop `p_L - p_R` reported (default: 10% of `max p - min p`).
    - `flux`: the convex flux, for the Rankine-Hugoniot speed and the entropy condition.

    **Returns:**

    A `Shocks` with arrays of length `max_shocks`.

    **Example:**

    ```python
    import jax.numpy as jnp
    from jaxstat.pde import Burgers, UniformGrid, detect_shocks, solve

    grid = UniformGrid(0.0, 2 * jnp.pi, 512)
    sol = solve(Burgers(grid), jnp.sin(grid.centres()) + 0.5, jnp.array([0.0, 1.6]))
    shocks = detect_shocks(sol.ys[-1], grid)  # one shock, near pi + 0.8
    shocks.position[shocks.valid]
    ```
    """
    if grid.ndim != 1:
        raise ValueError("`detect_shocks` works on 1-D grids.")
    if isinstance(boundary, tuple) and len(boundary) == 1:
        (boundary,) = boundary
    if not isinstance(boundary, AbstractBoundary):
        raise TypeError(
            f"`boundary` must be an `AbstractBoundary` (e.g. `Periodic()`), got {boundary!r}."
        )
    periodic = boundary.periodic
    p = jnp.asarray(p)
    if p.shape != grid.shape:
        raise ValueError(f"`p` has shape {p.shape}, the grid {grid.shape}.")
    n, h, w = grid.shape[0], grid.spacing[0], max_width
    if n < 2 * w + 4:
        raise ValueError(f"need at least {2 * w + 4} cells for `max_width={w}`, got {n}.")
    if not 0 < tail < 1:
        raise ValueError(f"`tail` must be in (0, 1), got {tail}.")
    if min_jump is None:
        min_jump = 0.1 * (jnp.max(p) - jnp.min(p))

    faces = n if periodic else n - 1

    def cell(i):
        return p[i % n] if periodic else p[jnp.clip(i, 0, n - 1)]

    face = jnp.arange(faces)
    drops = cell(face) - cell(face + 1)
    offsets = jnp.arange(1, w + 1)

    def side(sign):
        # drops at faces i + sign k, k = 1..w; -inf outside a non-periodic domain.
        j = face[:, None] + sign * offsets[None, :]
        if periodic:
            return drops[j % faces]
        return jnp.where((j >= 0) & (j < faces), drops[jnp.clip(j, 0, faces - 1)], -jnp.inf)

    left, right = side(-1), side(1)
    threshold = tail * drops[:, None]

    def run(outward):
        # The layer continues while drops stay above the tail and keep decreasing outwards (a
        # valley between two adjacent shocks ends both layers).
        previous = jnp.concatenate([drops[:, None], outward[:, :-1]], axis=1)
        return jnp.cumprod((outward >= threshold) & (outward <= previous), axis=1)

    extent_left = jnp.sum(run(left), axis=1)  # faces of the layer left of face i
    extent_right = jnp.sum(run(right), axis=1)
    steepest = (drops >= left[:, 0]) & (drops > right[:, 0])
    narrow = (extent_left < w) & (extent_right < w)
    jump = cell(face - extent_left) - cell(face + extent_right + 1)
    candidate = (drops > 0) & steepest & narrow & (jump >= min_jump)
    top, index = jax.lax.top_k(jnp.where(candidate, drops, -jnp.inf), max_shocks)
    valid = jnp.isfinite(top)

    def describe(i):
        a, b = extent_left[i], extent_right[i]
        k = jnp.arange(-w, w + 1)
        inside = (k >= -a) & (k <= b)
        weights = jnp.where(inside, cell(i + k) - cell(i + k + 1), 0)
        shift = jnp.sum(weights * k * h) / jnp.maximum(jnp.sum(weights), jnp.finfo(p.dtype).tiny)
        # The states are read just outside the layer: cells i - a and i + b + 1. (Extrapolating
        # from there would pick up the layer's own tail slope, which exceeds the flanks'.)
        left_state, right_state = cell(i - a), cell(i + b + 1)
        position = grid.lower[0] + (i + 1) * h + shift
        if periodic:
            position = grid.lower[0] + jnp.mod(position - grid.lower[0], grid.lengths[0])
        return position, left_state, right_state

    position, left_state, right_state = jax.vmap(describe)(index)
    speed = rankine_hugoniot(left_state, right_state, flux)
    entropic = (flux.derivative(left_state) > speed) & (speed > flux.derivative(right_state))
    return Shocks(
        valid=valid,
        position=position,
        left=left_state,
        right=right_state,
        strength=left_state - right_state,
        speed=speed,
        entropic=entropic & valid,
    )


def shock_speed(
    before: Shocks,
    after: Shocks,
    dt: Float[ArrayLike, ""],
    *,
    period: float | None = None,
) -> tuple[Float[Array, " k"], Bool[Array, " k"]]:
    """The measured speed of each shock of `after`, matched to the nearest shock of `before`.

    **Arguments:**

    - `before`, `after`: `detect_shocks` results at times `t` and `t + dt`.
    - `dt`: the time between them.
    - `period`: the domain length for periodic data (distances are taken modulo it).

    **Returns:**

    `(speed, valid)`: the displacement over `dt` of each shock of `after`, and whether it had a
    valid match. Compare with `after.speed` (Rankine-Hugoniot).

    **Example:** `speed, ok = shock_speed(detect_shocks(p1, grid), detect_shocks(p2, grid), dt)`.
    """
    displacement = after.position[:, None] - before.position[None, :]
    if period is not None:
        displacement = displacement - period * jnp.round(displacement / period)
    distance = jnp.where(before.valid[None, :], jnp.abs(displacement), jnp.inf)
    match = jnp.argmin(distance, axis=1)
    valid = after.valid & jnp.isfinite(jnp.min(distance, axis=1))
    chosen = jnp.take_along_axis(displacement, match[:, None], axis=1)[:, 0]
    return jnp.where(valid, chosen / dt, 0.0), valid
