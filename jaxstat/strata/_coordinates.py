"""Finding the edge coordinates (weights and phases) in a pytree of parameters.

A strata transformation acts on *edge coordinates*: the `weights` of every
[`jaxstat.graphs.Graph`][] (coordinates on the orthant `w >= 0`), the phases `connection.theta` of a
graph with a [`jaxstat.graphs.PhaseConnection`][] (angular coordinates whose metric factor is set by
the same edge's weight), and any floating array that is not inside a graph (taken as a bare vector
of edge weights). Any other floating array inside a graph (a node potential, connection blocks)
is an error: route it to another optimiser with [`jaxstat.strata.partition`][].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.tree_util as jtu

from ..graphs import AbstractConnection, Graph, PhaseConnection


_OTHER = "other"


def _is_node(x) -> bool:
    return isinstance(x, (Graph, AbstractConnection))


def _kinds(g: Graph):
    """A tree shaped like `g`: `"weight"` at `g.weights`, `"phase"` at `g.connection.theta` (a
    `PhaseConnection`'s phases), `"other"` at every other leaf. The coordinates are located through
    the graph's public attributes, not by matching field names in tree paths."""
    kinds = jtu.tree_map(lambda _: _OTHER, g)
    if eqx.is_array(g.weights):
        kinds = eqx.tree_at(lambda t: t.weights, kinds, "weight")
    if isinstance(g.connection, PhaseConnection) and eqx.is_array(g.connection.theta):
        kinds = eqx.tree_at(lambda t: t.connection.theta, kinds, "phase")
    return kinds


def map_coordinates(
    fn: Callable[..., Any],
    default: Callable[..., Any],
    params,
    *trees,
):
    """Map over the edge coordinates of `params` (and the matching leaves of `trees`).

    `fn(kind, w, p, *xs)` is called at each coordinate leaf `p`, with `kind` `"weight"` or
    `"phase"` and `w` the edge weights setting its metric (`p` itself for weights);
    `default(p, *xs)` at every other leaf. Returns a tree shaped like `params`.
    """

    def visit(path, p, *xs):
        if isinstance(p, Graph):
            return _visit_graph(path, p, *xs)
        if isinstance(p, AbstractConnection):
            raise ValueError(
                f"found a connection at {jtu.keystr(path) or 'the root'} outside its Graph: its "
                "phases need the edge weights that set their metric, so pass the whole Graph"
            )
        if eqx.is_inexact_array(p):
            return fn("weight", p, p, *xs)
        return default(p, *xs)

    def _visit_graph(gpath, g, *gs):
        w = g.weights if eqx.is_inexact_array(g.weights) else None

        def leaf(path, p, kind, *xs):
            if not eqx.is_inexact_array(p):
                return default(p, *xs)
            if kind == "weight":
                return fn("weight", p, p, *xs)
            if kind == "phase":
                if w is None:
                    raise ValueError(
                        f"the phases {jtu.keystr(gpath)}.connection.theta are optimised without "
                        "the graph's weights, which set their metric: select both"
                    )
                return fn("phase", w, p, *xs)
            where = jtu.keystr(gpath) + jtu.keystr(path)
            raise ValueError(
                f"{where} is neither an edge weight nor a connection phase; strata "
                "transformations act on edge coordinates only: route the other parameters to "
                "another optimiser with jaxstat.strata.partition(graph_tx, rest_tx)"
            )

        return jtu.tree_map_with_path(leaf, g, _kinds(g), *gs)

    return jtu.tree_map_with_path(visit, params, *trees, is_leaf=_is_node)


def graph_labels(params, graph: str = "graph", rest: str = "rest"):
    """Labels for `optax.partition`: `graph` at every edge weight and connection phase of every
    [`jaxstat.graphs.Graph`][] in `params`, `rest` at every other leaf.

    **Arguments:**

    - `params`: a pytree, typically `eqx.filter(model, eqx.is_inexact_array)`.
    - `graph`, `rest`: the two labels.

    **Returns:** a pytree of labels shaped like `params`.

    **Example:**

    ```python
    import equinox as eqx
    import jax.random as jr
    import jaxstat.graphs as jg
    import jaxstat.stationary as js
    import optax
    from jaxstat.strata import graph_labels, natural_gradient

    graph = jg.knn_graph(jr.normal(jr.key(0), (50, 2)), k=4)
    model = js.feature_layer(graph, js.GradientModel(js.Quadratic(1.0)), 2, 1, key=jr.key(1))
    labels = graph_labels(eqx.filter(model, eqx.is_inexact_array))
    tx = optax.partition({"graph": natural_gradient(0.1), "rest": optax.adam(1e-3)}, labels)
    ```
    """

    def visit(p):
        if isinstance(p, Graph):
            return jtu.tree_map(lambda _, kind: rest if kind == _OTHER else graph, p, _kinds(p))
        return rest

    return jtu.tree_map(visit, params, is_leaf=lambda x: isinstance(x, Graph))
