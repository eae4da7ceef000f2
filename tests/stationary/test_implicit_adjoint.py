"""The stationary solve's implicit adjoint (`jaxstat._implicit.ImplicitAdjoint`): the same
derivatives as optimistix's implicit adjoint and as the closed form of a linear layer, in forward
and reverse mode and to second order, and a failed adjoint solve raises."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optimistix as optx
import pytest

import jaxstat.graphs as jg
import jaxstat.stationary as js
from jaxstat import GMRES
from jaxstat._implicit import ImplicitAdjoint


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _problem():
    graph = jg.random_graph(jr.key(0), 60, 240)
    source = jr.normal(jr.key(1), (60, 2))
    return graph, source


def test_linear_layer_gradient_is_the_resolvent_closed_form():
    """Quadratic model `F = (L_w + mu) psi - s`: d/ds of `<c, psi*>` is `(L_w + mu)^{-1} c` and
    d/dw_e of it is `-lambda^T (dL/dw_e) psi*`, checked with a dense numpy solve."""
    graph, source = _problem()
    mu = 0.7
    model = js.GradientModel(js.Quadratic(mu))
    c = jr.normal(jr.key(2), source.shape)

    def loss(w, s):
        g = eqx.tree_at(lambda g: g.weights, graph, w)
        return jnp.vdot(c, js.solve(model, g, s, stability=None).value)

    gw, gs = jax.grad(loss, argnums=(0, 1))(graph.weights, source)
    H = np.asarray(graph.as_dense()) + mu * np.eye(60)
    psi = np.linalg.solve(H, np.asarray(source))
    lam = np.linalg.solve(H.T, np.asarray(c))
    np.testing.assert_allclose(gs, lam, rtol=1e-8, atol=1e-10)
    # dL/dw_e for the edge (i, j): the Laplacian block [[1, -1], [-1, 1]] on (i, j).
    i, j = np.asarray(graph.senders), np.asarray(graph.receivers)
    dpsi = psi[i] - psi[j]
    dlam = lam[i] - lam[j]
    np.testing.assert_allclose(gw, -np.sum(dlam * dpsi, axis=1), rtol=1e-8, atol=1e-10)


# The reference adjoint (optimistix's) and ours, with the same tight inner GMRES.
REFERENCE = optx.ImplicitAdjoint(linear_solver=GMRES(rtol=1e-12, atol=0.0))
OURS = ImplicitAdjoint(linear_solver=GMRES(rtol=1e-12, atol=0.0))


def _case(kind):
    """A loss `sum |psi*(s)|^3` of a gradient (symmetric Jacobian) or driven-damped (complex,
    non-symmetric) solve, as a function of the source and the adjoint; the source; a direction."""
    graph, source = _problem()
    if kind == "gradient":
        model = js.GradientModel(js.Quartic(1.0, 0.5))
    else:
        model = js.DrivenDampedModel(gamma=0.5, kappa=0.3)
        source = source * (1 + 0.5j)

    def loss(s, adjoint):
        psi = js.solve(model, graph, s, adjoint=adjoint, stability=None).value
        return jnp.sum(jnp.abs(psi) ** 3)

    return loss, source, jr.normal(jr.key(3), source.shape).astype(source.dtype)


@pytest.mark.parametrize(
    "kind", [pytest.param("gradient", marks=pytest.mark.slow), "driven-damped"]
)
def test_forward_and_reverse_agree_with_optimistix(kind):
    """Against optimistix's implicit adjoint; the driven-damped Jacobian is not symmetric, so a
    transposed solve done with the untransposed Jacobian fails here (the symmetric gradient case
    runs with -m slow)."""
    loss, source, v = _case(kind)
    g_ref = jax.grad(loss)(source, REFERENCE)
    g = jax.grad(loss)(source, OURS)
    np.testing.assert_allclose(g, g_ref, rtol=1e-9, atol=1e-12)
    _, t = jax.jvp(lambda s: loss(s, OURS), (source,), (v,))
    np.testing.assert_allclose(t, jnp.real(jnp.vdot(g_ref, v)), rtol=1e-9)


@pytest.mark.slow
def test_second_order_agrees_with_optimistix():
    """A Hessian-vector product (forward over reverse) through both adjoints, driven-damped."""
    loss, source, v = _case("driven-damped")
    hvp = lambda adj: jax.jvp(lambda s: jax.grad(loss)(s, adj), (source,), (v,))[1]  # noqa: E731
    np.testing.assert_allclose(hvp(OURS), hvp(REFERENCE), rtol=1e-7, atol=1e-10)


def test_failed_adjoint_solve_raises_under_jit():
    graph, source = _problem()
    model = js.GradientModel(js.Quartic(1.0, 0.5))
    starved = ImplicitAdjoint(linear_solver=GMRES(rtol=1e-30, atol=0.0, max_steps=2))

    @eqx.filter_jit
    def grad(s):
        return jax.grad(lambda s: jnp.sum(js.solve(model, graph, s, adjoint=starved).value ** 2))(s)

    with pytest.raises(Exception, match="maximum number of solver steps"):
        jax.block_until_ready(grad(source))
