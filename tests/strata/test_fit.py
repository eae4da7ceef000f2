"""`strata.fit` (the compiled training loop) against a hand-written loop, and the real-data
pipeline at small size: semi-supervised node classification on the karate club, graph weights
learned with strata, against scikit-learn's LabelSpreading on the same graph."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import networkx as nx
import numpy as np
import optax
import pytest

import jaxstat.graphs as jg
import jaxstat.stationary as js
import jaxstat.strata as st


class Linear(eqx.Module):
    graph: jg.Graph
    B: jax.Array

    def __call__(self, x):
        return self.graph.laplacian(self.B @ x)


def test_fit_equals_a_python_loop():
    """`fit` = `steps` updates of the optimiser, one subkey per step, with the loss recorded before
    each update and the support size after it (float64, same operations: equal to rounding)."""
    rng = np.random.default_rng(0)
    g = jg.from_edges(np.array([[0, 1], [1, 2], [2, 3], [3, 0], [0, 2]]), rng.uniform(size=5), 4)
    g = eqx.tree_at(lambda g: g.weights, g, g.weights.at[0].set(0.0))
    model = Linear(g, jnp.asarray(rng.normal(size=(4, 3))))
    x, target = jnp.asarray(rng.normal(size=(3, 6))), jnp.asarray(rng.normal(size=(4, 6)))

    def loss(model, key):
        noise = 0.1 * jr.normal(key, target.shape)
        return jnp.mean((model(x) - target - noise) ** 2)

    tx = st.partition(st.natural_gradient(0.5, momentum=0.5), optax.adam(0.05))
    key = jr.key(3)
    out = st.fit(loss, model, tx, 12, key=key)

    @eqx.filter_jit
    def step(model, state, k):
        value, grads = eqx.filter_value_and_grad(loss)(model, k)
        u, state = tx.update(grads, state, eqx.filter(model, eqx.is_inexact_array))
        return eqx.apply_updates(model, u), state, value, st.stratum(state).num_alive

    state = tx.init(eqx.filter(model, eqx.is_inexact_array))
    losses, alive = [], []
    for k in jr.split(key, 12):
        model, state, value, num_alive = step(model, state, k)
        losses.append(value)
        alive.append(num_alive)
    np.testing.assert_allclose(out.losses, losses, rtol=1e-12)
    np.testing.assert_array_equal(out.num_alive, alive)
    np.testing.assert_allclose(out.model.graph.weights, model.graph.weights, rtol=1e-12)
    np.testing.assert_allclose(out.model.B, model.B, rtol=1e-12)
    # Without a StratumState there is nothing to count; without a key the loss takes the model.
    plain = st.fit(lambda m: jnp.mean(m(x) ** 2), model, optax.sgd(1e-3), 2)
    assert plain.num_alive is None and plain.losses.shape == (2,)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        st.fit(loss, model, tx, 0, key=key)


def karate():
    G = nx.karate_club_graph()
    graph, nodes = jg.from_networkx(G)
    y = np.array([0 if G.nodes[v]["club"] == "Mr. Hi" else 1 for v in nodes])
    mask = np.zeros(len(y), bool)
    rng = np.random.default_rng(0)
    for c in (0, 1):  # two labelled nodes per class
        mask[rng.choice(np.flatnonzero(y == c), 2, replace=False)] = True
    return graph, y, mask


def test_karate_semisupervised():
    """The karate club split from 4 labels. The layer `psi* = (L_w + mu)^{-1} (W y_given + b)`
    starts as label propagation (checked against a dense solve); trained end to end with the label
    trick (graph weights by natural gradient, `W`, `b` by Adam), its accuracy on the 30 unlabelled
    members matches or beats scikit-learn's LabelSpreading with the same graph as kernel."""
    from sklearn.semi_supervised import LabelSpreading

    graph, y, mask = karate()
    n, mu = len(y), 0.1
    Y = jax.nn.one_hot(y, 2)
    m = jnp.asarray(mask, float)
    layer = js.StationaryLayer(
        graph,
        js.GradientModel(js.Quadratic(mu)),
        js.FeatureSource(jnp.eye(2), jnp.zeros(2)),
        js.Identity(),
    )
    given = Y * m[:, None]
    dense = jnp.linalg.solve(graph.as_dense(potential=False) + mu * jnp.eye(n), given)
    # Newton-GMRES to the float64 default tolerance 1e-10 on a system of condition ~ 1e3.
    np.testing.assert_allclose(layer(given), dense, rtol=1e-7, atol=1e-9)

    def loss(layer, key):
        hide = jr.bernoulli(key, 0.5, (n,)) * m
        logits = 10 * layer(Y * (m - hide)[:, None])
        ce = -jnp.sum(jax.nn.log_softmax(logits) * Y, axis=1)
        return jnp.sum(ce * hide) / jnp.maximum(jnp.sum(hide), 1)

    tx = st.partition(st.natural_gradient(0.02), optax.adam(1e-3))
    out = st.fit(loss, layer, tx, 100, key=jr.key(0))
    w = out.model.graph.weights
    assert bool(jnp.all(w >= 0)) and int(out.num_alive[-1]) == int(jnp.sum(w > 0))
    assert not np.allclose(w, graph.weights)  # the graph was learned
    acc = np.mean(np.argmax(out.model(given), axis=1)[~mask] == y[~mask])

    A = -np.asarray(graph.as_dense(potential=False))
    np.fill_diagonal(A, 0.0)

    def kernel(a, b):
        return A[np.ix_(a[:, 0].astype(int), b[:, 0].astype(int))]

    idx = np.arange(n, dtype=float)[:, None]
    peer = LabelSpreading(kernel=kernel).fit(idx, np.where(mask, y, -1)).transduction_
    acc_peer = np.mean(peer[~mask] == y[~mask])
    assert acc >= acc_peer >= 0.9, (acc, acc_peer)
