"""Neural ODEs: time-T maps, variational derivatives, convergence order, failure paths."""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
import scipy.linalg

import jaxstat.morse as jm

from ..helpers import finite_difference_jvp


def shear_field(t, y, args):
    """`F(y) = (-y1, -y2, y1 y2)`: `y1, y2` decay, `y3` integrates their product."""
    return jnp.array([-y[0], -y[1], y[0] * y[1]])


def shear_flow(y, t):
    """The exact flow of `shear_field`."""
    e = np.exp(-t)
    return np.array([y[0] * e, y[1] * e, y[2] + y[0] * y[1] * (1 - e**2) / 2])


W = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.5, -0.3]])
B = jnp.array([0.2, -0.1, 0.05])
A = jnp.array([0.3, -0.2, 1.0])
T = 1.3


def exact_f_grad_hess(x):
    """Closed forms for `f(x) = a^T phi_T(W x + b)` with the shear flow."""
    y = np.asarray(W) @ x + np.asarray(B)
    e, c = np.exp(-T), (1 - np.exp(-2 * T)) / 2
    a = np.asarray(A)
    value = a @ shear_flow(y, T)
    # d/dy of a^T phi_T(y) = (a1 e + a3 c y2, a2 e + a3 c y1, a3); d2/dy2 = a3 c [[0,1],[1,0]]
    gy = np.array([a[0] * e + a[2] * c * y[1], a[1] * e + a[2] * c * y[0], a[2]])
    hy = np.zeros((3, 3))
    hy[0, 1] = hy[1, 0] = a[2] * c
    w = np.asarray(W)
    return value, w.T @ gy, w.T @ hy @ w


def shear_node(steps=32, solver=dfx.Tsit5()):
    return jm.NeuralODE(shear_field, W, B, A, t1=T, solver=solver, dt0=T / steps)


def test_exact_flow_and_derivatives():
    node = shear_node()
    x = jnp.array([0.7, -0.4])
    value, grad, hess = exact_f_grad_hess(np.asarray(x))
    # Tsit5 with 32 steps: local error ~ (h L)^5 ~ 1e-9 on this O(1) field.
    np.testing.assert_allclose(node(x), value, atol=1e-8)
    np.testing.assert_allclose(node.gradient(x), grad, atol=1e-8)
    np.testing.assert_allclose(node.hessian(x), hess, atol=1e-8)
    y0 = W @ x + B
    np.testing.assert_allclose(node.flow(y0), shear_flow(np.asarray(y0), T), atol=1e-8)


def test_variational_equals_autodiff_of_discrete_map(getkey):
    """With constant steps an explicit RK method commutes with differentiation: the variational
    derivatives are the derivatives of the discrete map (agreement to rounding)."""
    node = jm.random_node(getkey(), 2, 3, width=8, field_scale=2.0)
    x = jr.normal(getkey(), (2,))

    v = jr.normal(getkey(), (2,))

    @eqx.filter_jit
    def everything(node, x, v):
        def f_fwd(z):
            return node._call(z, dfx.ForwardMode())

        y0 = node.weight @ x + node.bias
        return (
            node.value_gradient_hessian(x),
            (node(x), jax.jacfwd(f_fwd)(x), jax.jacfwd(jax.jacfwd(f_fwd))(x)),
            jax.jvp(node.gradient, (x,), (v,))[1],
            jax.grad(node)(x),
            node.flow_jacobian(y0),
            jax.jacfwd(lambda y: node._flow(y, dfx.ForwardMode()))(y0),
        )

    (value, grad, hess), (value_ad, grad_ad, hess_ad), jvp, grad_rev, jac, jac_ad = everything(
        node, x, v
    )
    np.testing.assert_allclose(value, value_ad, rtol=1e-14)
    np.testing.assert_allclose(grad, grad_ad, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(hess, hess_ad, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(hess, hess.T, atol=1e-14)
    # The custom JVP of `gradient` is the Hessian.
    np.testing.assert_allclose(jvp, hess @ v, rtol=1e-12)
    # Reverse mode through the default adjoint agrees with the forward-mode gradient.
    np.testing.assert_allclose(grad_rev, grad, rtol=1e-12)
    np.testing.assert_allclose(jac, jac_ad, rtol=1e-12, atol=1e-14)


def test_gradient_parameter_tangents(getkey):
    """Tangents in the parameters go through the solver: JVP against central differences."""
    node = jm.random_node(getkey(), 2, 3, width=8)
    x = jr.normal(getkey(), (2,))
    dw = jr.normal(getkey(), node.weight.shape)

    def grad_of_weight(w):
        return eqx.tree_at(lambda m: m.weight, node, w).gradient(x)

    jvp = jax.jvp(grad_of_weight, (node.weight,), (dw,))[1]
    fd = finite_difference_jvp(grad_of_weight, (node.weight,), (dw,))
    # Central differences at h = eps^(1/3): error ~h^2 ~ 1e-11 relative.
    np.testing.assert_allclose(jvp, fd, rtol=1e-7, atol=1e-9)


def test_linear_field_flow_jacobian(getkey):
    a_mat = jr.normal(getkey(), (3, 3)) / 2

    def field(t, y, args):
        return a_mat @ y

    node = jm.NeuralODE(field, jnp.eye(3)[:, :2], None, jnp.ones(3), t1=1.0)
    y0 = jr.normal(getkey(), (3,))
    expm = scipy.linalg.expm(np.asarray(a_mat))
    np.testing.assert_allclose(node.flow(y0), expm @ np.asarray(y0), atol=1e-9)
    np.testing.assert_allclose(node.flow_jacobian(y0), expm, atol=1e-9)


def test_convergence_order():
    """Tsit5 is (at least) fifth order and the variational equations inherit its order: the
    errors of f, grad f and hess f fall like dt^p with fitted p in [4.5, 6.5] (observed about 6 on
    this problem: Tsit5's fifth-order error constants are small here)."""
    x = jnp.array([0.7, -0.4])
    exact = exact_f_grad_hess(np.asarray(x))
    steps = np.array([4, 8, 16])
    errors = []
    for s in steps:
        got = shear_node(int(s)).value_gradient_hessian(x)
        errors.append([np.max(np.abs(np.asarray(g) - e)) for g, e in zip(got, exact)])
    errors = np.array(errors)
    for k in range(3):
        slope = -np.polyfit(np.log(steps), np.log(errors[:, k]), 1)[0]
        assert 4.5 <= slope <= 6.5, (k, slope, errors[:, k])


def test_mlp_field_jit_vmap(getkey):
    mlp = eqx.nn.MLP(3, 3, 8, 1, activation=jnp.tanh, key=getkey())
    node = jm.NeuralODE(mlp, jr.normal(getkey(), (3, 2)), None, jr.normal(getkey(), (3,)))
    assert isinstance(node.field, jm.MLPField)
    xs = jr.normal(getkey(), (3, 2))
    # vmap against a loop of the same jitted function.
    f = eqx.filter_jit(lambda m, x: (m(x), m.gradient(x)))
    batched = eqx.filter_vmap(f, in_axes=(None, 0))(node, xs)
    for x, value, grad in zip(xs, *batched):
        loop_value, loop_grad = f(node, x)
        np.testing.assert_allclose(value, loop_value, rtol=1e-13)
        np.testing.assert_allclose(grad, loop_grad, rtol=1e-13)
    assert node.in_size == 2 and node.phase_size == 3


def test_node_errors():
    with pytest.raises(ValueError, match="readout"):
        jm.NeuralODE(shear_field, W)
    with pytest.raises(ValueError, match="positive"):
        jm.NeuralODE(shear_field, W, None, A, t1=0.0)
    with pytest.raises(ValueError, match="shape"):
        jm.NeuralODE(shear_field, W, None, jnp.ones(2))
    with pytest.raises(TypeError, match="callable"):
        jm.NeuralODE(3.0, W, None, A)
    node = shear_node()
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        node(jnp.ones(3))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        node.flow(jnp.ones(2))
