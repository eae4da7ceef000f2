"""The certificate of a `StationaryLayer` by default (`AutoStability`, as `solve`): an unstable
state of a double-well layer is reported unstable with the dense spectrum's abscissa, gradients
through a certified layer match finite differences, and under `jax.vmap` the fallback runs only
when some element is undecided.

Double-well gradient layer (real states): `f(psi) = -(H psi + beta (psi^2 - a^2) psi - s)`
(`gamma = 1`, `beta = a = 1`), `H` a graph Laplacian, `s = W x + b` small. Newton from 0 finds
the state near `psi = 0`, where `Df = -(H - I + 3 diag(psi^2))`: since `lambda_min(H) = 0`, the
abscissa is about `1 > 0` (unstable)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import jaxstat.graphs as jg
import jaxstat.stationary as js
from jaxstat.stationary._stability import _unless


def _double_well_layer(key, n=16, scale=0.01, **kwargs):
    k1, k2, k3 = jr.split(key, 3)
    g = jg.random_graph(k1, n, 3 * n)
    source = js.FeatureSource(scale * jr.normal(k2, (1, 3)), scale * jr.normal(k3, (1,)))
    model = js.GradientModel(js.DoubleWell(1.0, 1.0))
    return js.StationaryLayer(g, model, source, js.Identity(), **kwargs)


def _abscissa(layer, psi):
    """max Re lambda(Df) = -lambda_min(H - I + 3 diag(psi^2)), by numpy (symmetric)."""
    H = np.asarray(layer.graph.as_dense())
    return -np.linalg.eigvalsh(H + np.diag(3 * np.asarray(psi)[:, 0] ** 2 - 1)).min()


def test_default_layer_reports_an_unstable_state(getkey):
    layer = _double_well_layer(getkey())
    assert isinstance(layer.stability, js.AutoStability)
    x = jr.normal(getkey(), (16, 3))
    sol = layer.solve(x, throw=False)
    want = _abscissa(layer, sol.value)
    assert want > 0.5  # unstable, away from the boundary
    assert sol.stability.computed and not bool(sol.stability.stable)
    assert sol.result == js.RESULTS.unstable
    # Against the dense spectrum (numpy's eigvalsh of the symmetric Jacobian).
    np.testing.assert_allclose(sol.stability.abscissa, want, rtol=1e-10)
    # The structured path (Lanczos on S = -A, no dense spectrum) agrees: exact for t = 0.
    lanczos = eqx.tree_at(lambda l: l.stability, layer, js.AutoStability(dense_max=0))
    np.testing.assert_allclose(lanczos.solve(x, throw=False).stability.abscissa, want, rtol=1e-8)


def test_grad_through_a_default_layer_matches_finite_differences(getkey):
    # Quartic gradient layer (stable): the certificate runs on every call and must not change
    # the gradient of the state, which flows through the implicit adjoint alone.
    g = jg.random_graph(getkey(), 12, 40)
    layer = js.feature_layer(g, js.GradientModel(js.Quartic(1.0, 1.0)), 3, 2, key=getkey())
    assert isinstance(layer.stability, js.AutoStability)
    x = jr.normal(getkey(), (12, 3))

    def loss(W):
        out = eqx.tree_at(lambda l: l.source.W, layer, W).solve(x)
        return jnp.sum(out.value**2) + 0 * out.stability.abscissa

    W = layer.source.W
    grad = jax.jit(jax.grad(loss))(W)
    direction = jr.normal(getkey(), W.shape)
    h = 1e-5
    fd = (loss(W + h * direction) - loss(W - h * direction)) / (2 * h)
    np.testing.assert_allclose(jnp.vdot(grad, direction), fd, rtol=1e-7)


def test_vmap_of_a_certified_layer(getkey):
    # A batch with stable (large source: psi past the wells' barrier) and unstable (small source)
    # elements, on the structured path: each element's certificate as if alone.
    layer = _double_well_layer(getkey(), scale=1.0, stability=js.AutoStability(dense_max=0))
    xs = jnp.stack([0.01 * jr.normal(getkey(), (16, 3)), 3.0 * jr.normal(getkey(), (16, 3))])
    batched = jax.jit(jax.vmap(lambda x: layer.solve(x, throw=False)))(xs)
    np.testing.assert_array_equal(batched.stability.stable, [False, True])
    for i in range(2):
        alone = layer.solve(xs[i], throw=False)
        np.testing.assert_allclose(batched.value[i], alone.value, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(
            batched.stability.abscissa[i], alone.stability.abscissa, rtol=1e-8
        )
        np.testing.assert_allclose(
            alone.stability.abscissa, _abscissa(layer, alone.value), rtol=1e-8
        )


def test_fallback_runs_under_vmap_only_when_an_element_is_undecided():
    calls = []

    def fallback():
        jax.debug.callback(lambda: calls.append(1))
        return js.Stability(
            abscissa=jnp.array(7.0), ritz_residual=jnp.array(0.0), stable=jnp.array(False)
        )

    def certify(decided):
        certified = lambda: js.Stability(  # noqa: E731
            abscissa=jnp.array(-1.0), ritz_residual=jnp.array(0.0), stable=jnp.array(True)
        )
        return _unless(decided, certified, fallback)

    run = jax.jit(jax.vmap(certify))
    out = run(jnp.array([True, True, True]))
    jax.effects_barrier()
    assert not calls and np.all(np.asarray(out.abscissa) == -1.0)
    out = run(jnp.array([True, False, True]))
    jax.effects_barrier()
    assert calls  # ran (batched), but only the undecided element takes its value
    np.testing.assert_array_equal(out.abscissa, [-1.0, 7.0, -1.0])
    np.testing.assert_array_equal(out.stable, [True, False, True])


def test_default_layer_under_plain_jax_jit(getkey):
    """A layer is a pytree argument of `jax.jit` (not only `eqx.filter_jit`): every leaf is then
    traced, so the certificate's structural integers must be static fields. Forward and gradient
    equal the eager ones, and the certificate is still computed."""
    layer = _double_well_layer(getkey())
    x = jr.normal(getkey(), (16, 3))
    sol = jax.jit(lambda l: l.solve(x, throw=False))(layer)
    eager = layer.solve(x, throw=False)
    np.testing.assert_allclose(sol.value, eager.value, rtol=1e-5, atol=1e-7)
    assert bool(sol.stability.computed)
    np.testing.assert_allclose(sol.stability.abscissa, eager.stability.abscissa, rtol=1e-5)
