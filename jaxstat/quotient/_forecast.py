r"""Forecasting a training-phase transition as the shock of an inviscid Burgers characteristic.

**The effective model.** A coarse-grained observable `q(t)` of training (the test loss, an
orbit-minimal weight norm, ...; `t` the step) is taken to move at a rate proportional to the
gradient `w` of an inviscid Burgers field along one characteristic. The Burgers equation
`u_t + u u_x = 0` carries `w = u_x` along a characteristic by

    dw/dt = -w^2,      w(t) = w_0 / (1 + w_0 t) = 1 / (t - t*),      t* = -1 / w_0,

which blows up (a shock forms) at the finite time `t*` when `w_0 < 0`. With `dq/dt = -A w`,

    q(t) = c - A log(t* - t),        t < t*,

so `1 / (dq/dt) = (t* - t) / A` falls linearly to zero at `t*`: the rate of `q` diverges as
`A / (t* - t)`, increasing `q` for `A > 0` and decreasing it for `A < 0`. The forecast transition
time is the shock time `t*`.

**The fit.** On a window of the past, `(t_j, q_j)`, `j = 1..n` (only data at or before the time
the forecast is issued), the model is linear in `(c, A)` for fixed `t*`, so `t*` is found by
profiling: for each candidate `t*` on a geometric grid of horizons `t* - t_n` the closed-form least
squares fit of `q_j ~ c - A log(t* - t_j)` gives the residual sum of squares `RSS(t*)`; the
estimate minimises it. As `t* -> infinity` the model tends to a straight line
(`-log(t* - t) = -log t* + t / t* + O(t^2 / t*^2)`), so a forecast is issued only when

    F = (RSS_line - RSS(t*_hat)) / (RSS(t*_hat) / (n - 3)) > detection,

the blow-up explains the window significantly better than a straight line, and `t*_hat` is not at
the far end of the grid. The interval is the profile-likelihood interval
`{t*: (RSS(t*) - RSS(t*_hat)) / sigma^2 <= chi^2_1(level)}`, `sigma^2 = RSS(t*_hat) / (n - 3)`
(Gaussian independent residuals); an end at the grid's far end is reported as `+inf`.
`forecast_series` issues such a forecast at every step of a recorded run from the `window`
points before it, so each forecast uses only the past.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float


class Forecast(eqx.Module):
    """A shock-time forecast.

    **Fields:** `time` (`t*`, `+inf` where none is issued), `lower`, `upper` (the interval;
    `upper = +inf` where the data cannot bound it), `amplitude` (`A`), `statistic` (the `F`
    statistic against a straight line), `issued` (whether a forecast is issued).
    """

    time: Float[Array, "*batch"]
    lower: Float[Array, "*batch"]
    upper: Float[Array, "*batch"]
    amplitude: Float[Array, "*batch"]
    statistic: Float[Array, "*batch"]
    issued: Bool[Array, "*batch"]


def _chi2_1(level: float) -> float:
    """The `level` quantile of the chi-squared law with one degree of freedom."""
    from scipy.stats import chi2

    return float(chi2.ppf(level, 1))


def _fit_line(x, y):
    """Least squares of `y ~ a + b x`: the residual sum of squares and the slope."""
    xm, ym = jnp.mean(x), jnp.mean(y)
    dx, dy = x - xm, y - ym
    sxx = jnp.sum(dx**2)
    b = jnp.sum(dx * dy) / jnp.where(sxx > 0, sxx, 1)
    return jnp.sum((dy - b * dx) ** 2), b


@eqx.filter_jit
def forecast_shock(
    t: Float[ArrayLike, " n"],
    q: Float[ArrayLike, " n"],
    *,
    max_horizon: Float[ArrayLike, ""],
    min_horizon: Float[ArrayLike, ""] | None = None,
    num_grid: int = 1000,
    level: float = 0.9,
    detection: float = 20.0,
) -> Forecast:
    r"""Forecast the shock time `t*` of `q(t) = c - A log(t* - t)` from the points `(t_j, q_j)`.

    See the module docstring for the model, the profile fit and the interval.

    **Arguments:**

    - `t`, `q`: the window of the past (increasing times, at least 5 points).
    - `max_horizon`: the farthest candidate `t* - t_n` (beyond it: no forecast).
    - `min_horizon`: the nearest candidate `t* - t_n` (default: the mean spacing of `t` / 10).
    - `num_grid`: candidates, geometric in the horizon (static).
    - `level`: the interval's nominal coverage (static).
    - `detection`: the `F` statistic a blow-up must reach against a straight line (static).

    **Returns:** a `Forecast`. Jittable and vmappable over windows.

    **Example:**

    ```python
    import jax.numpy as jnp
    from jaxstat.quotient import forecast_shock

    t = jnp.arange(0.0, 80.0); q = -jnp.log1p(-t / 100.0)
    forecast_shock(t, q, max_horizon=1e4).time  # about 100
    ```
    """
    t = jnp.asarray(t)
    q = jnp.asarray(q, t.dtype if jnp.issubdtype(t.dtype, jnp.floating) else None)
    t = t.astype(q.dtype)
    if t.ndim != 1 or q.shape != t.shape:
        raise ValueError(
            f"`t` and `q` must be 1-D of the same length, got {t.shape} and {q.shape}."
        )
    n = t.shape[0]
    if n < 5:
        raise ValueError(f"a forecast needs at least 5 points in the window, got {n}.")
    if not (0 < level < 1):
        raise ValueError(f"`level` must lie in (0, 1), got {level!r}.")
    if not isinstance(num_grid, int) or num_grid < 3:
        raise ValueError(f"`num_grid` must be an int >= 3, got {num_grid!r}.")
    t = eqx.error_if(t, jnp.any(jnp.diff(t) <= 0), "the times of the window must increase.")
    q = eqx.error_if(q, ~jnp.all(jnp.isfinite(q)), "the observable has non-finite values.")
    span = t[-1] - t[0]
    if min_horizon is None:
        min_horizon = span / (n - 1) / 10
    lo = jnp.asarray(min_horizon, q.dtype)
    hi = jnp.asarray(max_horizon, q.dtype)
    hi = eqx.error_if(hi, ~(hi > lo) | ~(lo > 0), "need 0 < `min_horizon` < `max_horizon`.")
    horizons = jnp.exp(jnp.linspace(jnp.log(lo), jnp.log(hi), num_grid))
    # Centre the times for conditioning: the fit is invariant to shifting t and t* together.
    t_rel = t - t[-1]

    def rss(h):
        x = -jnp.log(h - t_rel)  # t* - t_j = h + (t_n - t_j)
        r, a = _fit_line(x, q)
        return r, a

    rss_grid, amp_grid = jax.vmap(rss)(horizons)
    rss_line, _ = _fit_line(t_rel, q)
    best = jnp.argmin(rss_grid)
    rss_min = rss_grid[best]
    tiny = jnp.finfo(q.dtype).tiny
    sigma2 = jnp.maximum(rss_min / (n - 3), tiny)
    statistic = (rss_line - rss_min) / sigma2
    inside = (rss_grid - rss_min) / sigma2 <= _chi2_1(level)
    idx = jnp.arange(num_grid)
    first = jnp.min(jnp.where(inside, idx, num_grid - 1))
    last = jnp.max(jnp.where(inside, idx, 0))
    issued = (statistic > detection) & (best < num_grid - 1)
    inf = jnp.asarray(jnp.inf, q.dtype)
    time = jnp.where(issued, t[-1] + horizons[best], inf)
    lower = jnp.where(issued, t[-1] + horizons[first], inf)
    upper = jnp.where(issued & (last < num_grid - 1), t[-1] + horizons[last], inf)
    return Forecast(
        time=time,
        lower=lower,
        upper=upper,
        amplitude=amp_grid[best],
        statistic=statistic,
        issued=issued,
    )


def forecast_series(
    t: Float[ArrayLike, " T"],
    q: Float[ArrayLike, " T"],
    *,
    window: int,
    max_horizon: float,
    start: int | None = None,
    **kwargs,
) -> Forecast:
    r"""Online forecasts along a recorded run: at each index `i >= start` (default `window - 1`),
    `forecast_shock` on the points `i - window + 1 .. i`, so the forecast issued at `t_i` uses
    only the past.

    **Arguments:** `t`, `q`: the recorded times and observable; `window`: points per fit;
    `max_horizon`: as in `forecast_shock`; other keywords go to `forecast_shock`.

    **Returns:** a `Forecast` whose fields have one entry per index from `start` (earlier indices
    have no forecast: `time = inf`, `issued = False`).
    """
    t = np.asarray(t, dtype=np.float64 if jax.config.jax_enable_x64 else np.float32)
    q = np.asarray(q, dtype=t.dtype)
    if t.ndim != 1 or q.shape != t.shape:
        raise ValueError(
            f"`t` and `q` must be 1-D of the same length, got {t.shape} and {q.shape}."
        )
    if not isinstance(window, int) or window < 5:
        raise ValueError(f"`window` must be an int >= 5, got {window!r}.")
    start = window - 1 if start is None else start
    if start < window - 1:
        raise ValueError(f"`start` must be at least `window - 1` = {window - 1}, got {start}.")
    size = len(t)
    if start >= size:
        raise ValueError(f"the series has {size} points, fewer than `start + 1` = {start + 1}.")
    ends = np.arange(start, size)
    index = ends[:, None] + np.arange(-window + 1, 1)[None, :]
    fit = jax.vmap(lambda tt, qq: forecast_shock(tt, qq, max_horizon=max_horizon, **kwargs))
    out = fit(jnp.asarray(t[index]), jnp.asarray(q[index]))
    pad = start

    def padded(x, fill):
        return jnp.concatenate([jnp.full((pad,), fill, x.dtype), x])

    inf = math.inf
    return Forecast(
        time=padded(out.time, inf),
        lower=padded(out.lower, inf),
        upper=padded(out.upper, inf),
        amplitude=padded(out.amplitude, 0.0),
        statistic=padded(out.statistic, 0.0),
        issued=padded(out.issued, False),
    )


def threshold_crossing(
    t: Float[ArrayLike, " T"],
    q: Float[ArrayLike, " T"],
    *,
    threshold: float,
    window: int,
) -> Float[Array, " T"]:
    r"""The baseline forecast: the time the straight line fitted to the last `window` points of
    `q` reaches `threshold` (Omnigrok: generalisation when the weight norm falls to a level).

    At index `i` the line `q ~ a + b t` fitted on points `i - window + 1 .. i` gives
    `t_c = t_i + (threshold - q_hat(t_i)) / b` when it moves towards the threshold (else `+inf`);
    `t_i` itself when `q_i` is already past it. The threshold is an input: it must come from
    elsewhere (other runs, or theory), which is information the shock fit does not use.

    **Returns:** one forecast per index (`+inf` before `window - 1` and where none is issued).
    """
    t = np.asarray(t, dtype=float)
    q = np.asarray(q, dtype=float)
    if t.ndim != 1 or q.shape != t.shape:
        raise ValueError(
            f"`t` and `q` must be 1-D of the same length, got {t.shape} and {q.shape}."
        )
    if not isinstance(window, int) or window < 2:
        raise ValueError(f"`window` must be an int >= 2, got {window!r}.")
    out = np.full(t.shape, np.inf)
    start_side = np.sign(q[0] - threshold)
    for i in range(window - 1, len(t)):
        tt, qq = t[i - window + 1 : i + 1], q[i - window + 1 : i + 1]
        b, a = np.polyfit(tt - tt[-1], qq, 1)
        if np.sign(qq[-1] - threshold) != start_side:
            out[i] = t[i]
        elif b != 0 and np.sign(threshold - a) == np.sign(b):
            out[i] = t[i] + (threshold - a) / b
    return jnp.asarray(out)
