"""Local entropy by Langevin chains against quadrature, and its viscous Hamilton-Jacobi link."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import jaxstat.pde as jp
import jaxstat.quotient as jq


def _double_well(y):
    return jnp.sum((y**2 - 1) ** 2)


def _coupled(y):  # a non-separable, non-Gaussian 2-D loss
    return 0.5 * (y[0] - 1) ** 2 * (y[0] + 1) ** 2 + 0.5 * y[1] ** 2 + 0.4 * y[0] * y[1]


def _periodic(y):
    return -jnp.cos(y[0]) + 0.3 * jnp.sin(2 * y[0])


def _exact(loss, x, gamma, beta):
    """(F, grad F, <x'>) by the trapezoidal rule (converged to ~1e-12 at these sizes)."""
    F, dF = jp.local_entropy(
        loss,
        x[None, :],
        gamma=gamma,
        beta=beta,
        half_width=7.0,
        num_nodes=401 if x.size > 1 else 2001,
    )
    return F[0], dF[0], x - dF[0] / gamma


@pytest.mark.parametrize(
    "loss,x",
    [(_double_well, jnp.array([0.3])), (_coupled, jnp.array([0.4, -0.2]))],
    ids=["1d", "2d"],
)
def test_gibbs_mean_and_gradient_against_quadrature(loss, x, getkey):
    # MALA has no discretisation bias: the estimate is within 4 standard errors of the
    # quadrature. Measured |error| / SE over 6 keys and both losses: at most 2.1.
    gamma, beta = 1.5, 4.0
    _, dF, mean = _exact(loss, x, gamma, beta)
    est = jq.local_entropy_gradient(
        loss,
        x,
        gamma=gamma,
        beta=beta,
        key=getkey(),
        step_size=0.1,
        num_steps=5000,
        num_chains=32,
        sampler=jq.MetropolisAdjustedLangevin(),
    )
    assert 0.5 < est.acceptance <= 1
    assert jnp.all(est.mean_stderr > 0) and jnp.all(est.mean_stderr < 0.02)
    assert jnp.all(jnp.abs(est.mean - mean) < 4 * est.mean_stderr), (
        est.mean,
        mean,
        est.mean_stderr,
    )
    assert jnp.all(jnp.abs(est.grad - dF) < 4 * est.grad_stderr)
    np.testing.assert_allclose(est.grad_stderr, gamma * est.mean_stderr)


def test_burn_in_is_discarded():
    """Chains started far from the Gibbs measure: with `f = a |y|^2 / 2` the mean is
    `gamma x / (a + gamma)` (= 5/11 here, from x = 5), reached only after a burn-in of a few
    relaxation times `1 / (eta (a + gamma))` ~ 45 steps. Averaging the burn-in too (the first
    steps instead of the last ones) would put the mean near 1.4."""
    x = jnp.array([5.0])
    est = jq.local_entropy_gradient(
        lambda y: 5.0 * jnp.sum(y**2),
        x,
        gamma=1.0,
        beta=50.0,
        key=jr.key(0),
        step_size=0.002,
        num_steps=200,
        burn_in=500,
        num_chains=64,
    )
    exact = 5.0 / 11.0
    # (Unadjusted Langevin's O(eta) bias on the mean of a Gaussian is zero; the tolerance is
    # the estimate's standard error.)
    assert abs(float(est.mean[0]) - exact) < 5 * float(est.mean_stderr[0])


def test_unadjusted_langevin_bias_is_first_order(getkey):
    # The unadjusted chain has an O(eta) bias in the mean, too small to resolve here: measured
    # error 0.023 +- 0.016 at eta = 0.05 (32 chains), so at eta = 0.01 the bias is below 0.01.
    x, gamma, beta = jnp.array([0.3]), 1.0, 4.0
    _, _, mean = _exact(_double_well, x, gamma, beta)
    est = jq.local_entropy_gradient(
        _double_well,
        x,
        gamma=gamma,
        beta=beta,
        key=getkey(),
        step_size=0.01,
        num_steps=20000,
        num_chains=32,
    )
    assert jnp.abs(est.mean - mean)[0] < 4 * est.mean_stderr[0] + 1e-2
    # For a quadratic loss the unadjusted chain's mean is exact at any step (the Gaussian
    # stationary law of the linear recursion is centred at gamma x / (a + gamma)).
    a, x2 = 3.0, jnp.array([1.0, -2.0])
    est = jq.local_entropy_gradient(
        lambda y: 0.5 * a * jnp.sum(y**2),
        x2,
        gamma=gamma,
        beta=beta,
        key=getkey(),
        step_size=0.2,
        num_steps=2000,
        num_chains=16,
    )
    assert jnp.all(jnp.abs(est.mean - gamma * x2 / (a + gamma)) < 4 * est.mean_stderr)


def test_value_by_thermodynamic_integration(getkey):
    # 1-D double well: F by integrating dF/dgamma = <|x - x'|^2> / 2 over the scope. Errors:
    # Monte Carlo (SE), quadrature in log s with 16 nodes over 3 decades and the head
    # t_0 g(t_0). Measured errors over three keys: 0.003, -0.003, -0.016 with SE ~0.009.
    x, gamma, beta = jnp.array([0.3]), 1.0, 4.0
    F, _, _ = _exact(_double_well, x, gamma, beta)
    est = jq.local_entropy_value(
        _double_well,
        x,
        gamma=gamma,
        beta=beta,
        key=getkey(),
        step_size=0.1,
        num_steps=2000,
        num_chains=16,
    )
    assert 0 < est.stderr < 0.02
    assert jnp.abs(est.value - F) < 4 * est.stderr + 5e-3, (est.value, F, est.stderr)


def test_value_of_a_quadratic_in_closed_form(getkey):
    # f = a/2 |y|^2 in d = 3: F = a gamma |x|^2 / (2 (a + gamma)) + d / (2 beta) log(beta (a +
    # gamma) / (2 pi)). g(s) is then linear in s, so the head t_0 g(t_0) is exact to O(t_0^2).
    a, gamma, beta = 2.0, 1.5, 5.0
    x = jnp.array([1.0, -0.5, 0.2])
    exact = a * gamma * jnp.sum(x**2) / (2 * (a + gamma)) + 3 / (2 * beta) * math.log(
        beta * (a + gamma) / (2 * math.pi)
    )
    est = jq.local_entropy_value(
        lambda y: 0.5 * a * jnp.sum(y**2),
        x,
        gamma=gamma,
        beta=beta,
        key=getkey(),
        step_size=0.1,
        num_steps=1000,
    )
    assert jnp.abs(est.value - exact) < 4 * est.stderr + 2e-3, (est.value, exact, est.stderr)


def test_hj_offset_and_the_hamilton_jacobi_solution():
    # u(x, t) = F(x; 1/t) + d / (2 beta) log(2 pi t / beta) solves u_t + u_x^2 / 2 = nu u_xx,
    # nu = 1 / (2 beta), u(., 0) = f. The finite-volume HJ solution (WENO5, fourth-order
    # viscous term, 64 cells, periodic f) against quadrature: measured max error 3e-5 at
    # t = 0.5 (c(t) itself is ~0.1).
    beta = 2.5
    nu = 1 / (2 * beta)
    grid = jp.UniformGrid(0.0, 2 * math.pi, 64)
    xs = grid.centres()
    ts = jnp.array([0.0, 0.25, 0.5, 1.0])
    sol = jp.solve(
        jp.HamiltonJacobi(grid, viscous_order=4), jax.vmap(lambda v: _periodic(v[None]))(xs), ts, nu
    )
    for k in range(1, len(ts)):
        t = float(ts[k])
        F, _ = jp.local_entropy(
            _periodic, xs[:, None], gamma=1 / t, beta=beta, half_width=8.0, num_nodes=1601
        )
        err = jnp.max(jnp.abs(sol.ys[k] - jq.hj_offset(t, beta, 1) - F))
        assert err < 1e-4, (t, err)


@pytest.mark.slow  # 25 s: three compiled Langevin estimators and an HJ solve
def test_langevin_estimates_solve_the_hamilton_jacobi_equation(getkey):
    # The Langevin value and gradient at three points and two scopes against the HJ solution
    # of the same loss (u - c(t) and its centred difference, O(h^2) ~ 1e-4 on 128 cells).
    beta = 2.5
    grid = jp.UniformGrid(0.0, 2 * math.pi, 128)
    xs = grid.centres()
    ts = jnp.array([0.0, 0.5, 1.0])
    sol = jp.solve(
        jp.HamiltonJacobi(grid, viscous_order=4),
        jax.vmap(lambda v: _periodic(v[None]))(xs),
        ts,
        1 / (2 * beta),
    )
    h = grid.spacing[0]
    idx = jnp.array([20, 64, 100])
    points = xs[idx][:, None]
    for k in (1, 2):
        t = float(ts[k])
        u = sol.ys[k]
        grad_u = (jnp.roll(u, -1) - jnp.roll(u, 1)) / (2 * h)
        keys = jr.split(getkey(), len(idx))
        grad = jax.vmap(
            lambda x, key: jq.local_entropy_gradient(
                _periodic,
                x,
                gamma=1 / t,
                beta=beta,
                key=key,
                step_size=0.1 * t,
                num_steps=1500,
                sampler=jq.MetropolisAdjustedLangevin(),
            )
        )(points, keys)
        assert jnp.all(jnp.abs(grad.grad[:, 0] - grad_u[idx]) < 4 * grad.grad_stderr[:, 0] + 1e-3)
        value = jq.local_entropy_value(
            _periodic,
            points[1],
            gamma=1 / t,
            beta=beta,
            key=getkey(),
            step_size=0.1 * t,
            num_steps=800,
        )
        target = u[idx[1]] - jq.hj_offset(t, beta, 1)
        assert jnp.abs(value.value - target) < 4 * value.stderr + 5e-3, (t, value, target)


def test_pytrees_vmap_and_jit(getkey):
    # A pytree point gives the same numbers as its flattened array (same key); vmap over points
    # equals a loop; works under jit with traced gamma.
    loss_flat = lambda y: _coupled(y)
    loss_tree = lambda p: _coupled(jnp.concatenate([p["a"], p["b"]]))
    x = jnp.array([0.4, -0.2])
    key = getkey()
    kwargs = dict(beta=4.0, key=key, step_size=0.1, num_steps=50, burn_in=10, num_chains=4)
    flat = jq.local_entropy_gradient(loss_flat, x, gamma=1.0, **kwargs)
    tree = jq.local_entropy_gradient(loss_tree, {"a": x[:1], "b": x[1:]}, gamma=1.0, **kwargs)
    np.testing.assert_allclose(
        jnp.concatenate([tree.grad["a"], tree.grad["b"]]), flat.grad, rtol=1e-12
    )
    np.testing.assert_allclose(
        jnp.concatenate([tree.mean_stderr["a"], tree.mean_stderr["b"]]),
        flat.mean_stderr,
        rtol=1e-12,
    )
    xs = jnp.array([[0.4, -0.2], [1.0, 0.3], [-0.7, 0.0]])
    batched = jax.vmap(lambda p: jq.local_entropy_gradient(loss_flat, p, gamma=1.0, **kwargs).grad)(
        xs
    )
    looped = jnp.stack(
        [jq.local_entropy_gradient(loss_flat, p, gamma=1.0, **kwargs).grad for p in xs]
    )
    np.testing.assert_allclose(batched, looped, rtol=1e-10, atol=1e-12)
    jitted = jax.jit(lambda g: jq.local_entropy_gradient(loss_flat, x, gamma=g, **kwargs).grad)(1.0)
    np.testing.assert_allclose(jitted, flat.grad, rtol=1e-12)


def test_float32_against_float64(getkey):
    x = jnp.array([0.4, -0.2])
    kwargs = dict(gamma=1.0, beta=4.0, key=getkey(), step_size=0.1, num_steps=200, num_chains=4)
    e64 = jq.local_entropy_gradient(_coupled, x, **kwargs)
    e32 = jq.local_entropy_gradient(_coupled, x.astype(jnp.float32), **kwargs)
    assert e32.grad.dtype == jnp.float32 and e32.grad_stderr.dtype == jnp.float32
    # The normal draws differ between dtypes, so the two are independent estimates of one mean.
    bound = 4 * jnp.sqrt(e32.grad_stderr.astype(float) ** 2 + e64.grad_stderr**2)
    assert jnp.all(jnp.abs(e32.grad - e64.grad) < bound)


def test_errors(getkey):
    x = jnp.array([0.3])
    kw = dict(beta=1.0, key=getkey(), step_size=0.1, num_steps=10, burn_in=0)
    with pytest.raises(ValueError, match="num_chains"):
        jq.local_entropy_gradient(_double_well, x, gamma=1.0, num_chains=1, **kw)
    with pytest.raises(TypeError, match="sampler"):
        jq.local_entropy_gradient(_double_well, x, gamma=1.0, sampler="mala", **kw)
    with pytest.raises(ValueError, match="num_scopes"):
        jq.local_entropy_value(_double_well, x, gamma=1.0, num_scopes=1, **kw)
    with pytest.raises(eqx.EquinoxRuntimeError, match="`gamma` must be positive"):
        eqx.filter_jit(lambda g: jq.local_entropy_gradient(_double_well, x, gamma=g, **kw).grad)(
            jnp.array(-1.0)
        )
    # Concrete values are checked on the host (a ValueError; the program then has no check),
    # traced ones inside the program.
    with pytest.raises(ValueError, match="^`beta` must be positive.$"):
        jq.local_entropy_gradient(_double_well, x, gamma=1.0, **{**kw, "beta": 0.0})
    with pytest.raises(ValueError, match="^`step_size` must be positive.$"):
        jq.local_entropy_gradient(_double_well, x, gamma=1.0, **{**kw, "step_size": jnp.nan})
    with pytest.raises(eqx.EquinoxRuntimeError, match="`beta` must be positive"):
        eqx.filter_jit(
            lambda b: jq.local_entropy_gradient(_double_well, x, gamma=1.0, **{**kw, "beta": b})
        )(jnp.array(0.0))
    # A step far above 2 / curvature: the chain blows up, reported instead of returning NaN.
    with pytest.raises(eqx.EquinoxRuntimeError, match="diverged"):
        jq.local_entropy_gradient(
            _double_well, jnp.array([3.0]), gamma=1.0, **{**kw, "step_size": 5.0, "num_steps": 200}
        )
    with pytest.raises(eqx.EquinoxRuntimeError, match="diverged"):
        eqx.filter_jit(
            lambda y: (
                jq.local_entropy_gradient(
                    _double_well, y, gamma=1.0, **{**kw, "step_size": 5.0, "num_steps": 200}
                ).grad
            )
        )(jnp.array([3.0]))
