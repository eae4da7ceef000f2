"""The penalized global relaxation: its stationary state, penalized adjoint and gradient, and
their `O(1/mu)` convergence to the exact ones."""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optimistix as optx
import pytest
from jax.flatten_util import ravel_pytree

import jaxstat.supragraph as sg

from .networks import case, dense_jacobian, flat, rel_err


MUS = np.logspace(2, 4, 5)  # two decades (slow suite: three)


def _slope(mus, errs):
    return float(np.polyfit(np.log(mus), np.log(errs), 1)[0])


@pytest.mark.parametrize(
    "name, mus",
    [
        ("kerr", MUS),
        pytest.param("kerr", np.logspace(2, 5, 7), marks=pytest.mark.slow),
        pytest.param("quartic", np.logspace(2, 5, 7), marks=pytest.mark.slow),
    ],
)
def test_penalized_state_adjoint_and_gradient_converge_at_rate_one_over_mu(name, mus):
    """Fit `log error = a + p log mu` over `mu = 1e2 .. 1e4` (slow: `1e5`): theory says `p = -1`
    for the state `Psi_mu`, the penalized adjoint `lam_mu = mu F(Psi_mu)` and the gradient read
    off it. Band `[-1.1, -0.9]`: the next term of the expansion is `O(1/mu^2)`, which at `mu >= 1e2`
    moves the fitted slope by far less than 0.1 (measured: within 0.01 of -1)."""
    net, x, target, loss = case(name)
    exact = sg.gradient(net, x, loss, target)
    errs = {"state": [], "adjoint": [], "gradient": []}
    lead = []
    for mu in mus:
        pen = sg.penalized_solve(net, x, loss, mu, target)
        assert pen.result == sg.RESULTS.successful
        errs["state"].append(rel_err(pen.value, exact.states))
        errs["adjoint"].append(rel_err(pen.adjoint, exact.adjoint))
        errs["gradient"].append(rel_err(pen.grads, exact.grads))
        lead.append(mu * (flat(sg.pack_states(pen.value)) - flat(sg.pack_states(exact.states))))
    slopes = {k: _slope(mus, v) for k, v in errs.items()}
    print(f"{name}: fitted slopes {slopes}")
    for k, p in slopes.items():
        assert -1.1 < p < -0.9, (k, p, errs[k])
    # Leading order: mu (Psi_mu - Psi*) -> J(Psi*)^{-1} lam*, itself at rate O(1/mu).
    J = dense_jacobian(net, exact.states, x)
    coeff = jnp.linalg.solve(J, flat(sg.pack_states(exact.adjoint)))
    lead_errs = [float(jnp.linalg.norm(c - coeff) / jnp.linalg.norm(coeff)) for c in lead]
    assert lead_errs[-1] < 1e-2
    assert -1.2 < _slope(mus, lead_errs) < -0.8


def test_penalized_adjoint_solves_the_adjoint_equation_at_psi_mu():
    """`J(Psi_mu)^T lam_mu = -grad l(Psi_mu)`, checked with the dense Jacobian at `Psi_mu`."""
    net, x, target, loss = case("kerr")
    mu = 1e3
    pen = sg.penalized_solve(net, x, loss, mu, target)
    J = dense_jacobian(net, pen.value, x)
    grad_l = jax.grad(lambda y: 0.5 * jnp.sum(loss(sg.unpack_states(y), target) ** 2))(
        sg.pack_states(pen.value)
    )
    lam = flat(sg.pack_states(pen.adjoint))
    scale = float(jnp.abs(flat(grad_l)).max())
    # Newton stops at max |grad Phi_mu| <= 1e-10; rounding of mu F adds ~ mu eps.
    np.testing.assert_allclose(J.T @ lam, -flat(grad_l), atol=1e-9 * scale)
    assert float(pen.stationarity) < 1e-9 * scale
    # lam_mu = mu F(Psi_mu), and F(Psi_mu) = O(1/mu) is not zero.
    f = net.residual(pen.value, x)
    np.testing.assert_allclose(flat(pen.adjoint), mu * flat(f), rtol=1e-12)
    assert 1e-6 < float(pen.residual) < 1e-1
    np.testing.assert_allclose(pen.loss, 0.5 * jnp.sum(loss(pen.value, target) ** 2), rtol=1e-13)
    # `penalty_objective` is `Phi_mu`, stationary at `Psi_mu`.
    phi = sg.penalty_objective(net, x, loss, mu, target)
    np.testing.assert_allclose(phi(pen.value), pen.objective, rtol=1e-12)
    g = jax.grad(lambda y: phi(sg.unpack_states(y)))(sg.pack_states(pen.value))
    assert float(jnp.abs(flat(g)).max()) < 1e-9 * scale


@pytest.mark.slow
def test_linear_network_closed_form():
    """Affine `F(Psi) = J Psi + F(0)`, quadratic loss `1/2 |P Psi - t|^2`: the stationary point
    solves the dense normal equations `(P^T P + mu J^T J) Psi = P^T t - mu J^T F(0)`."""
    net, x, target, loss = case("linear")
    mu = 50.0
    pen = sg.penalized_solve(net, x, loss, mu, target)
    zero = net.zeros(x)
    J = dense_jacobian(net, zero, x)
    f0 = flat(sg.pack_states(net.residual(zero, x)))
    v0, unravel = ravel_pytree(sg.pack_states(zero))
    P = jax.jacfwd(lambda v: flat(loss(sg.unpack_states(unravel(v)), target)))(v0)
    rhs = P.T @ flat(target) - mu * J.T @ f0
    expect = jnp.linalg.solve(P.T @ P + mu * J.T @ J, rhs)
    np.testing.assert_allclose(flat(sg.pack_states(pen.value)), expect, rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_objective_and_other_solvers_agree():
    """A minimiser on `Phi_mu` and a least-squares solver on `(r, sqrt(mu) F)` reach the same
    stationary point as the default augmented Newton; `penalty_objective` is `Phi_mu`."""
    net, x, target, loss = case("quartic")
    mu = 30.0
    ref = sg.penalized_solve(net, x, loss, mu, target)
    phi = sg.penalty_objective(net, x, loss, mu, target)
    np.testing.assert_allclose(phi(ref.value), ref.objective, rtol=1e-12)
    g = jax.grad(lambda y: phi(sg.unpack_states(y)))(sg.pack_states(ref.value))
    assert float(jnp.abs(flat(g)).max()) < 1e-9
    for solver, tol in [
        (optx.GaussNewton(rtol=1e-12, atol=1e-12), 1e-9),
        # BFGS stops on small steps in y and f, not on the gradient: looser agreement.
        (optx.BFGS(rtol=1e-12, atol=1e-12), 1e-6),
    ]:
        pen = sg.penalized_solve(net, x, loss, mu, target, solver=solver, max_steps=2000)
        assert rel_err(pen.value, ref.value) < tol, type(solver).__name__


@pytest.mark.slow
def test_non_convergence_is_reported():
    net, x, target, loss = case("kerr")
    with pytest.raises(Exception, match="maximum number of steps"):
        sg.penalized_solve(net, x, loss, 10.0, target, max_steps=1)


def test_failure_paths():
    net, x, target, loss = case("kerr")
    for mu in (0.0, -1.0, jnp.ones(2), 1j):
        with pytest.raises(ValueError, match="mu must be"):
            sg.penalized_solve(net, x, loss, mu, target)
    traced = eqx.filter_jit(lambda mu: sg.penalized_solve(net, x, loss, mu, target).value)
    with pytest.raises(Exception, match="mu must be positive"):
        traced(jnp.array(-1.0))
    with pytest.raises(TypeError, match="residual form"):
        sg.penalized_solve(
            net,
            x,
            lambda s, t: jnp.sum(jnp.abs(s[-1]) ** 2),
            10.0,
            solver=optx.GaussNewton(1e-8, 1e-8),
        )
    # Our TypeError, or jaxtyping's (a TypeError naming `solver`) under runtime type checking.
    with pytest.raises(TypeError, match="solver"):
        sg.penalized_solve(net, x, loss, 10.0, target, solver=lx.GMRES(1e-8, 1e-8))
    with pytest.raises(ValueError, match="shaped like the states"):
        sg.penalized_solve(net, x, loss, 10.0, target, adjoint0=(jnp.zeros((12, 3)),) * 2)
    with pytest.raises(Exception, match="not finite"):
        sg.penalized_solve(net, x.at[0, 0].set(jnp.nan), loss, 10.0, target)
