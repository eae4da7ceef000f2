"""`BlockTriangular`: the global system and its adjoint solved by block forward / back
substitution agree with the global Newton-GMRES, the dense solves, backpropagation through the
sequential layers, and finite differences; failures of a diagonal solve are reported."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxstat.stationary as js
import jaxstat.supragraph as sg

from .networks import case, dense_jacobian, flat, normal, reference, rel_err


BLOCK = sg.BlockTriangular()


def test_block_solve_and_adjoint_agree_with_the_global_newton_and_backprop():
    """Forward states against the global Newton-GMRES and the sequential pass; the adjoint
    `lam*` against the global GMRES adjoint; every parameter gradient and the input gradient
    against `jax.grad` through the sequential layers (float64, complex Kerr network)."""
    net, x, target, loss = case("kerr")
    seq_states, (g_net, g_x) = reference("kerr")
    sol = sg.solve(net, x, solver=BLOCK)
    assert sol.result == sg.RESULTS.successful
    assert float(sol.residual) < 1e-10 and sol.layer_residuals.shape == (2,)
    glob = sg.solve(net, x)
    assert rel_err(sol.value, glob.value) < 1e-13
    assert rel_err(sol.value, seq_states) < 1e-13

    g = sg.gradient(net, x, loss, target, solver=BLOCK)  # linear_solver follows solver
    old = sg.gradient(net, x, loss, target)
    assert g.result == sg.RESULTS.successful
    assert float(g.adjoint_residual) < 1e-10
    # Diagonal GMRES to 1e-11 relative, the global one to 1e-12: 1e-9 is a required margin.
    assert rel_err(g.adjoint, old.adjoint) < 1e-9
    assert rel_err(g.grads, g_net) < 1e-9
    assert rel_err(g.input_grad, g_x) < 1e-9
    assert rel_err(g.grads, old.grads) < 1e-9
    np.testing.assert_allclose(g.value, old.value, rtol=1e-13)


@pytest.mark.parametrize("name", ["kerr", pytest.param("quartic", marks=pytest.mark.slow)])
def test_substitutions_solve_the_dense_triangular_systems(name):
    """`J d = b` by block forward substitution and `J^T lam = b` by block back substitution,
    against dense solves with the materialised global Jacobian (every off-diagonal block
    counts: dropping `J_{l,l-1}` changes all layers after the first)."""
    net, x, _, _ = case(name)
    states, _ = reference(name)
    J = dense_jacobian(net, states, x)
    y = sg.pack_states(states)
    rhs = jax.tree.map(lambda v: normal(21, v.shape), y)
    b = flat(rhs)
    solve = eqx.filter_jit(
        lambda states, rhs: (
            BLOCK.forward_substitution(net, states, x, rhs, jnp.float64),
            BLOCK.back_substitution(net, states, x, rhs, jnp.float64),
        )
    )
    (d, r1), (lam, r2) = solve(states, rhs)
    assert r1 == sg.RESULTS.successful and r2 == sg.RESULTS.successful
    np.testing.assert_allclose(flat(d), jnp.linalg.solve(J, b), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(flat(lam), jnp.linalg.solve(J.T, b), rtol=1e-8, atol=1e-10)


@pytest.mark.slow
def test_float32_agrees_with_float64():
    """Single precision end to end (complex64 states): states and gradients within the float32
    tolerances (`max |F| <= 1e-4`, diagonal adjoint solves to 1e-4) of the float64 ones."""
    net, x, target, loss = case("kerr")
    seq_states, (g_net, _) = reference("kerr")
    f32 = jax.tree.map(lambda v: v.astype(jnp.float32) if eqx.is_inexact_array(v) else v, net)
    x32, t32 = x.astype(jnp.float32), target.astype(jnp.float32)

    def loss32(states, target):
        return f32.output(states) - target

    g = sg.gradient(f32, x32, loss32, t32, solver=BLOCK)
    assert g.result == sg.RESULTS.successful
    assert all(s.dtype == jnp.complex64 for s in g.states)
    assert rel_err(g.states, seq_states) < 1e-3
    assert rel_err(g.grads, g_net) < 1e-3


def test_non_converged_diagonal_solves_are_reported():
    """A diagonal adjoint solve capped at 2 GMRES steps, and a layer whose Newton solve is capped
    at 1 step: the result says so (no silent wrong answer); `throw=True` raises."""
    net, x, target, loss = case("kerr")
    states, _ = reference("kerr")
    short = sg.BlockTriangular(js.GMRES(rtol=1e-14, atol=0.0, restart=2, max_steps=2))
    g = sg.gradient(net, x, loss, target, states=states, linear_solver=short, throw=False)
    assert g.result != sg.RESULTS.successful
    assert float(g.adjoint_residual) > 1e-6
    with pytest.raises(Exception):
        sg.gradient(net, x, loss, target, states=states, linear_solver=short)

    last = net.layers[-1]
    capped = js.StationaryLayer(last.graph, last.model, last.source, last.readout, max_steps=1)
    capped_net = sg.StationaryNetwork(net.layers[:-1] + (capped,))
    sol = sg.solve(capped_net, x, solver=BLOCK, throw=False)
    assert sol.result == sg.RESULTS.nonlinear_max_steps_reached
    assert float(sol.layer_residuals[-1]) > 1e-10


def test_grad_through_the_default_solve():
    """`jax.grad` through `solve` with its default strategy (`BlockTriangular` for a nonlinear
    network: each layer's implicit adjoint) equals backpropagation through the sequential
    layers."""
    net, x, target, loss = case("kerr")
    _, (g_net, g_x) = reference("kerr")
    params, static = eqx.partition((net, x), eqx.is_inexact_array)

    def via_solve(params):
        net, x = eqx.combine(params, static)
        return 0.5 * jnp.sum(loss(sg.solve(net, x).value, target) ** 2)

    grads = jax.grad(via_solve)(params)
    assert rel_err(grads, (g_net, g_x)) < 1e-9
