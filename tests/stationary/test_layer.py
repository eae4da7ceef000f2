"""Implicit gradients of stationary layers against dense closed forms and finite differences."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import jaxstat.graphs as jg
import jaxstat.stationary as js

from ..helpers import check_grad_fd


N, E, M = 16, 40, 5


def magnetic_layer(key, model, readout=js.ReIm()):
    k1, k2, k3, k4, k5 = jr.split(key, 5)
    g = jg.random_graph(k1, N, E)
    g = jg.Graph(
        g.senders,
        g.receivers,
        g.weights,
        N,
        connection=jg.PhaseConnection(jr.uniform(k2, (E,), minval=-3.0, maxval=3.0)),
        potential=jr.uniform(k3, (N,)),
    )
    B = 0.3 * jr.normal(k4, (N, M))
    b = 0.1 * jr.normal(k5, (N, 1))
    return js.StationaryLayer(g, model, js.NodeSource(B, b), readout)


MODELS = {
    "kerr": js.DrivenDampedModel(gamma=0.6, kappa=0.4),
    "saturable": js.DrivenDampedModel(gamma=0.6, kappa=0.8, nonlinearity=js.Saturable()),
    "gross-pitaevskii": js.GradientModel(js.Quartic(0.5, 1.0)),
}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "saturable" else n for n in MODELS]
)
def test_implicit_gradients_match_finite_differences(getkey, name):
    """d loss / d (source input, B, b, edge weights, phases, potential, model parameters)."""
    layer = magnetic_layer(getkey(), MODELS[name])
    x = jr.normal(getkey(), (M, 2))
    target = jr.normal(getkey(), (N, 4))

    def loss(params):
        layer_, x_ = eqx.combine(params, static)
        return jnp.sum((layer_(x_) - target) ** 2)

    params, static = eqx.partition((layer, x), eqx.is_inexact_array)
    # rtol: the implicit gradient is exact up to the solver tolerances (1e-10 relative), the
    # central difference up to eps^(2/3) ~ 4e-11 times the curvature scale.
    check_grad_fd(loss, params, key=getkey(), rtol=1e-5)


def test_implicit_gradient_equals_dense_closed_form(getkey):
    """Linear layers: `jax.grad` through the implicit adjoint equals `jax.grad` through a dense
    `jnp.linalg.solve` of `(gamma + i H) psi = B x + b`, leaf by leaf."""
    layer = magnetic_layer(getkey(), js.DrivenDampedModel(gamma=0.4))
    x = jr.normal(getkey(), (M, 3))

    def dense(layer, x):
        g = layer.graph
        A = layer.model.gamma * jnp.eye(N) + 1j * g.as_dense()
        psi = jnp.linalg.solve(A, layer.source(x))
        return jnp.sum(jnp.abs(psi) ** 4)

    def implicit(layer, x):
        return jnp.sum(jnp.abs(layer.solve(x).value) ** 4)

    # `kappa` (an array leaf, 0 here) enters the implicit layer, not the dense resolvent: drop it.
    drop = lambda g: eqx.tree_at(lambda t: t.model.kappa, g, None)
    g_dense = drop(eqx.filter_grad(dense)(layer, x))
    g_impl = drop(eqx.filter_grad(implicit)(layer, x))
    # The adjoint solve stops at a 2-norm relative residual of 1e-11; with a condition number of
    # ~|H| / gamma ~ 1e2 the gradient is accurate to ~1e-9 relative in norm, leaf by leaf.
    for a, b in zip(jax.tree.leaves(g_impl), jax.tree.leaves(g_dense)):
        assert float(jnp.linalg.norm(a - b)) <= 1e-8 * float(jnp.linalg.norm(b))


def test_relu_layer_gradient(getkey):
    """ReLU potential, no edges: `d/ds sum(w * psi*) = w * 1[s > 0]`, the ReLU derivative."""
    g = jg.Graph([], [], num_nodes=N)
    s = jr.normal(getkey(), (N, 3))
    w = jr.normal(getkey(), (N, 3))
    model = js.GradientModel(js.ReLUPotential())
    grad = jax.grad(lambda s: jnp.sum(w * js.solve(model, g, s).value))(s)
    np.testing.assert_allclose(grad, w * (s > 0), atol=1e-12)


def test_vmap_of_grad_default(getkey):
    """The default-suite version of the slow test below, on a small linear layer: `vmap` of the
    implicit gradient equals a loop (the gradient of a batched loss: slow suite only)."""
    g = jg.random_graph(getkey(), 8, 16)
    layer = js.StationaryLayer(
        g, js.GradientModel(js.Quadratic(0.5)), js.DirectSource(), js.Identity()
    )
    xs = jr.normal(getkey(), (3, 8, 2))

    def loss(w, x):
        return jnp.sum(eqx.tree_at(lambda l: l.graph.weights, layer, w)(x) ** 3)

    w = g.weights
    batched = jax.vmap(jax.grad(loss), in_axes=(None, 0))(w, xs)
    loop = jnp.stack([jax.grad(loss)(w, x) for x in xs])
    np.testing.assert_allclose(batched, loop, rtol=1e-9, atol=1e-12)


@pytest.mark.slow  # default-suite version: test_vmap_of_grad_default
def test_grad_of_vmap_and_vmap_of_grad(getkey):
    layer = magnetic_layer(getkey(), MODELS["kerr"])
    xs = jr.normal(getkey(), (3, M, 2))

    def loss(layer, x):
        return jnp.sum(layer(x) ** 2)

    batched = eqx.filter_vmap(eqx.filter_grad(loss), in_axes=(None, 0))(layer, xs)
    loop = [eqx.filter_grad(loss)(layer, x) for x in xs]
    for i, single in enumerate(loop):
        for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(single)):
            np.testing.assert_allclose(a[i], b, rtol=1e-8, atol=1e-12)
    total = eqx.filter_grad(lambda l: jnp.sum(jax.vmap(lambda x: loss(l, x))(xs)))(layer)
    summed = jax.tree.map(lambda *gs: sum(gs), *loop)
    for a, b in zip(jax.tree.leaves(total), jax.tree.leaves(summed)):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12)


@pytest.mark.slow  # sheaf states: closed forms in test_solve.py; gradients: the kerr FD test
def test_sheaf_layer_gradient(getkey):
    k1, k2 = jr.split(getkey())
    g = jg.random_graph(k1, N, E)
    g = jg.Graph(
        g.senders,
        g.receivers,
        g.weights,
        N,
        connection=jg.BlockConnection(jg.random_unitary_blocks(k2, E, 2, jnp.complex128)),
    )
    model = js.DrivenDampedModel(gamma=0.5, kappa=0.3)
    s = 0.4 * jr.normal(getkey(), (N, 2, 2))

    def loss(weights, s):
        gg = eqx.tree_at(lambda t: t.weights, g, weights)
        return jnp.sum(jnp.abs(js.solve(model, gg, s).value) ** 2)

    check_grad_fd(loss, g.weights, s, key=getkey(), rtol=1e-5)


def test_feature_layer_float32(getkey):
    """float32 end to end: states, gradients and solver tolerances follow the input dtype, and
    agree with the float64 solve of the same (float32-representable) layer.

    State: the model is strongly monotone with modulus `m >= mu = 1` (`L >= 0`, Quartic), so
    `|psi_32 - psi*| <= |F(psi_32)| / m`, with `F` evaluated in float64 (a bound, not a tolerance);
    the float32 stopping rule makes that `<~ 1e-4` relative. Gradient: the float32 adjoint GMRES
    stops at relative residual 1e-4 and the state carries ~1e-5, so 1e-3 relative in norm."""
    g = jg.random_graph(getkey(), 2000, 8000, dtype=jnp.float32)
    # The certificate's float32 accuracy has its own test (test_stability.py); skipped here.
    model = js.GradientModel(js.Quartic(1.0, 1.0))
    layer = js.feature_layer(g, model, 8, 4, key=getkey(), dtype=jnp.float32, stability=None)
    x = jr.normal(getkey(), (2000, 8), jnp.float32)

    # The state and the gradient of `mean(layer(x)^2)` from one solve (and its adjoint).
    @eqx.filter_value_and_grad(has_aux=True)
    def loss_and_grad(layer, x):
        sol = layer.solve(x)
        return jnp.mean(layer.readout(sol.value) ** 2), sol

    (_, sol), grads = loss_and_grad(layer, x)
    assert sol.value.dtype == jnp.float32
    assert float(sol.residual) < 1e-4
    assert grads.graph.weights.dtype == jnp.float32

    to64 = lambda t: jax.tree.map(
        lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, t
    )
    layer64, x64 = to64(layer), x.astype(jnp.float64)
    (_, sol64), grads64 = loss_and_grad(layer64, x64)
    psi64 = sol64.value
    s64 = layer64.source(x64)
    F = layer64.model.residual(sol.value.astype(jnp.float64), s64, layer64.graph.assemble())
    err = float(jnp.linalg.norm(sol.value - psi64))
    assert err <= float(jnp.linalg.norm(F)) * (1 + 1e-6) + 1e-12
    assert err <= 1e-4 * float(jnp.linalg.norm(psi64))
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads64)):
        assert float(jnp.linalg.norm(a - b)) <= 1e-3 * float(jnp.linalg.norm(b))


def test_direct_source_is_label_propagation(getkey):
    """`DirectSource` + `Quadratic(mu)`: `psi* = (L + mu I)^{-1} x` (the dense solve), and the
    gradient with respect to the edge weights matches the dense one."""
    g = jg.random_graph(getkey(), N, E)
    layer = js.StationaryLayer(
        g, js.GradientModel(js.Quadratic(0.3)), js.DirectSource(), js.Identity()
    )
    x = jr.normal(getkey(), (N, 3))
    dense = lambda g: jnp.linalg.solve(g.as_dense() + 0.3 * jnp.eye(N), x)
    np.testing.assert_allclose(layer(x), dense(g), atol=1e-9)
    g_impl = jax.grad(lambda w: jnp.sum(eqx.tree_at(lambda l: l.graph.weights, layer, w)(x) ** 3))
    g_dense = jax.grad(lambda w: jnp.sum(dense(eqx.tree_at(lambda g: g.weights, g, w)) ** 3))
    np.testing.assert_allclose(g_impl(g.weights), g_dense(g.weights), rtol=1e-7, atol=1e-9)


# -- what sources and readouts say about themselves -------------------------------------------


def _node_dependence(fn, x):
    """`|d fn(x)_i / d x_j| > 0` reduced to nodes (leading axes), from the dense Jacobian."""
    J = np.abs(np.asarray(jax.jacfwd(lambda v: jnp.real(fn(v)))(x)))
    n_out, n_in = J.shape[0], x.shape[0]
    J = J.reshape(n_out, -1, n_in, int(np.prod(x.shape[1:])))
    return J.sum(axis=(1, 3)) > 0


def _sources(key):
    k1, k2, k3, k4 = jr.split(key, 4)
    B = jr.normal(k1, (6, 5))
    B = jnp.where(jnp.abs(B) > 0.7, B, 0.0)
    return {
        "node": (js.NodeSource(B, jr.normal(k2, (6, 1))), (5, 3)),
        "feature": (js.FeatureSource(jr.normal(k3, (4, 3)), jr.normal(k4, (4,))), (5, 3)),
        "direct": (js.DirectSource(), (5, 3)),
    }


@pytest.mark.parametrize("name", ["node", "feature", "direct"])
def test_source_norm_and_node_pattern(getkey, name):
    """`norm` is the Lipschitz constant `|B|_2` (never exceeded on random pairs, reached on the
    top singular vector); `node_pattern` is the nonzero node pattern of the Jacobian."""
    src, shape = _sources(getkey())[name]
    for _ in range(10):
        x, y = jr.normal(getkey(), shape), jr.normal(getkey(), shape)
        ratio = jnp.linalg.norm(src(x) - src(y)) / jnp.linalg.norm(x - y)
        assert ratio <= src.norm * (1 + 1e-12)
    if src.matrix is not None:
        B = src.matrix
        top = jnp.linalg.svd(B)[2][0]  # the top right singular vector
        x = top[:, None] if src.mixes_nodes else jnp.tile(top, (shape[0], 1))
        zero = jnp.zeros_like(x)
        np.testing.assert_allclose(
            jnp.linalg.norm(src(x) - src(zero)) / jnp.linalg.norm(x), src.norm, rtol=1e-12
        )
    rows, cols, w = src.node_pattern(shape[0])
    x = jr.normal(getkey(), shape)
    expect = _node_dependence(src, x)
    got = np.zeros_like(expect)
    got[rows, cols] = True
    np.testing.assert_array_equal(got, expect)
    assert np.all(w > 0)


READOUTS = {
    "identity": js.Identity(),
    "reim": js.ReIm(),
    "intensity": js.Intensity(),
    "linear": js.LinearReadout(jnp.array([[1.0, -2.0, 0.5, 0.0]]), jnp.array([0.3])),
    "tanh": js.Tanh(),
}


@pytest.mark.parametrize("name", list(READOUTS))
def test_readout_properties(getkey, name):
    """`is_node_local`: the Jacobian is node-block-diagonal; `is_affine`:
    `rho(u + v) + rho(0) = rho(u) + rho(v)`; `lipschitz`: never exceeded on random pairs."""
    rho = READOUTS[name]
    cplx = lambda k: jr.normal(k, (6, 2)) + 1j * jr.normal(jr.fold_in(k, 1), (6, 2))  # noqa: E731
    if name == "identity":
        cplx = lambda k: jr.normal(k, (6, 2))  # noqa: E731
    u, v = cplx(getkey()), cplx(getkey())
    pair = jnp.stack([u.real, u.imag], 1)  # nodes first: (6, 2, 2)
    dependence = _node_dependence(lambda p: rho(p[:, 0] + 1j * p[:, 1]), pair)
    if rho.is_node_local:
        np.testing.assert_array_equal(dependence, np.eye(6, dtype=bool))
    additive = jnp.allclose(rho(u + v) + rho(0 * u), rho(u) + rho(v), rtol=1e-12, atol=1e-12)
    assert bool(additive) == rho.is_affine
    if name == "intensity":
        with pytest.raises(ValueError, match="not globally Lipschitz"):
            rho.lipschitz
        return
    for _ in range(10):
        u, v = cplx(getkey()), cplx(getkey())
        ratio = jnp.linalg.norm(rho(u) - rho(v)) / jnp.linalg.norm(u - v)
        assert ratio <= rho.lipschitz * (1 + 1e-12)
