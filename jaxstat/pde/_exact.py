r"""Exact solutions: Cole-Hopf (viscous), Hopf-Lax (inviscid), Riemann problems, local entropy.

For `H(p) = |p|^2 / 2` the viscous Hamilton-Jacobi equation `u_t + |grad u|^2 / 2 = nu Lap u` is
linearised by Cole-Hopf, `u = -2 nu log phi`, `phi_t = nu Lap phi`, `phi_0 = exp(-u_0 / (2 nu))`:

`u(x, t) = -2 nu log[(4 pi nu t)^{-d/2} int exp(-(u_0(y) + |x - y|^2 / (2 t)) / (2 nu)) dy]`,
`p = grad u = int (x - y) / t w(y) dy / int w(y) dy` (`w` the integrand), which also solves
Burgers `p_t + (p . grad) p = nu Lap p`. The same integral is the local entropy of a loss `f`,
`F(x) = -1/beta log int exp(-beta f(y) - beta gamma / 2 |x - y|^2) dy = u(x, 1/gamma)
- d / (2 beta) log(2 pi / (beta gamma))` with `nu = 1 / (2 beta)`.

The integrals are computed by the trapezoidal rule on a window `y = x + s`, `|s_k| <= half_width`,
in log-sum-exp form. The integrand is smooth and, when the window is wide enough, negligible at
its edges, so the rule converges geometrically: to machine precision in float64 once the node
spacing resolves the narrowest peak of the integrand, of width about
`sqrt(2 nu t / (1 + t max u_0''))`. The window must contain the minimiser of
`u_0(y) + |x - y|^2 / (2 t)` with a margin of several `sqrt(4 nu t)`: for bounded `p_0`,
`half_width >= t max|p_0| + 10 sqrt(nu t)` suffices. Both conditions are checked on the
computed integrand, and a quadrature that cannot reach its accuracy raises instead of returning
a wrong value (see `cole_hopf`).

In one dimension the points may be given as a vector `x` of shape `(n,)` and the datum as a
function of a scalar; otherwise points have shape `(..., d)` and functions take a `(d,)` vector.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, ArrayLike, Float

from .._checks import is_concrete, raise_if
from .._jit import jit
from ._flux import AbstractConvexFlux, Quadratic


def _nodes(half_width, num_nodes: int, d: int, dtype):
    """Trapezoidal nodes `s` of shape `(num_nodes^d, d)` on `[-W, W]^d` and their log-weights."""
    if num_nodes < 3:
        raise ValueError(f"`num_nodes` must be at least 3, got {num_nodes}.")
    unit = jnp.linspace(-1.0, 1.0, num_nodes, dtype=dtype)
    edge = np.ones(num_nodes)
    edge[0] = edge[-1] = 0.5
    grids = jnp.meshgrid(*([unit] * d), indexing="ij")
    s = jnp.stack([g.reshape(-1) for g in grids], axis=-1) * half_width
    w1 = np.log(edge)
    logw = sum(np.meshgrid(*([w1] * d), indexing="ij")).reshape(-1)
    h = 2 * half_width / (num_nodes - 1)
    return s, jnp.asarray(logw, dtype) + d * jnp.log(h)


def _check_points(x, name="x"):
    """Points as an array of shape `(..., d)`, and whether they were given as scalars (1-D
    problems: `x` of shape `()` or `(n,)` means `n` points on the line)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"`{name}` must be real floating point, got {x.dtype}.")
    scalar_points = x.ndim <= 1
    return (x[..., None] if scalar_points else x), scalar_points


def _point_function(fn, name: str, d: int, dtype):
    """`fn` as a function of a point of shape `(d,)` returning a scalar. In 1-D a function of a
    scalar (`lambda y: y**2`) is accepted too: it is called on `y[0]`."""
    vector = jax.ShapeDtypeStruct((d,), dtype)
    try:
        if jax.eval_shape(fn, vector).shape == ():
            return fn
    except Exception:  # noqa: BLE001 - any failure: try the scalar form below
        if d != 1:
            raise
    if d == 1:
        try:
            if jax.eval_shape(fn, jax.ShapeDtypeStruct((), dtype)).shape == ():
                return lambda y: fn(y[0])
        except Exception:  # noqa: BLE001 - reported below in the library's words
            pass
    raise ValueError(
        f"`{name}` must map a point of shape ({d},) to a scalar"
        + (" (in 1-D a function of a scalar is accepted too)." if d == 1 else ".")
    )


def _map_points(fn, x, scalars, batch_size):
    """Apply `fn(x_i, *scalars_i)` to every point of `x` (shape `(..., d)`), with the scalars
    broadcast to the batch shape `x.shape[:-1]`."""
    batch = x.shape[:-1]
    scalars = [jnp.broadcast_to(jnp.asarray(c, x.dtype), batch).reshape(-1) for c in scalars]
    flat = x.reshape(-1, x.shape[-1])
    out = jax.lax.map(lambda args: fn(*args), (flat, *scalars), batch_size=batch_size)
    return jax.tree_util.tree_map(lambda o: o.reshape(*batch, *o.shape[1:]), out)


# The quadrature's checks (see `_smoothed`): the integrand on the window's edge relative to its
# peak, and the Gaussian's width relative to the node spacing. A Gaussian of standard deviation
# `sigma` is integrated by the trapezoidal rule of spacing `h` with relative error about
# `2 exp(-2 pi^2 sigma^2 / h^2)`: 5e-9 at `sigma = h`.
_WINDOW_MESSAGE = (
    "`half_width` is too small: the integrand is not negligible on the edge of the quadrature "
    "window (its value there exceeds sqrt(eps) times its peak), so the result would be wrong. "
    "Use `half_width >= t max|grad u_0| + 10 sqrt(nu t)` (local entropy: "
    "`max|grad f| / gamma + 10 / sqrt(2 beta gamma)`)."
)
_RESOLUTION_MESSAGE = (
    "`num_nodes` is too small: the node spacing `2 half_width / (num_nodes - 1)` exceeds the "
    "width of the integrand's peak (the heat kernel's `sqrt(2 nu t)`, local entropy: "
    "`1 / sqrt(beta gamma)`, narrower where the datum is convex), so the trapezoidal rule cannot "
    "resolve it. Increase `num_nodes` or, if the window is wider than needed, reduce `half_width`."
)


def _smoothed(f, x, beta, gamma, half_width, num_nodes, batch_size, checked=None, throw=True):
    """`(-1/beta log int exp(-beta (f(y) + gamma/2 |x - y|^2)) dy, gamma <x - y>)` at points x.

    Raises (through `eqx.error_if`) where the window truncates the integrand or the nodes do not
    resolve its peak, at the points where `checked` (default: all). With `throw=False` nothing
    is raised in the program: the two failure flags (scalars, window truncated / peak
    unresolved) are returned after the values, for the caller to raise (`_raise_quadrature`)."""
    d = x.shape[-1]
    s, logw = _nodes(half_width, num_nodes, d, x.dtype)
    sq = 0.5 * jnp.sum(s * s, axis=-1)
    edge = jnp.any(jnp.abs(s) >= half_width * (1 - 1e-6), axis=-1)
    log_tol = 0.5 * jnp.log(jnp.finfo(x.dtype).eps)
    h = 2 * half_width / (num_nodes - 1)

    def one(xi, beta_i, gamma_i):
        values = jax.vmap(f)(xi + s)
        exponent = -beta_i * (values + gamma_i * sq) + logw
        log_integral = jax.nn.logsumexp(exponent)
        weights = jax.nn.softmax(exponent)
        peak = jnp.max(exponent)
        truncated = jnp.max(jnp.where(edge, exponent, -jnp.inf)) - peak > log_tol
        # The node weights of a resolved Gaussian peak are at most h / (sqrt(2 pi) sigma_eff),
        # (1 / sqrt(2 pi))^d where sigma_eff = h; the kernel's own width sigma = (beta gamma)^-1/2.
        unresolved = (h * h * beta_i * gamma_i > 1) | (jnp.max(weights) > (2 * jnp.pi) ** (-d / 2))
        return -log_integral / beta_i, -gamma_i * (weights @ s), truncated, unresolved

    value, grad, truncated, unresolved = _map_points(one, x, (beta, gamma), batch_size)
    if checked is not None:
        truncated, unresolved = truncated & checked, unresolved & checked
    truncated, unresolved = jnp.any(truncated), jnp.any(unresolved)
    if not throw:
        return value, grad, truncated, unresolved
    value = eqx.error_if(value, truncated, _WINDOW_MESSAGE)
    value = eqx.error_if(value, unresolved, _RESOLUTION_MESSAGE)
    return value, grad


def _raise_quadrature(value, truncated, unresolved):
    """`value`, after raising where the quadrature failed (`_smoothed`'s flags; `raise_if`)."""
    value = raise_if(value, truncated, _WINDOW_MESSAGE)
    return raise_if(value, unresolved, _RESOLUTION_MESSAGE)


def _check_batch(name, value, batch):
    value = jnp.asarray(value)
    if jnp.issubdtype(value.dtype, jnp.complexfloating):
        raise TypeError(f"`{name}` must be real, got {value.dtype}.")
    try:
        jnp.broadcast_shapes(value.shape, batch)
    except ValueError:
        raise ValueError(
            f"`{name}` of shape {value.shape} does not broadcast against the points' batch "
            f"shape {batch}."
        ) from None
    return value


@jit(arrays=("t", "nu"))
def cole_hopf(
    u0,
    x: Float[ArrayLike, "*points d"] | Float[ArrayLike, " n"],
    t: Float[ArrayLike, "..."],
    nu: Float[ArrayLike, "..."],
    *,
    half_width: float,
    num_nodes: int = 1025,
    batch_size: int | None = 256,
) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
    r"""The exact solution of viscous HJ / Burgers from `u_0` by Cole-Hopf (heat-kernel quadrature).

    `u(x, t) = -2 nu log[(4 pi nu t)^{-d/2} int exp(-(u_0(y) + |x - y|^2 / (2 t)) / (2 nu)) dy]`
    solves `u_t + |grad u|^2 / 2 = nu Lap u`, and `p = grad u` (computed as the weighted mean of
    `(x - y) / t`) solves Burgers `p_t + (p . grad) p = nu Lap p` with `p_0 = grad u_0`.

    **Arguments:**

    - `u0`: the initial potential, a function of one point `y` of shape `(d,)` returning a scalar
        (for periodic `p_0` with non-zero mean, `u_0` is periodic plus a linear part); in 1-D
        also a function of a scalar.
    - `x`: the points, shape `(..., d)`; in 1-D also shape `(n,)` (`n` points on the line, then
        `p` has shape `(n,)` too). A single point in `d >= 2` dimensions is `x[None]`.
    - `t`: the time, `t >= 0` (`t = 0` returns `u_0`, `grad u_0`); a scalar or an array
        broadcastable against the points' batch shape `x.shape[:-1]` (space-time evaluation).
    - `nu`: the viscosity, `nu > 0` (for `nu = 0` use `hopf_lax`); scalar or broadcastable.
    - `half_width`: the quadrature window `|y_k - x_k| <= half_width` (see the module docstring).
    - `num_nodes`: trapezoidal nodes per axis (`num_nodes^d` function evaluations per point).
    - `batch_size`: points evaluated together (bounds memory to `batch_size * num_nodes^d`).

    **Returns:**

    `(u, p)` of shapes `(...)` and `(..., d)` (`(n,)` and `(n,)` for 1-D points).

    **Raises** (through `eqx.error_if`, also under `jax.jit`) when the quadrature cannot be
    accurate: the integrand on the window's edge exceeds `sqrt(eps)` times its peak (the window
    truncates it: make `half_width >= t max|grad u_0| + 10 sqrt(nu t)`), or the node spacing
    `h = 2 half_width / (num_nodes - 1)` exceeds the kernel width `sqrt(2 nu t)`, or a node
    carries more than `(2 pi)^{-d/2}` of the integrand's mass (the peak, narrower than the kernel
    where `u_0` is convex, falls between nodes). Past these checks the relative error of the
    integral is below about `1e-8`; it reaches machine precision once `h <= sqrt(2 nu t) / 2`
    (the trapezoidal error of a Gaussian of width `sigma` is `2 exp(-2 pi^2 sigma^2 / h^2)`) and
    the window has the margin above.

    **Example:**

    ```python
    import jax.numpy as jnp
    from jaxstat.pde import cole_hopf

    x = jnp.linspace(0, 2 * jnp.pi, 128)
    u, p = cole_hopf(lambda y: -jnp.cos(y), x, 1.5, 0.05, half_width=4.0)
    ```
    """
    x, scalar_points = _check_points(x)
    batch = x.shape[:-1]
    d = x.shape[-1]
    u0 = _point_function(u0, "u0", d, x.dtype)
    t = _check_batch("t", t, batch).astype(x.dtype)
    nu = _check_batch("nu", nu, batch).astype(x.dtype)
    nu = eqx.error_if(nu, ~jnp.all(nu > 0), "`nu` must be positive (use `hopf_lax` for nu = 0).")
    t = eqx.error_if(t, ~jnp.all(t >= 0), "`t` must be non-negative.")
    t, nu = jnp.broadcast_to(t, batch), jnp.broadcast_to(nu, batch)
    t_safe = jnp.where(t > 0, t, 1)
    f, grad_f = _smoothed(
        u0, x, 1 / (2 * nu), 1 / t_safe, half_width, num_nodes, batch_size, checked=t > 0
    )
    u = f + nu * d * jnp.log(4 * jnp.pi * nu * t_safe)
    at_zero = _map_points(jax.value_and_grad(u0), x, (), batch_size)
    u = jnp.where(t > 0, u, at_zero[0])
    p = jnp.where((t > 0)[..., None], grad_f, at_zero[1])
    return u, (p[..., 0] if scalar_points else p)


def local_entropy(
    loss,
    x: Float[ArrayLike, "*points d"] | Float[ArrayLike, " n"],
    *,
    gamma: Float[ArrayLike, "..."],
    beta: Float[ArrayLike, "..."],
    half_width: float,
    num_nodes: int = 1025,
    batch_size: int | None = 256,
) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
    r"""The local entropy of a loss and its gradient, by heat-kernel quadrature.

    `F(x) = -1/beta log int exp(-beta f(y) - beta gamma / 2 |x - y|^2) dy` and
    `grad F(x) = gamma (x - <y>)`, `<.>` the mean under the Gibbs measure in the integrand.
    `F = u(x, 1/gamma) - d / (2 beta) log(2 pi / (beta gamma))`, `u` the viscous HJ solution
    (`cole_hopf`) with `nu = 1 / (2 beta)` started from `f`: local entropy at scope `gamma` is HJ
    at time `1 / gamma`.

    **Arguments:**

    - `loss`: `f`, a function of one point `y` of shape `(d,)` returning a scalar (in 1-D also a
        function of a scalar); the integrand must be negligible outside the window.
    - `x`: the points, shape `(..., d)`; in 1-D also `(n,)`.
    - `gamma`: the scope, `gamma > 0` (scalar or broadcastable against `x.shape[:-1]`).
    - `beta`: the inverse temperature, `beta > 0` (scalar or broadcastable).
    - `half_width`, `num_nodes`, `batch_size`: the quadrature (as in `cole_hopf`, with
        `sqrt(2 nu t) = 1 / sqrt(beta gamma)`; the same checks raise when it cannot be accurate).

    **Returns:**

    `(F, grad F)` of shapes `(...)` and `(..., d)` (`(n,)` and `(n,)` for 1-D points).

    **Raises:** `ValueError` when a concrete `gamma` or `beta` is not positive (inside `jit`,
    traced: `eqx.EquinoxRuntimeError` from the program); `eqx.EquinoxRuntimeError` when the
    quadrature cannot be accurate (the checks of `cole_hopf`). Called on concrete arrays, the
    compiled quadrature returns its failure flags and they are raised here, after the program:
    it then has no host callback, so JAX's persistent compilation cache can store it. Under a
    caller's `jit` or `vmap` the checks stay in the caller's program (`eqx.error_if`).

    **Example:**

    ```python
    import jax.numpy as jnp
    from jaxstat.pde import local_entropy

    x = jnp.linspace(-2, 2, 64)
    F, dF = local_entropy(lambda y: (y**2 - 1) ** 2, x, gamma=1.0, beta=10.0, half_width=4.0)
    ```
    """
    # Concrete `gamma`, `beta` are checked here (a `ValueError`), and then not in the program.
    checked = _host_positive(x, gamma=gamma, beta=beta)
    F, dF, truncated, unresolved = _local_entropy(
        loss,
        x,
        gamma=gamma,
        beta=beta,
        half_width=half_width,
        num_nodes=num_nodes,
        batch_size=batch_size,
        checked=checked,
    )
    return _raise_quadrature((F, dF), truncated, unresolved)


def _host_positive(x, **values) -> bool:
    """Raise `ValueError("`name` must be positive.")` for each of `values` that is concrete and
    not positive everywhere, compared in the dtype of the points `x` (as the program does).
    Returns whether all of them were checked (all concrete and real; complex values and
    non-float points are refused with a `TypeError` when the program is traced)."""
    if not is_concrete(x, tuple(values.values())):
        return False
    dtype = jnp.asarray(x).dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        return False
    arrays = {name: np.asarray(v) for name, v in values.items()}
    if any(jnp.issubdtype(a.dtype, jnp.complexfloating) for a in arrays.values()):
        return False
    for name, a in arrays.items():
        if not np.all(a.astype(dtype) > 0):
            raise ValueError(f"`{name}` must be positive.")
    return True


@jit(arrays=("gamma", "beta"))
def _local_entropy(loss, x, *, gamma, beta, half_width, num_nodes, batch_size, checked: bool):
    """`local_entropy` after its host checks, with the quadrature's failure flags returned
    (`(F, grad F, truncated, unresolved)`, raised by the caller); `checked=True` (static) when
    `gamma > 0`, `beta > 0` were checked on the host, so that the program does not repeat them."""
    x, scalar_points = _check_points(x)
    batch = x.shape[:-1]
    loss = _point_function(loss, "loss", x.shape[-1], x.dtype)
    gamma = _check_batch("gamma", gamma, batch).astype(x.dtype)
    beta = _check_batch("beta", beta, batch).astype(x.dtype)
    if not checked:
        gamma = eqx.error_if(gamma, ~jnp.all(gamma > 0), "`gamma` must be positive.")
        beta = eqx.error_if(beta, ~jnp.all(beta > 0), "`beta` must be positive.")
    F, dF, truncated, unresolved = _smoothed(
        loss, x, beta, gamma, half_width, num_nodes, batch_size, throw=False
    )
    return F, (dF[..., 0] if scalar_points else dF), truncated, unresolved


@jit(arrays=("t",))
def hopf_lax(
    u0,
    x: Float[ArrayLike, "*points d"] | Float[ArrayLike, " n"],
    t: Float[ArrayLike, "..."],
    *,
    half_width: float,
    num_nodes: int = 1025,
    hamiltonian: AbstractConvexFlux = Quadratic(),
    batch_size: int | None = 256,
) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
    r"""The viscosity solution of `u_t + H(grad u) = 0` by the Hopf-Lax formula.

    `u(x, t) = min_y [u_0(y) + t L((x - y) / t)]`, `L = H^*` (for separable `H = sum_k f(p_k)`,
    `L(q) = sum_k f^*(q_k)`; for `H = |p|^2 / 2`, `L(q) = |q|^2 / 2`), and `p = grad u =
    grad L((x - y^*) / t)`, the entropy solution of the conservation law (Lax-Oleinik). The
    minimiser is located on the quadrature grid of the window `|y_k - x_k| <= half_width` and
    refined by an optimistix Newton solve of `grad_y [...] = 0`; at shocks the global minimiser
    jumps between branches and `p` is discontinuous, `u` is not.

    **Arguments:**

    - `u0`: the initial potential, a function of a point `y` of shape `(d,)` returning a scalar
        (in 1-D also a function of a scalar).
    - `x`: the points, shape `(..., d)`; in 1-D also `(n,)`.
    - `t`: the time, `t >= 0` (scalar or broadcastable against `x.shape[:-1]`).
    - `half_width`, `num_nodes`: the search window and grid (per axis) for the minimiser; a grid
        minimiser on the window's edge raises (the true one may lie outside).
    - `hamiltonian`: the convex `f` of `H(p) = sum_k f(p_k)`.
    - `batch_size`: points evaluated together.

    **Returns:**

    `(u, p)` of shapes `(...)` and `(..., d)` (`(n,)` and `(n,)` for 1-D points).

    **Example:**

    ```python
    import jax.numpy as jnp
    from jaxstat.pde import hopf_lax

    x = jnp.linspace(0, 2 * jnp.pi, 128)
    u, p = hopf_lax(lambda y: -jnp.cos(y), x, 1.5, half_width=4.0)
    ```
    """
    x, scalar_points = _check_points(x)
    batch = x.shape[:-1]
    d = x.shape[-1]
    u0 = _point_function(u0, "u0", d, x.dtype)
    t = _check_batch("t", t, batch).astype(x.dtype)
    t = eqx.error_if(t, ~jnp.all(t >= 0), "`t` must be non-negative.")
    t = jnp.broadcast_to(t, batch)
    s, _ = _nodes(half_width, num_nodes, d, x.dtype)
    edge = jnp.any(jnp.abs(s) >= half_width * (1 - 1e-6), axis=-1)
    tol = 100 * jnp.finfo(x.dtype).eps

    def objective(y, xi, ti):
        return u0(y) + ti * jnp.sum(hamiltonian.conjugate((xi - y) / ti))

    def one(xi, ti):
        ti = jnp.where(ti > 0, ti, 1)
        values = jax.vmap(lambda si: objective(xi + si, xi, ti))(s)
        best = jnp.argmin(values)
        y_grid = xi + s[best]
        root = optx.root_find(
            lambda y, _: jax.grad(objective)(y, xi, ti),
            optx.Newton(rtol=tol, atol=tol),
            y_grid,
            max_steps=64,
            throw=False,
        )
        refined = objective(root.value, xi, ti)
        ok = (root.result == optx.RESULTS.successful) & (refined <= values[best])
        y_star = jnp.where(ok, root.value, y_grid)
        u = jnp.where(ok, refined, values[best])
        p = hamiltonian.inverse_derivative((xi - y_star) / ti)
        return u, p, edge[best]

    u, p, on_edge = _map_points(one, x, (t,), batch_size)
    u = eqx.error_if(
        u,
        jnp.any(on_edge & (t > 0)),
        "`half_width` is too small: the minimiser of `u_0(y) + t L((x - y) / t)` over the search "
        "window lies on its edge, so the true minimiser may lie outside it. Use `half_width` "
        "larger than `t max|H'(grad u_0)|` (for `H = |p|^2 / 2`: `t max|grad u_0|`).",
    )
    at_zero = _map_points(jax.value_and_grad(u0), x, (), batch_size)
    u = jnp.where(t > 0, u, at_zero[0])
    p = jnp.where((t > 0)[..., None], p, at_zero[1])
    return u, (p[..., 0] if scalar_points else p)


def rankine_hugoniot(
    left: Float[ArrayLike, "*shape"],
    right: Float[ArrayLike, "*shape"],
    flux: AbstractConvexFlux = Quadratic(),
) -> Float[Array, "*shape"]:
    r"""The Rankine-Hugoniot speed `s = (f(p_L) - f(p_R)) / (p_L - p_R)` (`f'(p_L)` if equal).

    **Example:** `rankine_hugoniot(1.0, 0.0)` is `0.5` for Burgers.
    """
    left, right = jnp.asarray(left), jnp.asarray(right)
    same = left == right
    denominator = jnp.where(same, 1, left - right)
    return jnp.where(same, flux.derivative(left), (flux(left) - flux(right)) / denominator)


@jit(arrays=("left", "right", "t"))
def riemann(
    left: Float[ArrayLike, ""],
    right: Float[ArrayLike, ""],
    x: Float[Array, "*points"],
    t: Float[ArrayLike, ""],
    flux: AbstractConvexFlux = Quadratic(),
) -> tuple[Float[Array, "*points"], Float[Array, "*points"]]:
    r"""The entropy solution of the Riemann problem `p_0 = left (x < 0), right (x > 0)`.

    For convex `f`: if `left > right`, a shock `p = left (x < s t), right (x > s t)` with the
    Rankine-Hugoniot speed `s`; if `left < right`, a rarefaction fan
    `p = clip((f')^{-1}(x / t), left, right)`. Also returns the potential `u` with `u_x = p`,
    `u(0, 0) = 0`, which solves `u_t + f(u_x) = 0` from `u_0 = max(left x, right x)`
    (rarefaction) or `min(left x, right x)` (shock): `u = max_{p in [left, right]} (p x - t f(p))`
    resp. `min_{p in {left, right}} (p x - t f(p))` (Hopf's formula). Differences of `u` give
    exact cell averages.

    **Arguments:**

    - `left`, `right`: the two states.
    - `x`: the points (any shape).
    - `t`: the time, `t >= 0`.
    - `flux`: the convex flux.

    **Returns:**

    `(u, p)`, both of the shape of `x`.

    **Example:** `riemann(1.0, 0.0, x, 1.0)` is a shock at `x = 1/2`.
    """
    x = jnp.asarray(x)
    dtype = jnp.result_type(x, float)
    a, b = jnp.asarray(left, dtype), jnp.asarray(right, dtype)
    t = jnp.asarray(t, dtype)
    t_safe = jnp.where(t > 0, t, 1)
    # Rarefaction (a <= b): the maximiser of p x - t f(p) over [a, b].
    lo, hi = jnp.minimum(a, b), jnp.maximum(a, b)
    xi = jnp.clip(x / t_safe, flux.derivative(lo), flux.derivative(hi))
    p_fan = jnp.clip(flux.inverse_derivative(xi), lo, hi)
    p_fan = jnp.where(t > 0, p_fan, jnp.where(x < 0, lo, hi))
    u_fan = p_fan * x - t * flux(p_fan)
    # Shock (a > b).
    ua, ub = a * x - t * flux(a), b * x - t * flux(b)
    u_shock = jnp.minimum(ua, ub)
    p_shock = jnp.where(ua <= ub, a, b)
    shock = a > b
    return jnp.where(shock, u_shock, u_fan), jnp.where(shock, p_shock, p_fan)
