"""Natural gradient and mirror descent on the orthant: closed forms, face crossing, stratum
reporting, composition with optax, failure paths."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import jaxstat.graphs as jg
import jaxstat.stationary as js
import jaxstat.strata as st


def run(tx, w, grad_fn, steps):
    """`steps` updates of `w` under `tx` with gradient `grad_fn(w)`, in a `lax.scan`; returns the
    trajectory (steps + 1, ...) and the final optimiser state."""
    state = tx.init(w)

    def body(carry, _):
        w, state = carry
        u, state = tx.update(grad_fn(w), state, w)
        w = optax.apply_updates(w, u)
        return (w, state), w

    (_, state), traj = jax.lax.scan(body, (w, state), None, length=steps)
    return jnp.concatenate([w[None], traj]), state


# ---------------------------------------------------------------------------------------------
# Closed forms at a linear loss L(w) = <c, w>.


def test_natural_gradient_dies_in_finite_time_at_linear_loss():
    """Euler natural gradient at `grad L = c > 0`: `(w_k + eps) = (1 - eta c)^k (w_0 + eps)` until
    the first `k` with `(1 - eta c)^k (w_0 + eps) <= eps`, where the edge lands exactly on 0 and
    stays there."""
    eps, eta = 0.01, 0.1
    c = jnp.array([1.0, 2.0, 0.5])
    w0 = jnp.array([1.0, 0.3, 2.0])
    traj, state = run(st.natural_gradient(eta, st.ShiftedEntropy(eps)), w0, lambda w: c, 200)
    k = jnp.arange(201)[:, None]
    closed = (1 - eta * c) ** k * (w0 + eps) - eps
    death = np.argmax(np.asarray(closed <= 0), axis=0)  # first step at or below 0
    assert np.all(death > 0) and np.all(death < 200)
    for e in range(3):
        # Rounding of the recursion: a few ulps per step.
        np.testing.assert_allclose(traj[: death[e], e], closed[: death[e], e], rtol=1e-12)
        assert np.all(traj[death[e] :, e] == 0.0)  # exactly 0: dead
    s = st.stratum(state)
    np.testing.assert_array_equal(s.deaths, [1, 1, 1])
    np.testing.assert_array_equal(s.births, [0, 0, 0])
    assert int(s.num_alive) == 0


def test_mirror_descent_integrates_the_flow_exactly():
    """Mirror step at a constant gradient: `w_k = (w_0 + eps) exp(-c eta k) - eps`, the
    natural-gradient flow at time `t = k eta`; death at `k* = ceil(log((w_0 + eps)/eps) / (c eta))`,
    the first step past the flow's finite death time `t* = log((w_0 + eps)/eps) / c`."""
    eps, eta = 0.01, 0.05
    c = jnp.array([1.0, 3.0])
    w0 = jnp.array([1.0, 0.2])
    traj, _ = run(st.mirror_descent(eta, st.ShiftedEntropy(eps)), w0, lambda w: c, 200)
    t_star = np.log((np.asarray(w0) + eps) / eps) / np.asarray(c)
    k_star = np.ceil(t_star / eta).astype(int)
    k = jnp.arange(201)[:, None]
    flow = (w0 + eps) * jnp.exp(-c * eta * k) - eps
    for e in range(2):
        np.testing.assert_allclose(traj[: k_star[e], e], flow[: k_star[e], e], rtol=1e-12)
        assert traj[k_star[e] - 1, e] > 0
        assert np.all(traj[k_star[e] :, e] == 0.0)


def test_entropic_mirror_descent_never_reaches_zero():
    """`Entropy()`: the exponentiated gradient `w_k = w_0 exp(-c eta k)` stays positive (no death,
    as far as float64 can represent it), while the shifted potential kills the same edge."""
    c, eta, w0 = jnp.array([1.0]), 0.5, jnp.array([1.0])
    traj, state = run(st.mirror_descent(eta, st.Entropy()), w0, lambda w: c, 600)
    np.testing.assert_allclose(traj[:, 0], jnp.exp(-0.5 * jnp.arange(601)), rtol=1e-12)
    assert bool(jnp.all(traj > 0))
    assert int(st.stratum(state).num_deaths) == 0
    traj, state = run(st.mirror_descent(eta, st.ShiftedEntropy(1e-3)), w0, lambda w: c, 600)
    assert traj[-1, 0] == 0.0 and int(st.stratum(state).num_deaths) == 1


@pytest.mark.parametrize("method", ["natural", "mirror"])
def test_birth_when_descent_points_inward(method):
    """A dead edge (`w_e = 0`) is born when its gradient is negative (the descent direction points
    into the orthant): `w' = eta eps |g|` (natural) or `eps expm1(eta |g|)` (mirror). With a
    positive gradient it stays exactly at 0. The entropic metric never revives an edge."""
    eps, eta = 0.02, 0.1
    make = st.natural_gradient if method == "natural" else st.mirror_descent
    w = jnp.array([0.0, 0.0, 1.0])
    g = jnp.array([-2.0, 3.0, 0.5])
    tx = make(eta, st.ShiftedEntropy(eps))
    state = tx.init(w)
    u, state = tx.update(g, state, w)
    w1 = optax.apply_updates(w, u)
    born = eta * eps * 2.0 if method == "natural" else eps * np.expm1(eta * 2.0)
    np.testing.assert_allclose(w1[0], born, rtol=1e-14)
    assert w1[1] == 0.0
    s = st.stratum(state)
    np.testing.assert_array_equal(s.born, [True, False, False])
    np.testing.assert_array_equal(s.support, [True, False, True])
    assert int(s.num_born) == 1 and int(s.num_died) == 0

    tx = make(eta, st.Entropy())
    u, _ = tx.update(g, tx.init(w), w)
    assert float(optax.apply_updates(w, u)[0]) == 0.0


@pytest.mark.parametrize("method", ["natural", "mirror"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_weights_never_negative_and_counts_add_up(getkey, method, dtype):
    """Random gradients and large steps: weights stay `>= 0`, many edges die and are born again,
    and per edge `births - deaths = support_end - support_start`."""
    make = st.natural_gradient if method == "natural" else st.mirror_descent
    w0 = jr.uniform(getkey(), (50,), dtype) * (jr.uniform(getkey(), (50,)) > 0.3)
    keys = jr.split(getkey(), 300)
    tx = make(2.0, st.ShiftedEntropy(0.05))
    state = tx.init(w0)

    def body(carry, key):
        w, state = carry
        g = jr.normal(key, w.shape, dtype)
        u, state = tx.update(g, state, w)
        w = optax.apply_updates(w, u)
        return (w, state), jnp.min(w)

    (w, state), mins = jax.lax.scan(body, (w0, state), keys)
    assert w.dtype == dtype
    assert float(jnp.min(mins)) == 0.0  # faces are reached exactly, never crossed
    s = st.stratum(state)
    assert int(s.num_births) > 20 and int(s.num_deaths) > 20
    np.testing.assert_array_equal(s.births - s.deaths, (w > 0).astype(int) - (w0 > 0).astype(int))
    np.testing.assert_array_equal(s.support, w > 0)


# ---------------------------------------------------------------------------------------------
# The metric.


@pytest.mark.parametrize("name", ["shifted", "entropy", "euclidean"])
def test_natural_gradient_is_inverse_hessian_times_gradient(getkey, name):
    """Interior step (no clipping): `u = -eta (hess psi(w))^{-1} g`, Hessian by `jax.hessian`."""
    pot = {"shifted": st.ShiftedEntropy(0.1), "entropy": st.Entropy(), "euclidean": st.Euclidean()}
    pot = pot[name]
    w = jr.uniform(getkey(), (8,), minval=0.5, maxval=2.0)
    g = jr.normal(getkey(), (8,)) * 0.1
    eta = 0.3
    tx = st.natural_gradient(eta, pot)
    u, _ = tx.update(g, tx.init(w), w)
    expected = -eta * jnp.linalg.solve(jax.hessian(pot.value)(w), g)
    np.testing.assert_allclose(u, expected, rtol=1e-12)
    # The mirror step agrees to first order: |u_mirror - u_natural| = O(eta^2).
    errs = []
    for h in [1e-2, 1e-3]:
        tx_m, tx_n = st.mirror_descent(h, pot), st.natural_gradient(h, pot)
        um, _ = tx_m.update(g, tx_m.init(w), w)
        un, _ = tx_n.update(g, tx_n.init(w), w)
        errs.append(float(jnp.max(jnp.abs(um - un))))
    if name != "euclidean":  # identical for the Euclidean potential
        assert 80 < errs[0] / errs[1] < 120  # second order: ratio 100 for a tenfold step


def magnetic_graph(key, n=6, num_edges=10):
    k1, k2 = jr.split(key)
    g = jg.random_graph(k1, n, num_edges)
    w = g.weights.at[:3].set(0.0)  # three dead edges
    theta = jr.uniform(k2, (num_edges,), minval=-1.0, maxval=1.0)
    return jg.Graph(g.senders, g.receivers, w, n, connection=jg.PhaseConnection(theta))


@pytest.mark.parametrize("method", ["natural", "mirror"])
def test_phases_get_the_kahler_factor(getkey, method):
    """Phases move by `-eta (w_e + eps) grad_theta` (the Kähler-Hessian metric on `w + i theta`),
    also on dead edges (factor `eps`), and are not clipped."""
    eps, eta = 0.05, 0.7
    g = magnetic_graph(getkey())
    params = eqx.filter(g, eqx.is_inexact_array)
    grads = jax.tree.map(lambda x: jr.normal(getkey(), x.shape), params)
    make = st.natural_gradient if method == "natural" else st.mirror_descent
    tx = make(eta, st.ShiftedEntropy(eps))
    u, state = tx.update(grads, tx.init(params), params)
    expected = -eta * (g.weights + eps) * grads.connection.theta
    np.testing.assert_allclose(u.connection.theta, expected, rtol=1e-14)
    new = eqx.apply_updates(g, u)
    assert bool(jnp.all(new.weights >= 0))
    assert st.stratum(state).support.weights.shape == (10,)
    assert st.stratum(state).support.connection is None or (
        st.stratum(state).support.connection.theta is None
    )


def test_eps_to_zero_recovers_multiplicative_updates(getkey):
    """As `eps -> 0`, the shifted updates tend to the entropic (multiplicative) ones at rate
    `O(eps)`: natural gradient `w (1 - eta g)`, mirror step `w exp(-eta g)`. Fitted log-log slope
    in [0.95, 1.05] over five decades."""
    w = jr.uniform(getkey(), (20,), minval=0.5, maxval=2.0)
    g = jr.normal(getkey(), (20,))
    eta = 0.1
    epss = np.logspace(-8, -3, 6)
    for make in (st.natural_gradient, st.mirror_descent):
        tx0 = make(eta, st.Entropy())
        u0, _ = tx0.update(g, tx0.init(w), w)
        errs = []
        for eps in epss:
            tx = make(eta, st.ShiftedEntropy(eps))
            u, _ = tx.update(g, tx.init(w), w)
            errs.append(float(jnp.max(jnp.abs(u - u0))))
        slope = np.polyfit(np.log(epss), np.log(errs), 1)[0]
        assert 0.95 < slope < 1.05, (make.__name__, slope)
    # and explicitly: the multiplicative update itself
    np.testing.assert_allclose(optax.apply_updates(w, u0), w * jnp.exp(-eta * g), rtol=1e-14)


# ---------------------------------------------------------------------------------------------
# Composition with optax and equinox.


class Model(eqx.Module):
    layer: js.StationaryLayer

    def __call__(self, x):
        return self.layer(x)


def small_model(key, n=8, m=3):
    k1, k2, k3 = jr.split(key, 3)
    g = jg.random_graph(k1, n, 16)
    g = jg.Graph(g.senders, g.receivers, g.weights, n, potential=jnp.full((n,), 0.1))
    source = js.NodeSource(jr.normal(k2, (n, m)), 0.1 * jr.normal(k3, (n, 1)))
    return Model(js.StationaryLayer(g, js.GradientModel(js.Quadratic(1.0)), source, js.Identity()))


def test_graph_labels_select_weights_and_phases(getkey):
    model = small_model(getkey())
    params = eqx.filter(model, eqx.is_inexact_array)
    labels = st.graph_labels(params)
    assert labels.layer.graph.weights == "graph"
    assert labels.layer.graph.potential == "rest"
    assert labels.layer.source.B == "rest" and labels.layer.source.b == "rest"
    g = magnetic_graph(getkey())
    labels = st.graph_labels(eqx.filter(g, eqx.is_inexact_array), graph="a", rest="b")
    assert labels.weights == "a" and labels.connection.theta == "a"


class Linear(eqx.Module):
    """`x -> (L_w + diag V)(B x + b)`: a graph, its potential and a source, without a solve (the
    stationary solve is trained with `partition` in `test_planted.py`)."""

    graph: jg.Graph
    source: js.NodeSource

    def __call__(self, x):
        return self.graph.hamiltonian(self.source(x))


def test_partition_composes_with_any_optimiser(getkey):
    """`partition(natural_gradient, adam)` on a whole model (graph weights, node potential, source)
    equals the two optimisers applied separately; jitted training lowers the loss and keeps
    weights `>= 0`. Everything runs in one compiled program (compilation dominates here)."""
    layer = small_model(getkey()).layer
    model = Linear(layer.graph, layer.source)
    rng = np.random.default_rng(0)
    x, target = jnp.asarray(rng.normal(size=(3, 5))), jnp.asarray(rng.normal(size=(8, 5)))

    def loss(model):
        return jnp.mean((model(x) - target) ** 2)

    tx = st.partition(st.natural_gradient(0.05), optax.adam(1e-2))
    ng, adam = st.natural_gradient(0.05), optax.adam(1e-2)

    @eqx.filter_jit
    def check_and_train(model):
        params, static = eqx.partition(model, eqx.is_inexact_array)
        state = tx.init(params)
        grads = jax.grad(lambda p: loss(eqx.combine(p, static)))(params)
        u, _ = tx.update(grads, state, params)
        # Separately: natural gradient on the graph weights, adam on the rest (B, b and V).
        w = params.graph.weights
        u_w, _ = ng.update(grads.graph.weights, ng.init(w), w)
        rest = (params.source.B, params.source.b, params.graph.potential)
        g_rest = (grads.source.B, grads.source.b, grads.graph.potential)
        u_rest, _ = adam.update(g_rest, adam.init(rest))
        together = (u.graph.weights, (u.source.B, u.source.b, u.graph.potential))

        def body(carry, _):
            params, state = carry
            value, grads = jax.value_and_grad(lambda p: loss(eqx.combine(p, static)))(params)
            u, state = tx.update(grads, state, params)
            return (eqx.apply_updates(params, u), state), value

        (params, state), losses = jax.lax.scan(body, (params, state), None, length=30)
        return together, (u_w, u_rest), eqx.combine(params, static), state, losses

    together, separate, model, state, losses = check_and_train(model)
    for a, b in zip(jax.tree.leaves(together), jax.tree.leaves(separate)):
        np.testing.assert_allclose(a, b, rtol=1e-14)
    assert losses[-1] < 0.9 * losses[0]
    assert bool(jnp.all(model.graph.weights >= 0))
    s = st.stratum(state)
    assert s.support.graph.weights.shape == (16,)
    assert int(s.num_alive) == int(jnp.sum(model.graph.weights > 0))


def test_momentum_and_schedules(getkey):
    """Momentum and learning-rate schedules go through optax; the chain still clips and records."""
    w = jnp.array([1.0, 0.5])
    sched = optax.exponential_decay(0.5, 1, 0.5)
    tx = st.natural_gradient(sched, st.ShiftedEntropy(0.01), momentum=0.9)
    traj, state = run(tx, w, lambda w: jnp.array([1.0, -1.0]), 4)
    # heavy ball on the preconditioned gradient v_k = g_k + 0.9 v_{k-1}, step lr_k v_k
    wk, v = w, jnp.zeros(2)
    for k in range(4):
        v = (wk + 0.01) * jnp.array([1.0, -1.0]) + 0.9 * v
        wk = jnp.maximum(wk - 0.5 * 0.5**k * v, 0.0)
        np.testing.assert_allclose(traj[k + 1], wk, rtol=1e-14)
    tx = st.mirror_descent(sched, st.ShiftedEntropy(0.01))
    traj, _ = run(tx, w, lambda w: jnp.array([1.0, -1.0]), 3)
    decay = 0.5 * (1 + 0.5 + 0.25)
    expected = (w + 0.01) * jnp.exp(-decay * jnp.array([1.0, -1.0])) - 0.01
    np.testing.assert_allclose(traj[-1], expected, rtol=1e-13)


def test_vmap_over_weights_matches_loop(getkey):
    ws = jr.uniform(getkey(), (4, 6)) * (jr.uniform(getkey(), (4, 6)) > 0.3)
    gs = jr.normal(getkey(), (4, 6))
    tx = st.natural_gradient(0.8, st.ShiftedEntropy(0.1))

    @jax.jit
    def step(w, g):
        u, state = tx.update(g, tx.init(w), w)
        return u, st.stratum(state).died

    u, died = jax.jit(jax.vmap(step))(ws, gs)
    for i in range(4):
        ui, di = step(ws[i], gs[i])
        np.testing.assert_allclose(u[i], ui, rtol=1e-14)
        np.testing.assert_array_equal(died[i], di)


# ---------------------------------------------------------------------------------------------
# Failure paths.


def test_needs_params():
    tx = st.natural_gradient(0.1)
    w = jnp.ones(3)
    with pytest.raises(ValueError, match="params"):
        tx.update(w, tx.init(w), None)
    with pytest.raises(ValueError, match="params"):
        st.mirror_step().update(w, None, None)


def test_rejects_non_edge_parameters_in_a_graph(getkey):
    model = small_model(getkey())
    params = eqx.filter(model, eqx.is_inexact_array)
    tx = st.natural_gradient(0.1)
    with pytest.raises(ValueError, match="potential is neither an edge weight"):
        tx.init(params)
    conn = jg.PhaseConnection(jnp.zeros(3))
    with pytest.raises(ValueError, match="outside its Graph"):
        tx.init({"c": conn})
    with pytest.raises(ValueError, match="must be non-negative"):
        tx.init({"B": -jnp.ones(3)})
    with pytest.raises(TypeError, match="AbstractHessianPotential"):
        st.natural_gradient(0.1, "entropy")


def test_phases_without_weights(getkey):
    g = magnetic_graph(getkey())
    params = eqx.filter(g, eqx.is_inexact_array)
    labels = jax.tree.map(lambda _: "rest", params)
    labels = eqx.tree_at(lambda t: t.connection.theta, labels, "graph")
    tx = optax.partition({"graph": st.natural_gradient(0.1), "rest": optax.sgd(0.1)}, labels)
    with pytest.raises(ValueError, match="without the graph's weights"):
        tx.init(params)


def test_nonfinite_gradient_raises_inside_jit():
    tx = st.natural_gradient(0.1)
    w = jnp.ones(3)
    state = tx.init(w)
    step = eqx.filter_jit(lambda g, state, w: tx.update(g, state, w))
    with pytest.raises(eqx.EquinoxRuntimeError, match="non-finite update"):
        jax.block_until_ready(step(jnp.array([1.0, jnp.nan, 0.0]), state, w))


def test_stratum_lookup_errors():
    with pytest.raises(ValueError, match="0 StratumStates"):
        st.stratum(optax.adam(0.1).init(jnp.ones(2)))
    tx = optax.partition(
        {"a": st.natural_gradient(0.1), "b": st.mirror_descent(0.1)}, {"x": "a", "y": "b"}
    )
    with pytest.raises(ValueError, match="2 StratumStates"):
        st.stratum(tx.init({"x": jnp.ones(2), "y": jnp.ones(2)}))


def test_summary():
    w = jnp.array([0.0, 1.0, 0.001])
    tx = st.natural_gradient(1.0, st.ShiftedEntropy(0.01))
    _, state = tx.update(jnp.array([-1.0, 0.0, 1.0]), tx.init(w), w)
    assert st.stratum(state).summary() == ("2/3 edges alive; last step +1 -1; since init +1 -1")
