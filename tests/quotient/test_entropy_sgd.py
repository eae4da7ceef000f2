"""Entropy-SGD as an optax transformation: closed forms on a quadratic, the wide-minimum test."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import jaxstat.quotient as jq


A = np.array([2.0, 0.5, 4.0])  # f = 1/2 sum_i a_i x_i^2


def _quadratic(params):
    return 0.5 * jnp.sum(jnp.asarray(A) * params["w"] ** 2) + 0.5 * A[0] * params["b"] ** 2


def _noiseless_mean(x, a, gamma, eta, alpha, steps):
    """mu after `steps` inner steps on f = a/2 x^2, from the linear recursion in closed form:
    x'_k = x* + r^k (x - x*), r = 1 - eta (a + gamma), x* = gamma x / (a + gamma), and
    mu_L = (1 - alpha)^L x + sum_k alpha (1 - alpha)^(L - k) x'_k."""
    star = gamma * x / (a + gamma)
    r = 1 - eta * (a + gamma)
    k = np.arange(1, steps + 1)[:, None]
    x_prime = star + r**k * (x - star)
    weights = alpha * (1 - alpha) ** (steps - k)
    return (1 - alpha) ** steps * x + np.sum(weights * x_prime, axis=0)


def test_noiseless_quadratic_closed_form():
    # With eps = 0 the update is gamma (x - mu) with mu from the recursion above (exact to
    # rounding), and for many steps mu tends to the Gibbs mean gamma x / (a + gamma). Scoping:
    # the fourth update uses gamma_0 (1 + gamma_1)^3.
    gamma0, gamma1, eta, alpha, steps = 0.7, 0.5, 0.1, 0.75, 30
    params = {"w": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array(0.3)}
    opt = jq.entropy_sgd(
        langevin_steps=steps,
        gamma=gamma0,
        scoping=gamma1,
        inner_learning_rate=eta,
        thermal_noise=0.0,
        averaging=alpha,
    )
    state = opt.init(params)
    a = np.concatenate([A, A[:1]])
    x = np.concatenate([np.asarray(params["w"]), [0.3]])
    for k in range(4):
        gamma = gamma0 * (1 + gamma1) ** k
        updates, state = opt.update(None, state, params, value_fn=_quadratic)
        got = np.concatenate([updates["w"], [updates["b"]]])
        mu = _noiseless_mean(x, a, gamma, eta, alpha, steps)
        np.testing.assert_allclose(got, gamma * (x - mu), rtol=1e-12, atol=1e-14)
    # 30 steps, |r| <= 0.71: mu is the Gibbs mean to 0.71^30 ~ 4e-5 relative.
    np.testing.assert_allclose(got, gamma * x * a / (a + gamma), rtol=1e-4)
    assert int(state.count) == 4


def test_noise_mean_and_variance():
    # With noise the inner loop is linear in the Gaussian draws: over keys, the mean of the
    # update is the noiseless one and its variance is eta eps^2 gamma^2 sum_j (sum_{k >= j}
    # c_k r^(k - j))^2, c_k = alpha (1 - alpha)^(L - k). 512 keys: the sample variance is
    # within 30% (4 standard deviations of a chi-square with 511 degrees of freedom: 25%).
    gamma, eta, eps, alpha, steps = 1.0, 0.1, 0.5, 0.3, 20
    a, x = 2.0, 1.5
    opt = jq.entropy_sgd(
        langevin_steps=steps,
        gamma=gamma,
        scoping=0.0,
        inner_learning_rate=eta,
        thermal_noise=eps,
        averaging=alpha,
    )
    f = lambda p: 0.5 * a * p[0] ** 2
    params = jnp.array([x])

    def one(key):
        return opt.update(None, opt.init(params), params, value_fn=f, key=key)[0][0]

    samples = jax.vmap(one)(jr.split(jr.key(1), 512))
    r = 1 - eta * (a + gamma)
    k = np.arange(1, steps + 1)
    c = alpha * (1 - alpha) ** (steps - k)
    coeff = np.array([np.sum(c[j:] * r ** (k[j:] - k[j])) for j in range(steps)])
    variance = eta * eps**2 * gamma**2 * np.sum(coeff**2)
    mean = gamma * (x - _noiseless_mean(np.array([x]), a, gamma, eta, alpha, steps)[0])
    assert abs(float(jnp.mean(samples)) - mean) < 4 * np.sqrt(variance / 512)
    assert abs(float(jnp.var(samples)) / variance - 1) < 0.3


def _two_wells(params):
    # A sharp, deeper well at 0 (depth 1.2, width 0.1) and a wide one at 2.5 (depth 1, width 1).
    x = params["x"]
    return jnp.sum(-1.2 * jnp.exp(-(x**2) / (2 * 0.1**2)) - jnp.exp(-((x - 2.5) ** 2) / 2))


def _train(opt, x0, steps):
    params = {"x": jnp.array([x0])}

    def step(carry, _):
        params, state = carry
        grads = jax.grad(_two_wells)(params)
        updates, state = opt.update(grads, state, params, value_fn=_two_wells)
        return (optax.apply_updates(params, updates), state), params["x"][0]

    (params, _), path = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
    return params["x"][0], path


def test_entropy_sgd_settles_in_the_wide_minimum():
    # From x = 0.3, inside the sharp well's basin, SGD converges to the sharp minimum at 0.
    # Entropy-SGD with scope 0.3 and thermal noise 0.8 (beta = 2 / eps^2 ~ 3: the local entropy
    # of this loss is then monotone from 0 to the wide well, checked by quadrature) leaves it:
    # measured 16 of 16 keys end in [1.2, 3.2], the time-averaged position of the last 100
    # steps near 2.5. Eight keys, all must end outside the sharp basin, in the wide well.
    sgd_end, _ = jax.jit(lambda: _train(optax.sgd(0.005), 0.3, 300))()
    assert abs(float(sgd_end)) < 0.01

    def esgd(key):
        opt = optax.chain(
            jq.entropy_sgd(
                langevin_steps=100,
                gamma=0.3,
                scoping=1e-3,
                inner_learning_rate=0.01,
                thermal_noise=0.8,
                averaging=0.05,
                key=key,
            ),
            optax.sgd(1.0),
        )
        return _train(opt, 0.3, 300)

    ends, paths = jax.jit(jax.vmap(esgd))(jr.split(jr.key(0), 8))
    assert jnp.all(ends > 1.0), ends
    late = jnp.mean(paths[:, -100:])
    assert 2.0 < float(late) < 3.0, late


def test_extra_arguments_jit_and_scan():
    # A batch passed as an extra argument reaches value_fn; other extra arguments (for other
    # transformations of a chain) are not passed to it. jit and scan over steps agree with a loop.
    data = jnp.array([1.0, 2.0, 3.0])

    def loss(params, batch):
        return 0.5 * jnp.sum((params - batch) ** 2)

    opt = optax.chain(
        jq.entropy_sgd(langevin_steps=5, gamma=1.0, thermal_noise=0.02), optax.sgd(0.5)
    )
    params = jnp.zeros(3)

    def step(carry, _):
        params, state = carry
        updates, state = opt.update(params, state, params, value_fn=loss, batch=data, unrelated=1.0)
        return (optax.apply_updates(params, updates), state), params

    (scanned, _), _ = jax.jit(lambda c: jax.lax.scan(step, c, None, length=40))(
        (params, opt.init(params))
    )
    carry = (params, opt.init(params))
    jitted = jax.jit(step)
    for _ in range(40):
        carry, _ = jitted(carry, None)
    np.testing.assert_allclose(scanned, carry[0], rtol=1e-12)
    # f pulls towards the batch: the minimum of the local entropy of a quadratic is its minimum.
    np.testing.assert_allclose(scanned, data, atol=0.05)


def test_errors():
    with pytest.raises(ValueError, match="langevin_steps"):
        jq.entropy_sgd(langevin_steps=0)
    with pytest.raises(ValueError, match="gamma"):
        jq.entropy_sgd(gamma=0.0)
    with pytest.raises(ValueError, match="averaging"):
        jq.entropy_sgd(averaging=1.5)
    with pytest.raises(ValueError, match="thermal_noise"):
        jq.entropy_sgd(thermal_noise=-1.0)
    opt = jq.entropy_sgd()
    params = jnp.zeros(2)
    with pytest.raises(TypeError, match="value_fn"):
        opt.update(params, opt.init(params), params)
