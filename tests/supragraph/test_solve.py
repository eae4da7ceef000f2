"""The exact global solve equals the sequential forward pass; failure paths; jit, vmap, grad."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import pytest

import jaxstat.supragraph as sg

from ..helpers import finite_difference_jvp
from .networks import case, flat, normal, reference, rel_err


# The sequential and the global solve each stop at max |F| <= 1e-10 after a Newton step, which
# leaves ~1e-15 (quadratic convergence); relative agreement to 1e-10 is the required figure.
RTOL = 1e-10

# The global Newton-GMRES over all layers at once (the default is `BlockTriangular`, tested in
# test_blocks): these tests keep it covered.
NEWTON = sg.default_root_finder(jnp.float64)


# The real quartic network repeats the check at the cost of its own compilations: slow suite.
@pytest.mark.parametrize(
    "name",
    [
        "kerr",
        pytest.param("linear", marks=pytest.mark.slow),  # by default: the dense check below
        pytest.param("quartic", marks=pytest.mark.slow),
    ],
)
def test_global_solve_equals_sequential_forward(name):
    net, x, _, _ = case(name)
    seq, _ = reference(name)
    sol = sg.solve(net, x, solver=None if name == "linear" else NEWTON)
    assert sol.result == sg.RESULTS.successful
    assert float(sol.residual) < 1e-10
    assert sol.layer_residuals.shape == (net.num_layers,)
    for a, b in zip(sol.value, seq):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert rel_err(a, b) < RTOL
    if name == "linear":
        assert int(sol.num_steps) == 1  # one linear solve, no Newton iterations
    else:
        assert int(sol.num_steps) > 2


def test_linear_network_against_dense_solves():
    """Independent of every iterative solver: `psi_l = (gamma + i H_l)^{-1} (W_l rho(psi_{l-1})
    + b_l)` by dense `jnp.linalg.solve`, layer after layer."""
    net, x, _, _ = case("linear")
    h, expect = x, []
    for layer in net.layers:
        A = layer.model.gamma * jnp.eye(layer.graph.num_nodes) + 1j * layer.graph.as_dense()
        psi = jnp.linalg.solve(A, layer.source(h))
        expect.append(psi)
        h = layer.readout(psi)
    sol = sg.solve(net, x)
    assert sol.result == sg.RESULTS.successful
    assert int(sol.num_steps) == 1  # one linear solve, no Newton iterations
    for a, b in zip(sol.value, expect):
        assert rel_err(a, b) < RTOL


@pytest.mark.slow
def test_warm_start_converges_at_once():
    net, x, _, _ = case("kerr")
    seq, _ = reference("kerr")
    sol = sg.solve(net, x, seq, solver=NEWTON)
    # optimistix's Newton needs one step to confirm convergence (and one more at most).
    assert int(sol.num_steps) <= 2
    assert rel_err(sol.value, seq) < RTOL


@pytest.mark.slow
def test_least_squares_solver():
    """An optimistix least-squares solver finds the same zero of `F`."""
    net, x, _, _ = case("quartic")
    seq, _ = reference("quartic")
    sol = sg.solve(net, x, solver=optx.LevenbergMarquardt(rtol=1e-12, atol=1e-12))
    assert rel_err(sol.value, seq) < 1e-9  # LM stops on a relative step of 1e-12


def test_failure_paths():
    """Raised messages are those of the result codes (`throw=True`, the default); with
    `throw=False` the codes are returned. Trace-time errors for shapes and solver types."""
    net, x, _, _ = case("kerr")
    with pytest.raises(Exception, match="not finite"):
        sg.solve(net, x.at[0, 0].set(jnp.nan), solver=NEWTON)
    sol = sg.solve(net, x, solver=NEWTON, max_steps=1, throw=False)
    assert sol.result == sg.RESULTS.nonlinear_max_steps_reached
    sol = sg.solve(net, x.at[0, 0].set(jnp.inf), solver=NEWTON, max_steps=1, throw=False)
    assert sol.result == sg.RESULTS.nonfinite_source
    with pytest.raises(ValueError, match="initial state of layer 1"):
        sg.solve(net, x, (jnp.zeros((12, 4)), jnp.zeros((12, 3))))
    with pytest.raises(ValueError, match="tuple of 2"):
        sg.solve(net, x, (jnp.zeros((12, 4)),))
    # Our TypeError, or jaxtyping's (a TypeError naming `solver`) under runtime type checking.
    with pytest.raises(TypeError, match="solver"):
        sg.solve(net, x, solver=optx.BFGS(1e-8, 1e-8))
    with pytest.raises(ValueError, match="FeatureSource"):
        sg.solve(net, jnp.ones((12, 5)))


@pytest.mark.slow
def test_result_codes_without_throwing():
    net, x, _, _ = case("kerr")
    with pytest.raises(Exception, match="not affine"):
        sg.solve(net, x, solver=sg.default_linear_solver(jnp.float64))
    net, x, _, _ = case("quartic")
    sol = sg.solve(net, x.at[0, 0].set(jnp.inf), solver=NEWTON, throw=False)
    assert sol.result == sg.RESULTS.nonfinite_source
    sol = sg.solve(net, x, solver=NEWTON, throw=False)
    assert sol.result == sg.RESULTS.successful


@pytest.mark.slow
def test_grad_through_global_solve():
    """The global solve is differentiable (optimistix's implicit adjoint): `jax.grad` through it
    equals backpropagation through the sequential layers, and a central finite difference."""
    net, x, target, loss = case("quartic")
    _, (g_net, g_x) = reference("quartic")
    params, static = eqx.partition((net, x), eqx.is_inexact_array)

    def via_global(params):
        net, x = eqx.combine(params, static)
        return 0.5 * jnp.sum(loss(sg.solve(net, x, solver=NEWTON).value, target) ** 2)

    grads = jax.grad(via_global)(params)
    assert rel_err(grads, (g_net, g_x)) < 1e-8
    tangent = jax.tree.map(lambda p: normal(3, p.shape), params)
    fd = finite_difference_jvp(via_global, (params,), (tangent,))
    ad = jnp.vdot(flat(grads), flat(tangent))
    # eps^(2/3) ~ 4e-11 stencil error times the curvature scale; solver tolerance 1e-10.
    np.testing.assert_allclose(ad, fd, rtol=1e-6)


def test_grad_through_global_solve_default():
    """The cheap default-suite case of the test above: `jax.grad` through `solve` on the complex
    Kerr network (whose forward solve and sequential reference the other default tests compile
    already) equals backpropagation through the sequential layers, leaf by leaf in norm."""
    net, x, target, loss = case("kerr")
    _, (g_net, g_x) = reference("kerr")
    params, static = eqx.partition((net, x), eqx.is_inexact_array)

    def via_global(params):
        net, x = eqx.combine(params, static)
        return 0.5 * jnp.sum(loss(sg.solve(net, x, solver=NEWTON).value, target) ** 2)

    grads = jax.grad(via_global)(params)
    # Both exact up to the solver tolerances (Newton to max|F| <= 1e-10, adjoint GMRES 1e-11).
    assert rel_err(grads, (g_net, g_x)) < 1e-8
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves((g_net, g_x))):
        assert float(jnp.linalg.norm(a - b)) <= 1e-7 * float(jnp.linalg.norm(b)) + 1e-14


def test_float32_and_vmap():
    """Single precision end to end: complex64 states, residual at the float32 tolerance; and a
    batch of inputs under `vmap` equals a loop (float32 keeps this one compilation cheap)."""
    net, x, _, _ = case("kerr")
    net = jax.tree.map(lambda v: v.astype(jnp.float32) if eqx.is_inexact_array(v) else v, net)
    xs = jnp.stack([x, -0.5 * x]).astype(jnp.float32)
    batched = eqx.filter_vmap(lambda x: sg.solve(net, x))(xs)
    assert all(p.dtype == jnp.complex64 for p in batched.value)
    assert float(jnp.max(batched.residual)) < 1e-4
    # The loop, in float64 (one compilation fewer): float32 tolerance, max |F| <= 1e-4 on states
    # of size ~1 with an inexact-Newton forcing of 1e-3.
    net64 = case("kerr").net
    for i in range(2):
        single = sg.solve(net64, xs[i].astype(jnp.float64))
        assert rel_err(jax.tree.map(lambda v: v[i], batched.value), single.value) < 1e-4
