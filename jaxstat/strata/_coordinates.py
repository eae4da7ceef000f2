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
from typing import Any, Literal

import equinox as eqx
import jax.tree_util as jtu

from ..graphs import AbstractConnection, Graph, PhaseConnection


Kind = Literal["weight", "phase"]


def _is_node(x) -> bool:
    return isinstance(x, (Graph, AbstractConnection))


def _names(path) -> tuple[str, ...]:
    return tuple(getattr(k, "name", getattr(k, "key", getattr(k, "idx", "?"))) for k in path)


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
        phase = isinstance(g.connection, PhaseConnection)

        def leaf(path, p, *xs):
            names = _names(path)
            if not eqx.is_inexact_array(p):
                return default(p, *xs)
            if names == ("weights",):
                return fn("weight", p, p, *xs)
            if phase and names == ("connection", "theta"):
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

        return jtu.tree_map_with_path(leaf, g, *gs)

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
    labels = graph_labels(eqx.filter(model, eqx.is_inexact_array))
    tx = optax.partition({"graph": natural_gradient(0.1), "rest": optax.adam(1e-3)}, labels)
    ```
    """

    def visit(p):
        if isinstance(p, Graph):
            phase = isinstance(p.connection, PhaseConnection)

            def leaf(path, _):
                names = _names(path)
                coordinate = names == ("weights",) or (phase and names == ("connection", "theta"))
                return graph if coordinate else rest

            return jtu.tree_map_with_path(leaf, p)
        return rest

    return jtu.tree_map(visit, params, is_leaf=lambda x: isinstance(x, Graph))
