"""The adjoint of the global system: `J^H lam* = -grad l`, and `Re <lam*, dF/dtheta>` equals
backpropagation through the sequential layers."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxstat.supragraph as sg

from ..helpers import finite_difference_jvp
from .networks import case, dense_jacobian, flat, normal, reference


# Both gradients are exact up to the solver tolerances (max |F| ~ 1e-15 after Newton's last
# step, adjoint GMRES to 1e-12 relative), so 1e-8 relative is a wide, required margin.
RTOL = 1e-8

# The global Newton-GMRES and one GMRES adjoint solve over all layers (the default is
# `BlockTriangular`, tested in test_blocks): these tests keep them covered.
GLOBAL = dict(
    solver=sg.default_root_finder(jnp.float64), linear_solver=sg.default_linear_solver(jnp.float64)
)


def _assert_leafwise(a, b, rtol):
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b) > 0
    for u, v in zip(leaves_a, leaves_b):
        assert u.shape == v.shape
        err = float(jnp.linalg.norm(u - v)) / float(jnp.linalg.norm(v))
        assert err < rtol, (u.shape, err)


# Complex nonlinear (Kerr, magnetic graph) by default; the real quartic network (NodeSource,
# gradient model) and the linear network repeat the check in the slow suite (their own
# compilations cost ~25 s of CPU each).
@pytest.mark.parametrize(
    "name",
    [
        "kerr",
        pytest.param("quartic", marks=pytest.mark.slow),
        pytest.param("linear", marks=pytest.mark.slow),
    ],
)
def test_adjoint_gradient_equals_backprop(name):
    """Leaf by leaf: edge weights (and phases, potentials), `B_l`/`W_l`, `b_l`, the models'
    `gamma, kappa` / `mu, beta`, and the input."""
    net, x, target, loss = case(name)
    _, (g_net, g_x) = reference(name)
    g = sg.gradient(net, x, loss, target, **(GLOBAL if name != "linear" else {}))
    assert g.result == sg.RESULTS.successful
    _assert_leafwise(g.grads, g_net, RTOL)
    _assert_leafwise(g.input_grad, g_x, RTOL)
    for layer, ref in zip(g.grads.layers, g_net.layers):
        assert float(jnp.linalg.norm(ref.graph.weights)) > 0  # edge weights are trained
        np.testing.assert_allclose(layer.graph.weights, ref.graph.weights, rtol=RTOL, atol=0)
    np.testing.assert_allclose(g.value, 0.5 * jnp.sum(loss(g.states, target) ** 2), rtol=1e-14)
    assert float(g.adjoint_residual) < 1e-10


@pytest.mark.parametrize("name", ["kerr", pytest.param("quartic", marks=pytest.mark.slow)])
def test_adjoint_solves_the_transposed_system(name):
    """`J(Psi*)^T lam* = -grad l(Psi*)` against a dense solve with the materialised Jacobian."""
    net, x, target, loss = case(name)
    g = sg.gradient(net, x, loss, target, **GLOBAL)
    J = dense_jacobian(net, g.states, x)
    grad_l = jax.grad(lambda y: 0.5 * jnp.sum(loss(sg.unpack_states(y), target) ** 2))(
        sg.pack_states(g.states)
    )
    lam = flat(sg.pack_states(g.adjoint))
    expect = jnp.linalg.solve(J.T, -flat(grad_l))
    np.testing.assert_allclose(lam, expect, rtol=1e-9, atol=1e-12 * float(jnp.abs(expect).max()))
    # Complex states, complex adjoint: Re <lam, v> pairs real and imaginary parts.
    assert all(jnp.iscomplexobj(a) == jnp.iscomplexobj(p) for a, p in zip(g.adjoint, g.states))


@pytest.mark.parametrize("strategy", ["global", pytest.param("block", marks=pytest.mark.slow)])
def test_gradient_against_finite_differences(strategy):
    """Independent of any autodiff: a central difference of `theta -> l(Psi*(theta))`, the
    states from the global solve (`jax.grad` through `solve` itself: test_solve, slow); the
    gradient by the global GMRES adjoint or by block back substitution (`BlockTriangular`)."""
    net, x, target, loss = case("kerr")
    options = GLOBAL if strategy == "global" else dict(solver=sg.BlockTriangular())
    g = sg.gradient(net, x, loss, target, **options)
    params, static = eqx.partition((net, x), eqx.is_inexact_array)

    def value(params):
        net, x = eqx.combine(params, static)
        return 0.5 * jnp.sum(loss(sg.solve(net, x, solver=GLOBAL["solver"]).value, target) ** 2)

    tangents = jax.tree.map(lambda p: normal(3, p.shape), params)
    fd = finite_difference_jvp(value, (params,), (tangents,))
    ad = jnp.vdot(flat((g.grads, g.input_grad)), flat(tangents))
    # eps^(2/3) ~ 4e-11 stencil error times the curvature scale; solver tolerance 1e-10.
    np.testing.assert_allclose(ad, fd, rtol=1e-6)


@pytest.mark.slow
def test_scalar_loss_head_parameters_and_given_states():
    """A scalar loss `1/2 |r|^2` equals its residual form; a head `W` passed in `args` gets its
    gradient in `args_grad`; passing `Psi*` skips the forward solve."""
    net, x, target, _ = case("quartic")
    states, _ = reference("quartic")
    W = normal(4, (3, target.shape[-1]))
    t = normal(5, target.shape[:-1] + (3,))

    def residual(states, args):
        W, t = args
        return net.output(states) @ W.T - t

    def scalar(states, args):
        return 0.5 * jnp.sum(residual(states, args) ** 2)

    a = sg.gradient(net, x, residual, (W, t), states=states)
    b = sg.gradient(net, x, scalar, (W, t), states=states)
    _assert_leafwise(b.grads, a.grads, 1e-12)
    np.testing.assert_allclose(a.value, b.value, rtol=1e-14)
    head = jax.grad(lambda W: scalar(states, (W, t)))(W)
    np.testing.assert_allclose(a.args_grad[0], head, rtol=1e-12)
    np.testing.assert_allclose(a.args_grad[1], t - net.output(states) @ W.T, rtol=1e-12)
    # And these gradients are those of the head on top of the sequential network.
    seq = eqx.filter_grad(lambda n: scalar(n.states(x), (W, t)))(net)
    _assert_leafwise(a.grads, seq, RTOL)


@pytest.mark.slow
def test_vmap_matches_a_loop():
    """A batch of inputs: `vmap` of the global solve + adjoint equals a loop."""
    net, x, target, loss = case("quartic")
    xs = jnp.stack([x, 2 * x, -x])
    batched = eqx.filter_vmap(lambda x: sg.gradient(net, x, loss, target, **GLOBAL))(xs)
    for i in range(3):
        single = sg.gradient(net, xs[i], loss, target, **GLOBAL)
        _assert_leafwise(jax.tree.map(lambda v: v[i], batched.grads), single.grads, 1e-12)
        for a, b in zip(batched.states, single.states):
            np.testing.assert_allclose(a[i], b, rtol=1e-12)


def test_loss_errors_and_nonfinite_gradient():
    net, x, target, loss = case("kerr")
    states, _ = reference("kerr")
    with pytest.raises(TypeError, match="must be real"):
        sg.gradient(net, x, lambda s, a: jnp.sum(s[-1]) * (1 + 1j), states=states)
    with pytest.raises(TypeError, match="inexact"):
        sg.gradient(net, x, lambda s, a: jnp.sum(jnp.abs(s[-1]) > 0), states=states)
    with pytest.raises(Exception, match="gradient with respect to the states is not finite"):
        sg.gradient(net, x, loss, target.at[0, 0].set(jnp.inf))
