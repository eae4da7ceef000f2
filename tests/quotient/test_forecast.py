"""Shock-time forecasts: exact inviscid Burgers characteristics with noise, series without blow-up,
coverage of the profile-likelihood interval, causality, the threshold baseline, bad input."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstat.quotient import forecast_series, forecast_shock, threshold_crossing


def burgers_observable(t, t_star, amplitude=1.0, offset=0.0):
    r"""`q = c - A log(t* - t)` shifted so that `q(0) = c`: the integral of `dq/dt = -A w` along a
    characteristic of `u_t + u u_x = 0`, where `w = u_x` solves `dw/dt = -w^2`,
    `w = w_0 / (1 + w_0 t)`, `w_0 = -1 / t*`."""
    w0 = -1.0 / t_star

    def w(s):
        return w0 / (1 + w0 * s)

    # check the characteristic law by central differences before using its integral
    h = 1e-5
    assert np.allclose((w(t + h) - w(t - h)) / (2 * h), -(w(t) ** 2), rtol=1e-6)
    return offset - amplitude * np.log1p(-t / t_star)


_fit = jax.jit(jax.vmap(lambda t, q: forecast_shock(t, q, max_horizon=1e4)))


@pytest.mark.parametrize("amplitude", [1.0, -0.5])
def test_forecast_converges_to_shock_time(amplitude):
    """Noiseless exact characteristic: the forecast equals `t*` to the grid's resolution from
    every window; with noise the error shrinks as the window's end approaches `t*`."""
    t_star = 100.0
    t = np.arange(0.0, 95.0)
    q = burgers_observable(t, t_star, amplitude)
    for end in (40, 60, 80, 95):
        f = forecast_shock(t[end - 30 : end], q[end - 30 : end], max_horizon=1e4)
        assert bool(f.issued)
        horizon = t_star - t[end - 1]
        # the geometric grid of 1000 horizons over 7 decades has ratio 1.016
        assert abs(float(f.time) - t_star) < 0.02 * horizon
        assert np.sign(float(f.amplitude)) == np.sign(amplitude)
    rng = np.random.default_rng(0)
    errors = []
    for end in (50, 70, 90):
        noisy = q[None, end - 40 : end] + 0.02 * abs(amplitude) * rng.normal(size=(100, 40))
        times = np.asarray(_fit(np.broadcast_to(t[end - 40 : end], noisy.shape), noisy).time)
        errors.append(np.median(np.abs(times - t_star)))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 2.0


def test_interval_coverage():
    """The 90% profile-likelihood interval covers `t*` in about 90% of 400 noisy replicates
    (binomial standard deviation 1.5%; the band allows the grid and the asymptotics)."""
    t_star = 100.0
    t = np.arange(50.0, 90.0)
    q = burgers_observable(np.arange(0.0, 90.0), t_star)[50:]
    noisy = q + 0.02 * np.random.default_rng(1).normal(size=(400, t.size))
    f = _fit(np.broadcast_to(t, noisy.shape), noisy)
    assert np.all(np.asarray(f.issued))
    covered = (np.asarray(f.lower) <= t_star) & (t_star <= np.asarray(f.upper))
    assert 0.84 <= covered.mean() <= 0.96


@pytest.mark.parametrize("kind", ["line", "saturating", "noise", "decelerating"])
def test_no_forecast_without_blow_up(kind):
    """Series with no finite-time blow-up: a forecast is issued in at most 2% of 200 replicates."""
    t = np.arange(0.0, 60.0)
    shapes = {
        "line": 0.01 * t,
        "saturating": 1 - np.exp(-t / 20),
        "noise": 0 * t,
        "decelerating": np.log1p(t / 5),
    }
    noisy = shapes[kind] + 0.02 * np.random.default_rng(2).normal(size=(200, t.size))
    f = _fit(np.broadcast_to(t, noisy.shape), noisy)
    assert np.mean(np.asarray(f.issued)) <= 0.02
    assert np.all(np.isinf(np.asarray(f.time)[~np.asarray(f.issued)]))


def test_series_uses_only_the_past():
    """Changing the series after index `i` leaves the forecasts issued at indices `<= i` alone;
    the online forecasts approach `t*`."""
    t_star = 200.0
    t = np.arange(0.0, 190.0)
    q = burgers_observable(t, t_star) + 0.01 * np.random.default_rng(3).normal(size=t.size)
    a = forecast_series(t, q, window=40, max_horizon=1e4)
    changed = q.copy()
    changed[150:] = 0.0
    b = forecast_series(t, changed, window=40, max_horizon=1e4)
    np.testing.assert_array_equal(np.asarray(a.time)[:150], np.asarray(b.time)[:150])
    assert not np.array_equal(np.asarray(a.time)[150:], np.asarray(b.time)[150:])
    assert np.all(np.isinf(np.asarray(a.time)[:39]))
    late = np.asarray(a.time)[170:]
    assert np.all(np.abs(late - t_star) < 5.0)


def test_threshold_crossing():
    """The straight-line baseline: `q = 10 - 0.1 t` reaches 4 at `t = 60` from every window."""
    t = np.arange(0.0, 80.0)
    q = 10 - 0.1 * t
    out = np.asarray(threshold_crossing(t, q, threshold=4.0, window=5))
    np.testing.assert_allclose(out[4:61], 60.0, rtol=1e-10)
    np.testing.assert_array_equal(out[61:], t[61:])  # already past: issued at once
    assert np.all(np.isinf(out[:4]))
    assert np.all(
        np.isinf(np.asarray(threshold_crossing(t, 10 + 0.1 * t, threshold=4.0, window=5)))
    )


def test_bad_input():
    t = jnp.arange(10.0)
    with pytest.raises(ValueError, match="at least 5 points"):
        forecast_shock(t[:4], t[:4], max_horizon=10.0)
    # the jaxtyping shape check of the test suite answers first (a TypeError); without it, ours
    with pytest.raises((ValueError, TypeError)):
        forecast_shock(t, t[:5], max_horizon=10.0)
    with pytest.raises(ValueError, match="level"):
        forecast_shock(t, t, max_horizon=10.0, level=1.5)
    with pytest.raises(ValueError, match="window"):
        forecast_series(t, t, window=3, max_horizon=10.0)
    fit = eqx.filter_jit(lambda t, q: forecast_shock(t, q, max_horizon=10.0).time)
    with pytest.raises(eqx.EquinoxRuntimeError, match="must increase"):
        fit(t[::-1], t)
    with pytest.raises(eqx.EquinoxRuntimeError, match="non-finite"):
        fit(t, t.at[3].set(jnp.nan))
    with pytest.raises(eqx.EquinoxRuntimeError, match="max_horizon"):
        forecast_shock(t, t, max_horizon=-1.0)
