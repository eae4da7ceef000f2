"""What a new user meets first (issue 11): the flow in single precision, parameters given as
Python floats, weights that an optimiser made negative, readable result codes, readouts."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import networkx as nx
import numpy as np
import pytest

import jaxstat.stationary as js
from jaxstat.graphs import from_networkx, knn_graph


# ---------------------------------------------------------------------------------------------
# The flow reaches the stationary state in single precision.


def _graph(name, dtype):
    if name == "karate":  # weighted (edge weights 1..7), |H| ~ 52
        return from_networkx(nx.karate_club_graph(), dtype=dtype)[0]
    points = np.asarray(jr.normal(jr.key(0), (200, 2), jnp.float64))
    return knn_graph(points, 8, dtype=dtype)


MODELS = {
    "linear": js.DrivenDampedModel(gamma=0.5, kappa=0.0),
    "kerr": js.DrivenDampedModel(gamma=0.5, kappa=1.0),
    "quartic": js.GradientModel(js.Quartic(1.0, 1.0)),
}
# Slowest decay rate of the linearised dynamics, a lower bound on `|Df^{-1}|^{-1}` used to turn
# the steady-state test `max |f| <= rtol * max(1, max|s|)` into a distance to the state:
# gamma for the driven-damped models, gamma * mu for the quartic gradient model.
DECAY = {"linear": 0.5, "kerr": 0.5, "quartic": 1.0}


def _reference(graph_name, model_name):
    """The stationary state by Newton in double precision (independent of the flow)."""
    g = _graph(graph_name, jnp.float64)
    s = jr.normal(jr.key(1), (g.num_nodes,), jnp.float64)
    return s, js.solve(MODELS[model_name], g, s).value


def _cases(default):
    """graph x model x dtype; those not in `default` are slow (compiling the flow for each costs
    several seconds)."""
    out = []
    for graph_name in ["karate", "knn"]:
        for model_name in MODELS:
            for dtype in [jnp.float32, jnp.float64]:
                marks = () if default(graph_name, dtype) else (pytest.mark.slow,)
                name = f"{graph_name}-{model_name}-{jnp.dtype(dtype).name}"
                out.append(pytest.param(graph_name, model_name, dtype, marks=marks, id=name))
    return out


@pytest.mark.parametrize(
    "graph_name, model_name, dtype", _cases(lambda g, d: g == "karate" and d == jnp.float32)
)
def test_flow_at_t80_matches_solve(graph_name, model_name, dtype):
    s, ref = _reference(graph_name, model_name)
    g = _graph(graph_name, dtype)
    sol = js.flow(MODELS[model_name], g, s.astype(dtype), jnp.zeros(ref.shape, dtype), 80.0)
    y = sol.ys[-1]
    assert jnp.finfo(y.dtype).dtype == dtype  # integrated in the precision asked for
    err = float(jnp.max(jnp.abs(y - ref)) / jnp.max(jnp.abs(ref)))
    # At t = 80 the transient has decayed by exp(-40): what is left is the integration error.
    # Single precision: the tolerance of the solver (1e-4), far above the rounding of the
    # single-precision graph (~1e-6 relative); before the step cap this was 1e-2 to 1e-1.
    # Double: 1e-8 (tolerance 1e-10, times the ~1e2 accumulation over the run).
    assert err < (1e-4 if dtype == jnp.float32 else 1e-8), err


@pytest.mark.parametrize("graph_name, model_name, dtype", _cases(lambda g, d: d == jnp.float32))
def test_flow_until_steady_stops_at_solve(graph_name, model_name, dtype):
    s, ref = _reference(graph_name, model_name)
    g = _graph(graph_name, dtype)
    steady = js.SteadyState()
    sol = js.flow(
        MODELS[model_name],
        g,
        s.astype(dtype),
        jnp.zeros(ref.shape, dtype),
        jnp.inf,
        until_steady=steady,
        max_steps=20_000,
    )
    assert np.isfinite(float(sol.ts[-1]))
    rtol = steady.tolerance(dtype)
    scale = max(1.0, float(jnp.max(jnp.abs(s))))
    # |psi - psi*| <= |f| / (slowest decay rate), |f| <= rtol * scale at the stop; a factor 2 for
    # the nonlinear terms (Kerr) and rounding.
    dist = float(jnp.max(jnp.abs(sol.ys[-1] - ref)))
    assert dist <= 2 * rtol * scale / DECAY[model_name], dist


def test_until_steady_takes_a_strategy():
    g = _graph("karate", jnp.float64)
    s = jnp.ones(g.num_nodes)
    with pytest.raises(TypeError, match="SteadyState"):
        js.flow(MODELS["quartic"], g, s, s, jnp.inf, until_steady=True)


# ---------------------------------------------------------------------------------------------
# Weights made negative after construction are refused at solve time.


def _layer(getkey, n=12, m=40, **kwargs):
    from jaxstat.graphs import random_graph

    g = random_graph(getkey(), n, m)
    model = js.GradientModel(js.Quartic(1.0, 1.0))
    return js.feature_layer(g, model, 3, 2, key=getkey(), **kwargs)


def test_negative_weight_set_by_tree_at_is_refused(getkey):
    layer = _layer(getkey)
    x = jr.normal(getkey(), (12, 3))
    bad = eqx.tree_at(lambda l: l.graph.weights, layer, layer.graph.weights.at[7].set(-100.0))
    s, r = int(layer.graph.senders[7]), int(layer.graph.receivers[7])
    want = rf"1 edge weight is negative \(the first is edge 7, \({s}, {r}\)"
    with pytest.raises(ValueError, match=want):
        bad(x)
    with pytest.raises(ValueError, match="jaxstat.strata"):
        js.solve(bad.model, bad.graph, jnp.ones((12, 2)))
    # Inside jit the check is `eqx.error_if` (the value is not known at trace time).
    with pytest.raises(Exception, match="edge weights must be non-negative"):
        eqx.filter_jit(lambda l: l(x))(bad)


def test_traced_negative_weights_with_throw_false_give_the_result_code(getkey):
    """Inside `jit` with `throw=False`, weights made negative are reported by the result code,
    not by `eqx.error_if`: the program has no host callback (JAX's persistent compilation cache
    cannot store a program with one). With `throw=True` they raise, as above."""
    layer = _layer(getkey)
    x = jr.normal(getkey(), (12, 3))
    bad = layer.graph.weights.at[7].set(-100.0)

    def result(w, throw):
        moved = eqx.tree_at(lambda l: l.graph.weights, layer, w)
        return moved.solve(x, throw=throw).result

    checked = jax.jit(result, static_argnums=1)
    assert checked(bad, False) == js.RESULTS.invalid_parameter
    assert checked(layer.graph.weights, False) == js.RESULTS.successful
    assert "callback" not in checked.lower(bad, False).as_text()
    assert "callback" in checked.lower(bad, True).as_text()
    with pytest.raises(Exception, match="edge weights must be non-negative"):
        jax.block_until_ready(checked(bad, True))


def test_adam_step_making_weights_negative_is_refused(getkey):
    optax = pytest.importorskip("optax")
    layer = _layer(getkey)
    x = jr.normal(getkey(), (12, 3))
    y = jr.normal(getkey(), (12, 2))
    params, static = eqx.partition(layer, eqx.is_inexact_array)

    def loss(params):
        return jnp.mean((eqx.combine(params, static)(x) - y) ** 2)

    opt = optax.adam(10.0)  # a large step: adam moves every weight by ~ the learning rate
    state = opt.init(params)
    grads = jax.grad(loss)(params)
    updates, state = opt.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    trained = eqx.combine(params, static)
    w = np.asarray(trained.graph.weights)
    assert (w < 0).sum() > 0  # the step did make weights negative
    first = int(np.flatnonzero(w < 0)[0])
    with pytest.raises(
        ValueError,
        match=rf"{(w < 0).sum()} edge weights? (is|are) negative \(the first is edge {first},",
    ):
        trained(x)
    # Under plain `jax.jit` (as in a training step) the same check, by `eqx.error_if`.
    with pytest.raises(Exception, match="edge weights must be non-negative"):
        jax.block_until_ready(jax.jit(loss)(params))


@pytest.mark.parametrize("where", ["potential", "weights", "phases"])
def test_nonfinite_graph_values_are_reported(getkey, where):
    """A NaN set after construction (`eqx.tree_at`) is reported by the result code, raised
    with `throw=True` (eagerly and inside jit), never returned as a state."""
    from jaxstat.graphs import Graph, PhaseConnection

    g = Graph(
        [0, 1, 2],
        [1, 2, 3],
        jnp.ones(3),
        connection=PhaseConnection(jnp.zeros(3)),
        potential=jnp.ones(4),
    )
    path = {
        "potential": lambda g: g.potential,
        "weights": lambda g: g.weights,
        "phases": lambda g: g.connection.theta,
    }[where]
    bad = eqx.tree_at(path, g, path(g).at[1].set(jnp.nan))
    model = js.GradientModel(js.Quartic(1.0, 1.0))
    s = jnp.ones(4, complex)
    sol = js.solve(model, bad, s, stability=None, throw=False)
    assert sol.result == js.RESULTS.nonfinite_source
    with pytest.raises(Exception, match="not finite"):
        js.solve(model, bad, s, stability=None)
    with pytest.raises(Exception, match="not finite"):
        eqx.filter_jit(lambda g: js.solve(model, g, s, stability=None).value)(bad)


# ---------------------------------------------------------------------------------------------
# Parameters given as Python floats are trainable and do not recompile.


def test_python_float_parameters_get_gradients(getkey):
    from jaxstat.graphs import random_graph

    g = random_graph(getkey(), 8, 20)
    s = jr.normal(getkey(), (8,))

    def loss(mu):
        model = js.GradientModel(js.Quartic(mu=mu, beta=1.0), gamma=1.0)
        return jnp.sum(js.solve(model, g, s, stability=None).value ** 2)

    model = js.GradientModel(js.Quartic(mu=1.0, beta=1.0))  # Python floats
    assert eqx.is_inexact_array(model.potential.mu) and eqx.is_inexact_array(model.gamma)

    def loss_of_model(m):
        return jnp.sum(js.solve(m, g, s, stability=None).value ** 2)

    grads = eqx.filter_grad(loss_of_model)(model)
    h = 1e-5  # central differences in double precision: error ~ h^2
    fd = (loss(1.0 + h) - loss(1.0 - h)) / (2 * h)
    np.testing.assert_allclose(grads.potential.mu, fd, rtol=1e-7)
    assert grads.potential.mu != 0


def test_new_parameter_value_does_not_retrace(getkey):
    from jaxstat.graphs import random_graph

    g = random_graph(getkey(), 6, 12)
    s = jr.normal(getkey(), (6,))
    traces = []

    @eqx.filter_jit
    def run(model):
        traces.append(1)
        return js.solve(model, g, s, stability=None).value

    for mu in [1.0, 2.0, 3.5]:
        run(js.GradientModel(js.Quartic(mu=mu, beta=0.5), gamma=1.0))
    for gamma in [0.5, 1.5]:
        run(js.DrivenDampedModel(gamma=gamma, kappa=0.2))
    assert len(traces) == 2  # one per model type, not one per value


# ---------------------------------------------------------------------------------------------
# Result codes read as words.


def test_results_print_a_word():
    assert js.RESULTS[js.RESULTS.successful] == "successful"
    assert "successful" in repr(js.RESULTS.successful)
    assert "RESULTS<>" not in repr(js.RESULTS.successful)
    # Promoted from optimistix: the same item.
    import optimistix as optx

    assert bool(js.RESULTS.promote(optx.RESULTS.successful) == js.RESULTS.successful)
    assert "unstable" in js.RESULTS[js.RESULTS.unstable]


# ---------------------------------------------------------------------------------------------
# Bad inputs to layers.


def test_real_layer_refuses_complex_input(getkey):
    layer = _layer(getkey)
    x = jr.normal(getkey(), (12, 3)).astype(complex)
    with pytest.raises(TypeError, match="layer is real"):
        layer(x)
    with pytest.raises(TypeError, match="layer is real"):
        jax.jit(lambda x: layer(x))(x)
    # A complex model takes complex input.
    g = layer.graph
    cl = js.feature_layer(g, js.DrivenDampedModel(1.0, 0.0), 3, 2, key=getkey())
    assert cl(x).shape == (12, 4)


@pytest.mark.parametrize("d_in, d_out", [(0, 2), (3, 0), (-1, 2)])
def test_feature_layer_dimensions_positive(getkey, d_in, d_out):
    from jaxstat.graphs import random_graph

    g = random_graph(getkey(), 5, 8)
    with pytest.raises(ValueError, match="must be a positive integer"):
        js.feature_layer(g, js.GradientModel(), d_in, d_out, key=getkey())


# ---------------------------------------------------------------------------------------------
# Activation readouts.


@pytest.mark.parametrize(
    "readout, fn",
    [
        (js.Tanh(), np.tanh),
        (js.ReLU(), lambda u: np.maximum(u, 0)),
        (js.Softplus(), lambda u: np.logaddexp(0, u)),
        (js.Activation(jax.nn.gelu, lipschitz_constant=1.13), lambda u: np.asarray(jax.nn.gelu(u))),
    ],
    ids=["tanh", "relu", "softplus", "gelu"],
)
def test_activation_readouts(getkey, readout, fn):
    layer = _layer(getkey, readout=readout)
    x = jr.normal(getkey(), (12, 3))
    psi = layer.solve(x).value
    np.testing.assert_allclose(layer(x), fn(np.asarray(psi)), rtol=1e-12, atol=1e-14)
    # Complex states: the activation of [Re psi, Im psi].
    z = jr.normal(getkey(), (5, 2)) + 1j * jr.normal(getkey(), (5, 2))
    want = fn(np.concatenate([np.real(z), np.imag(z)], axis=-1))
    np.testing.assert_allclose(readout(z), want, rtol=1e-12, atol=1e-14)
    # The Lipschitz constant bounds the difference quotient on a sample.
    u, v = jr.normal(getkey(), (2, 1000)) * 3
    quotient = np.abs(readout(u) - readout(v)) / np.abs(u - v)
    assert quotient.max() <= readout.lipschitz + 1e-12


def test_activation_without_lipschitz_constant():
    with pytest.raises(ValueError, match="lipschitz_constant"):
        js.Activation(jax.nn.gelu).lipschitz


# ---------------------------------------------------------------------------------------------
# The stability certificate of a layer: on by default (as `solve`), off when asked.


def test_layer_stability_default_and_off_on_request(getkey):
    layer = _layer(getkey)
    x = jr.normal(getkey(), (12, 3))
    skipped = eqx.tree_at(lambda l: l.stability, layer, None, is_leaf=lambda v: v is None)
    cert = skipped.solve(x).stability
    assert cert.computed is False and np.isnan(float(cert.abscissa))
    asked = layer
    assert isinstance(asked.stability, js.AutoStability)
    sol = asked.solve(x)
    assert sol.stability.computed
    # Gradient model, real states: Df = -gamma (H + diag(mu + 3 beta psi^2)) (Quartic:
    # phi = mu/2 u^2 + beta/4 u^4), symmetric: the abscissa is -gamma * its smallest eigenvalue.
    H = np.asarray(layer.graph.as_dense())
    psi = np.asarray(sol.value)
    want = []
    for k in range(psi.shape[1]):
        J = H + np.diag(1.0 + 3.0 * psi[:, k] ** 2)
        want.append(-np.linalg.eigvalsh(J).min())
    # The state is (n, 2): the Jacobian is block diagonal over the two columns.
    np.testing.assert_allclose(sol.stability.abscissa, max(want), rtol=1e-10)
