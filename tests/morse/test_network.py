"""Scalar networks in the three layer forms: formulas, derivatives, conversions, failure paths."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import jaxstat.morse as jm

from ..helpers import check_grad_fd, finite_difference_jvp


ACTIVATIONS = [jm.Tanh(), jm.Sigmoid(), jm.Softplus()]
NUMPY_ACT = {
    "Tanh": np.tanh,
    "Sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "Softplus": lambda z: np.log1p(np.exp(z)),
}


@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda a: type(a).__name__)
def test_activation_derivative_bound_reflection(act):
    z = jnp.linspace(-6.0, 6.0, 2001)
    # Closed-form derivative against autodiff. JAX differentiates tanh as 1 - tanh^2, which loses
    # log10(1 / sech^2(6)) ~ 4.6 digits at |z| = 6 to cancellation: hence rtol 1e-9, not ~1e-15.
    np.testing.assert_allclose(act.derivative(z), jax.vmap(jax.grad(act))(z), rtol=1e-9, atol=0)
    assert bool(jnp.all(act.derivative(z) > 0))  # strictly increasing
    # The interval bound is the minimum of sigma' over the interval (dense sampling hits the
    # minimiser exactly: sigma' is monotone in |z| or in z, so it sits at a sampled endpoint).
    for lo, hi in [(-6.0, 6.0), (-1.0, 3.0), (0.5, 2.0), (-4.0, -2.0)]:
        sub = jnp.linspace(lo, hi, 1001)
        np.testing.assert_allclose(
            act.derivative_lower_bound(lo, hi), jnp.min(act.derivative(sub)), rtol=1e-12
        )
    refl = act.reflection()
    if refl is not None:
        s, t = refl
        np.testing.assert_allclose(act(-z), s * act(z) + t, atol=1e-15)


def test_as_activation():
    assert isinstance(jm.as_activation(jnp.tanh), jm.Tanh)
    assert isinstance(jm.as_activation(jax.nn.sigmoid), jm.Sigmoid)
    assert isinstance(jm.as_activation(lambda z: jax.nn.softplus(z)), jm.Softplus)
    with pytest.raises(ValueError, match="tanh, sigmoid, softplus"):
        jm.as_activation(jax.nn.relu)  # not smooth
    with pytest.raises(ValueError, match="tanh, sigmoid, softplus"):
        jm.as_activation(jnp.sin)  # not monotone


def _numpy_forward(net, x):
    act = NUMPY_ACT[type(net.activation).__name__]
    h = np.asarray(x)
    for layer in net.layers:
        if isinstance(layer, jm.AffineLayer):
            h = np.asarray(layer.weight) @ h + np.asarray(layer.bias)
        elif isinstance(layer, jm.PostActivationLayer):
            h = act(np.asarray(layer.weight) @ h + np.asarray(layer.bias))
        elif isinstance(layer, jm.PreActivationLayer):
            h = np.asarray(layer.weight) @ act(h) + np.asarray(layer.bias)
        else:
            inner = act(np.asarray(layer.weight_in) @ h + np.asarray(layer.bias_in))
            h = np.asarray(layer.weight_out) @ inner + np.asarray(layer.bias_out)
    return h[0]


FORMS = [jm.PostActivationLayer, jm.PreActivationLayer, jm.SandwichLayer]


@pytest.mark.parametrize("form", FORMS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda a: type(a).__name__)
def test_forms_formula_and_chain(form, act, getkey):
    net = jm.random_mlp(getkey(), [3, 5, 4, 1], layer=form, activation=act)
    xs = jr.normal(getkey(), (7, 3))
    out = jax.vmap(net)(xs)
    expected = np.array([_numpy_forward(net, x) for x in np.asarray(xs)])
    # The layer formulas, evaluated independently in numpy (float64 rounding only).
    np.testing.assert_allclose(out, expected, rtol=1e-13, atol=1e-13)
    # The merged chain form computes the same function.
    chain = net._chain()
    np.testing.assert_allclose(jax.vmap(lambda x: chain(x, net.activation))(xs), out, atol=1e-13)
    assert chain.input_activation == (form is jm.PreActivationLayer)
    assert net.widths == (3, 5, 4, 1)


@pytest.mark.parametrize("form", FORMS, ids=lambda c: c.__name__)
def test_gradient_hessian_fd(form, getkey):
    net = jm.random_mlp(getkey(), [2, 6, 5, 1], layer=form, activation=jm.Softplus())
    x = jr.normal(getkey(), (2,))
    check_grad_fd(net, x, key=getkey())
    # Hessian columns against central differences of the gradient: O(h^2) with h = eps^(1/3)
    # gives ~1e-10 relative.
    h = net.hessian(x)
    for i in range(2):
        e = jnp.zeros(2).at[i].set(1.0)
        fd = finite_difference_jvp(net.gradient, (x,), (e,))
        np.testing.assert_allclose(h[:, i], fd, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(h, h.T, atol=1e-14)
    v, g, hh = net.value_gradient_hessian(x)
    np.testing.assert_allclose(v, net(x))
    np.testing.assert_allclose(g, net.gradient(x))
    np.testing.assert_allclose(hh, h)


def test_jit_vmap_dtype(getkey):
    net = jm.random_mlp(getkey(), [2, 8, 1])
    xs = jr.normal(getkey(), (5, 2))
    loop = jnp.stack([net(x) for x in xs])
    np.testing.assert_allclose(eqx.filter_jit(jax.vmap(net))(xs), loop, rtol=1e-14)
    np.testing.assert_allclose(jax.vmap(net.gradient)(xs), jnp.stack([net.gradient(x) for x in xs]))
    net32 = jm.random_mlp(getkey(), [2, 8, 1], dtype=jnp.float32)
    assert net32(jnp.zeros(2, jnp.float32)).dtype == jnp.float32
    assert net32.hessian(jnp.zeros(2, jnp.float32)).dtype == jnp.float32


@pytest.mark.parametrize("scan", [False, True])
@pytest.mark.parametrize("out_size", ["scalar", 1])
def test_from_eqx_mlp(scan, out_size, getkey):
    mlp = eqx.nn.MLP(3, out_size, 7, 3, activation=jnp.tanh, key=getkey(), scan=scan)
    net = jm.from_eqx_mlp(mlp)
    xs = jr.normal(getkey(), (6, 3))
    ref = jax.vmap(mlp)(xs).reshape(6)
    np.testing.assert_allclose(jax.vmap(net)(xs), ref, rtol=1e-13)
    assert net.widths == (3, 7, 7, 7, 1)
    assert isinstance(net.activation, jm.Tanh)


def test_from_eqx_mlp_errors(getkey):
    with pytest.raises(ValueError, match="tanh, sigmoid, softplus"):
        jm.from_eqx_mlp(eqx.nn.MLP(2, "scalar", 4, 1, key=getkey()))  # relu
    with pytest.raises(ValueError, match="final activation"):
        jm.from_eqx_mlp(
            eqx.nn.MLP(2, "scalar", 4, 1, jnp.tanh, final_activation=jnp.tanh, key=getkey())
        )
    with pytest.raises(ValueError, match="scalar output"):
        jm.from_eqx_mlp(eqx.nn.MLP(2, 3, 4, 1, jnp.tanh, key=getkey()))
    with pytest.raises(TypeError):
        jm.from_eqx_mlp(jm.random_mlp(getkey(), [2, 3, 1]))


def test_construction_errors(getkey):
    w = jnp.ones((3, 2))
    with pytest.raises(ValueError, match="must be a matrix"):
        jm.AffineLayer(jnp.ones(3))
    with pytest.raises(TypeError, match="floating"):
        jm.AffineLayer(jnp.ones((3, 2), int))
    with pytest.raises(ValueError, match="shape"):
        jm.PostActivationLayer(w, jnp.ones(2))
    with pytest.raises(ValueError, match="expects"):
        jm.ScalarMLP([jm.PostActivationLayer(w), jm.AffineLayer(jnp.ones((1, 4)))])
    with pytest.raises(ValueError, match="output size 1"):
        jm.ScalarMLP([jm.PostActivationLayer(w)])
    with pytest.raises(TypeError, match="AbstractLayer"):
        jm.ScalarMLP([w])
    with pytest.raises(ValueError, match="columns"):
        jm.SandwichLayer(w, None, jnp.ones((1, 2)))
    with pytest.raises(ValueError, match="two activations"):
        jm.ScalarMLP([jm.PostActivationLayer(w), jm.PreActivationLayer(jnp.ones((1, 3)))])._chain()
    with pytest.raises(ValueError, match="output width"):
        jm.random_mlp(getkey(), [2, 3, 2])
    net = jm.random_mlp(getkey(), [2, 3, 1])
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        net(jnp.ones(3))
    with pytest.raises(TypeError):  # our check, or jaxtyping's when it is active
        net(jnp.ones(2, int))
