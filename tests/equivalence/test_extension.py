"""A model, a source and a readout defined here, outside the package, work with the supra-graph,
the conversion to resolvent form and the complexity figures: everything those packages need is
asked of the objects (their properties), nothing is looked up by class.

The new classes are equivalent to existing ones, which gives the reference:

- `Tikhonov(mu)`: `F(psi) = (H + mu I) psi - s`, the gradient model with `Quadratic(mu)`;
- `TransposedSource(C, b)`: `s = C^T x + b`, the `NodeSource(C^T, b)`;
- `Scale(a)`: `rho(psi) = a psi`, `a Identity()` (Lipschitz constant `|a|`);

and the closed forms `psi* = (H + mu)^{-1} (C^T x + b)`, `Lip <= |a| |C|_2 / (min V + mu)`.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import jaxstat.equivalence as je
import jaxstat.graphs as jg
import jaxstat.stationary as js
import jaxstat.supragraph as jsg

from ..supragraph.test_supragraph import _node_jacobian_pattern as node_jacobian
from .test_lift import simple_graph


n, E, m, d = 7, 11, 4, 2  # nodes, edges, input rows, channels


class Tikhonov(js.AbstractModel):
    """`F(psi) = (H + mu I) psi - s`, dynamics `d psi/dt = -F`."""

    mu: jax.Array

    def residual(self, psi, source, H):
        return H.mv(psi) + self.mu * psi - source

    def vector_field(self, psi, source, H):
        return -self.residual(psi, source, H)

    @property
    def is_linear(self):
        return True

    @property
    def linear_part(self):
        # F = 1 (H - (-mu)) psi - s.
        return 1.0, -self.mu

    def monotonicity(self, lambda_min):
        return lambda_min() + self.mu


class TransposedSource(js.AbstractSource):
    """`s = C^T x + b`, `C` of shape `(m, n)`."""

    C: jax.Array
    b: jax.Array

    def __call__(self, x):
        return jnp.tensordot(self.C.T, x, axes=(1, 0)) + self.b

    @property
    def matrix(self):
        return self.C.T

    @property
    def bias(self):
        return self.b


class Scale(js.AbstractReadout):
    """`rho(psi) = a psi` with a fixed `a`."""

    a: float = eqx.field(static=True)

    def __call__(self, psi):
        return self.a * psi

    @property
    def is_affine(self):
        return True

    @property
    def is_node_local(self):
        return True

    @property
    def lipschitz(self):
        return abs(self.a)


class NoModulus(js.AbstractModel):
    """A model that only implements what a solve needs."""

    def residual(self, psi, source, H):
        return H.mv(psi) + psi + psi**3 - source

    def vector_field(self, psi, source, H):
        return -self.residual(psi, source, H)


MU, A = 0.7, -1.5


def _pair(key):
    """Two-layer networks, one with the new classes, one with the package's equivalents; the
    second layer's source is sparse so that the supra-graph has a pattern to check."""
    keys = jr.split(key, 6)
    layers_new, layers_ref = [], []
    for i, rows in enumerate((m, n)):
        g = simple_graph(keys[i], n, E, potential=False)
        V = 0.5 + jr.uniform(keys[2 + i], (n,))
        g = jg.Graph(g.senders, g.receivers, g.weights, n, potential=V)
        C = jr.normal(keys[4 + i], (rows, n))
        C = jnp.where(jnp.abs(C) > 0.6, C, 0.0)
        b = jnp.linspace(-1.0, 1.0, n)[:, None]
        layers_new.append(
            js.StationaryLayer(g, Tikhonov(jnp.asarray(MU)), TransposedSource(C, b), Scale(A))
        )
        layers_ref.append(
            js.StationaryLayer(
                g, js.GradientModel(js.Quadratic(MU)), js.NodeSource(C.T, b), js.Identity()
            )
        )
    return jsg.StationaryNetwork(layers_new), jsg.StationaryNetwork(layers_ref)


def _closed_form(net, x):
    """`rho_L(psi_L)` with `psi_l = (H_l + mu)^{-1} (C_l^T rho(psi_{l-1}) + b_l)`, dense."""
    h = x
    for layer in net.layers:
        M = layer.graph.as_dense() + MU * jnp.eye(n)
        h = A * jnp.linalg.solve(M, layer.source.C.T @ h + layer.source.b)
    return h


def test_supragraph_and_global_solve(getkey):
    new, ref = _pair(getkey())
    x = jr.normal(getkey(), (m, d))
    # The network knows it is affine (one linear solve), from the model and the readout.
    assert new.is_linear
    sol = jsg.solve(new, x)
    assert int(sol.num_steps) == 1
    np.testing.assert_allclose(new.output(sol.value), _closed_form(new, x), rtol=1e-10)
    # The supra-graph reads the new source's pattern (its matrix) through the new readout
    # without probing: the same graph as the package's equivalent network.
    S_new, S_ref = jsg.supragraph(new), jsg.supragraph(ref)
    np.testing.assert_array_equal(S_new.edges(), S_ref.edges())
    np.testing.assert_array_equal(S_new.graph.weights, S_ref.graph.weights)
    nnz = int(jnp.sum(new.layers[1].source.C != 0))
    assert S_new.num_inter_edges == nnz > 0
    # ... and it is the nonzero pattern of the actual Jacobian.
    np.testing.assert_array_equal(S_new.jacobian_pattern().toarray(), node_jacobian(new, x))


def test_conversion_to_resolvent(getkey):
    new, _ = _pair(getkey())
    x = jr.normal(getkey(), (m, d))
    res = je.to_resolvent(new)
    # z = -mu, B = C^T: the resolvent network computes the closed form.
    np.testing.assert_allclose(res.layers[0].z, -MU)
    np.testing.assert_allclose(res.layers[0].B, new.layers[0].source.C.T)
    np.testing.assert_allclose(res(x), _closed_form(new, x), rtol=1e-10)


def test_complexity_and_generalisation(getkey):
    new, ref = _pair(getkey())
    # Closed form per layer: |a| |C^T|_2 / (min V + mu), the product over the layers.
    expect = 1.0
    for layer in new.layers:
        m_l = float(jnp.min(layer.graph.potential)) + MU
        np.testing.assert_allclose(je.monotonicity(layer), m_l, rtol=1e-12)
        expect *= abs(A) * float(jnp.linalg.norm(layer.source.C, 2)) / m_l
    np.testing.assert_allclose(je.lipschitz_bound(new), expect, rtol=1e-12)
    # Against the equivalent network (readout Identity: Lipschitz 1 instead of |a|).
    np.testing.assert_allclose(
        je.lipschitz_bound(new), abs(A) ** 2 * je.lipschitz_bound(ref), rtol=1e-12
    )
    c_new, c_ref = je.complexity(new), je.complexity(ref)
    # GradientModel also stores its dynamics rates gamma and kappa (array leaves), Tikhonov has
    # none: 2 per layer fewer, sparse and dense alike.
    assert c_ref.num_params - c_new.num_params == 2 * 2
    assert c_ref.num_params_dense - c_new.num_params_dense == 2 * 2
    assert c_new.supra_edges == c_ref.supra_edges
    # The generalisation bound's box: the same coordinates (mu moves z = -mu at unit speed, as
    # Quadratic's mu does) and the same constants up to the readout's factor |a| per layer.
    kw = dict(input_shape=(m, d), input_norm=1.0, radius=1e-3)
    L_new, out_new, P_new = je.parameter_lipschitz(new, **kw)
    L_ref, out_ref, P_ref = je.parameter_lipschitz(ref, **kw)
    assert P_new == P_ref
    assert out_new > out_ref and L_new > L_ref  # |a| = 1.5 > 1 enlarges both


def test_missing_knowledge_is_a_clear_error(getkey):
    g = simple_graph(getkey(), n, E)
    layer = js.StationaryLayer(g, NoModulus(), js.NodeSource(jnp.eye(n), jnp.zeros(n)), Scale(2.0))
    with pytest.raises(ValueError, match="no strong-monotonicity modulus"):
        je.lipschitz_bound(layer)
    with pytest.raises(ValueError, match="not a resolvent layer"):
        je.to_resolvent(layer)
    assert not jsg.StationaryNetwork([layer, layer]).is_linear
