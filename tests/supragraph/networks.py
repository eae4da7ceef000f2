"""Small stationary networks shared by the supragraph tests (float64).

Few distinct structures on purpose: every structure costs one compilation per solver, so the
tests reuse these rather than building new shapes. Parameters are drawn with numpy (seeded):
eager `jax.random` calls compile one small program per shape, which dominates at these sizes.
"""

import functools
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np

import jaxstat.graphs as jg
import jaxstat.stationary as js
import jaxstat.supragraph as sg


def rng(seed):
    return np.random.default_rng(seed)


def normal(seed, shape):
    """Seeded standard normal draws as a float64 jax array."""
    return jnp.asarray(rng(seed).standard_normal(shape))


def random_graph(r, n, e, *, magnetic=False):
    """`e` distinct random edges on `n` nodes, weights in `[0.5, 1.5]`; with `magnetic`, a U(1)
    connection and a node potential in `[0, 1]` (a complex Hamiltonian)."""
    pairs = np.array([(i, j) for i in range(n) for j in range(i + 1, n)])
    edges = pairs[r.choice(len(pairs), e, replace=False)]
    weights = r.uniform(0.5, 1.5, e)
    if not magnetic:
        return jg.from_edges(edges, jnp.asarray(weights), n)
    return jg.from_edges(
        edges,
        jnp.asarray(weights),
        n,
        connection=jg.PhaseConnection(jnp.asarray(r.uniform(-np.pi, np.pi, e))),
        potential=jnp.asarray(r.uniform(0, 1, n)),
    )


def kerr_network(seed=0, kappa=0.4):
    """Complex: two driven-damped Kerr layers on one magnetic graph (n = 12), feature sources,
    widths 4, 4, `ReIm` readouts; input of shape (12, 3). `gamma` (and `kappa` unless it is
    the Python float 0.0, the linear network) are array leaves, differentiated. Small `kappa`
    keeps every layer on its unique (monostable) branch. All layers solve for states of one
    shape on one graph: a single compilation of the layer solve serves them all."""
    r = rng(seed)
    g = random_graph(r, 12, 24, magnetic=True)
    kappa = kappa if isinstance(kappa, float) and kappa == 0.0 else jnp.array(kappa)
    model = js.DrivenDampedModel(gamma=jnp.array(0.8), kappa=kappa)
    layers, d_in = [], 3
    for d_out in (4, 4):  # as `feature_network(g, model, [3, 4, 4])`, numpy draws
        lim = 1 / np.sqrt(d_in)
        W = jnp.asarray(r.uniform(-lim, lim, (d_out, d_in)))
        b = jnp.asarray(r.uniform(-lim, lim, d_out))
        layers.append(js.StationaryLayer(g, model, js.FeatureSource(W, b), js.ReIm()))
        d_in = 2 * d_out
    return sg.StationaryNetwork(layers)


def sparse_node_network(seed, model, sizes=(7, 10, 10), density=0.4, readout=js.Identity()):
    """Layers on random combinatorial graphs (`2 n` edges) with sparse `NodeSource` couplings
    `B_l` (about `density` of the entries nonzero); input of shape `(sizes[0], 2)`."""
    r = rng(seed)
    layers = []
    for m, n in zip(sizes[:-1], sizes[1:]):
        g = random_graph(r, n, 2 * n)
        B = np.where(r.uniform(size=(n, m)) < density, r.standard_normal((n, m)), 0.0)
        b = 0.1 * r.standard_normal((n, 1))
        layers.append(
            js.StationaryLayer(g, model, js.NodeSource(jnp.asarray(B), jnp.asarray(b)), readout)
        )
    return sg.StationaryNetwork(layers)


def quartic_network(seed=2):
    """Real: two Gross-Pitaevskii gradient layers (`mu`, `beta` array leaves) on different graphs,
    7 input nodes -> 10 -> 10 through sparse `NodeSource` couplings, identity readouts."""
    model = js.GradientModel(js.Quartic(jnp.array(1.0), jnp.array(0.8)))
    return sparse_node_network(seed, model)


def linear_network(seed=4):
    """Complex and linear: the Kerr network's layout with `kappa = 0` (resolvent layers
    `(gamma + i H) psi = s`, real-linear `ReIm` readouts): `is_linear` holds."""
    return kerr_network(seed, kappa=0.0)


INPUT_SHAPES = {"kerr": (12, 3), "quartic": (7, 2), "linear": (12, 3)}
BUILDERS = {"kerr": kerr_network, "quartic": quartic_network, "linear": linear_network}


class Case(NamedTuple):
    net: sg.StationaryNetwork
    x: jax.Array
    target: jax.Array
    loss: Callable


@functools.cache
def case(name) -> Case:
    """`(net, x, target, loss)`, built once per session: the same objects (the loss function
    above all, a static argument of the jitted solvers) let every test share the compilations.
    The loss is in residual form, `l = 1/2 |rho_L(psi_L) - target|^2`."""
    net = BUILDERS[name]()
    x = normal(11, INPUT_SHAPES[name])
    target = normal(12, jax.eval_shape(net, x).shape)

    def loss(states, target):
        return net.output(states) - target

    return Case(net, x, target, loss)


@functools.cache
def reference(name):
    """The sequential forward pass and backpropagation through it: `(states, (d l / d net,
    d l / d x))`, `jax.grad` through each layer's implicit adjoint."""
    net, x, target, _ = case(name)

    def value(nx):
        net, x = nx
        return 0.5 * jnp.sum((net(x) - target) ** 2)

    return net.states(x), eqx.filter_grad(value)((net, x))


@eqx.filter_jit
def dense_jacobian(net, states, x):
    """The global Jacobian as a dense real matrix (packed-state order)."""
    return lx.materialise(net.jacobian(states, x)).as_matrix()


def flat(tree):
    """All inexact leaves of a pytree, raveled into one vector."""
    return jnp.concatenate([jnp.ravel(v) for v in jax.tree.leaves(tree)])


def rel_err(a, b):
    a, b = flat(a), flat(b)
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))
