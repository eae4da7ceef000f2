"""Building graphs: from edge lists, from networkx, k-nearest neighbours of points."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import scipy.spatial
from jaxtyping import Array, PRNGKeyArray

from ._graph import Graph


from_edges = Graph.from_edges


def from_networkx(
    graph, weight: str | None = "weight", default: float = 1.0, dtype=None
) -> tuple[Graph, list]:
    """A graph from a `networkx.Graph`, nodes numbered in the order of `graph.nodes`.

    **Arguments:**

    - `graph`: an undirected `networkx.Graph` (self-loops are dropped).
    - `weight`: the edge attribute read as the weight (`None`: all weights `default`).
    - `default`: the weight of an edge without that attribute.

    **Returns:** `(Graph, nodes)`, `nodes[i]` the networkx node numbered `i`.
    """
    if graph.is_directed():
        raise ValueError("from_networkx needs an undirected graph; use graph.to_undirected()")
    nodes = list(graph.nodes)
    index = {v: i for i, v in enumerate(nodes)}
    s, r, w = [], [], []
    for u, v, data in graph.edges(data=True):
        if u == v:
            continue
        s.append(index[u])
        r.append(index[v])
        w.append(default if weight is None else float(data.get(weight, default)))
    weights = jnp.asarray(np.asarray(w, dtype=np.float64), dtype=dtype or jnp.result_type(float))
    g = Graph(
        np.asarray(s, dtype=np.int64),
        np.asarray(r, dtype=np.int64),
        weights,
        len(nodes),
    )
    return g, nodes


def knn_graph(
    points, k: int, *, bandwidth: float | None = None, kernel: str = "gaussian", dtype=None
) -> Graph:
    """The symmetrised k-nearest-neighbour graph of a point cloud.

    An edge joins `i` and `j` when either is among the other's `k` nearest neighbours (Euclidean;
    a point is not its own neighbour), stored once. Weights: `exp(-|x_i - x_j|^2 / bandwidth^2)`
    (`kernel="gaussian"`, bandwidth defaulting to the median k-th neighbour distance) or 1
    (`kernel="binary"`). Duplicate points are neighbours of each other at distance 0 (Gaussian
    weight 1). Neighbours come from a `scipy.spatial.cKDTree`: `O(n k log n)`, never an `n x n`
    distance matrix.

    **Raises:** `TypeError` for complex points; `ValueError` for a wrong shape, non-finite
    points, `k` outside `[1, n - 1]`, or a zero default bandwidth (more than half of the points
    have `k` duplicates: pass `bandwidth`).
    """
    x = np.asarray(points)
    if np.iscomplexobj(x):
        raise TypeError(
            f"points must be real, got dtype {x.dtype}: for complex coordinates pass "
            "`np.concatenate([x.real, x.imag], axis=-1)`"
        )
    x = x.astype(np.float64)
    if x.ndim != 2:
        raise ValueError(f"points must have shape (n, dim), got {x.shape}")
    n = x.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, n - 1] = [1, {n - 1}], got {k}")
    if not np.all(np.isfinite(x)):
        raise ValueError("points must be finite")
    if kernel not in ("gaussian", "binary"):
        raise ValueError(f"kernel must be 'gaussian' or 'binary', got {kernel!r}")
    dist, nbr = scipy.spatial.cKDTree(x).query(x, k + 1)
    # Drop each point from its own list. With duplicates the point need not come first (ties at
    # distance 0 are in any order), or at all (more than k + 1 copies): keep the first k others.
    others = nbr != np.arange(n)[:, None]
    keep = others & (np.cumsum(others, axis=1) <= k)
    dist, nbr = dist[keep].reshape(n, k), nbr[keep].reshape(n, k)
    i = np.repeat(np.arange(n), k)
    j = nbr.reshape(-1)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    pairs, first = np.unique(lo * n + hi, return_index=True)
    s, r = pairs // n, pairs % n
    d = dist.reshape(-1)[first]
    if kernel == "gaussian":
        h = float(np.median(dist[:, -1])) if bandwidth is None else float(bandwidth)
        if not h > 0:
            why = (
                " (the median k-th neighbour distance: more than half of the points have k "
                "duplicates; pass `bandwidth`)"
                if bandwidth is None
                else ""
            )
            raise ValueError(f"bandwidth must be positive, got {h}{why}")
        w = np.exp(-((d / h) ** 2))
    else:
        w = np.ones_like(d)
    return Graph(s, r, jnp.asarray(w, dtype=dtype or jnp.result_type(float)), n)


def random_graph(key: PRNGKeyArray, num_nodes: int, num_edges: int, dtype=None) -> Graph:
    """A random multigraph: `num_edges` endpoints drawn uniformly (self-loops redrawn), weights
    uniform on `[0, 1)`. For tests and benchmarks."""
    s, off, w = _random_edges(
        key, int(num_nodes), int(num_edges), jnp.dtype(dtype or jnp.result_type(float))
    )
    s, off = np.asarray(s), np.asarray(off)
    r = (s + off) % num_nodes  # never equal to s
    return Graph(s, r, w, num_nodes)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _random_edges(key, num_nodes, num_edges, dtype):
    """The draws of `random_graph` in one compiled program (drawn one by one, each shape of
    `randint` and `uniform` compiled a program of its own)."""
    keys = jr.split(key, 3)
    # Both integer draws in one batched draw (the same values as drawn apart, from one
    # random-bit generation instead of two: XLA takes about 0.2 s to compile each).
    s, off = jax.vmap(lambda k, low: jr.randint(k, (num_edges,), low, num_nodes))(
        keys[:2], jnp.array([0, 1])
    )
    return s, off, jr.uniform(keys[2], (num_edges,), dtype=dtype)


def random_unitary_blocks(key: PRNGKeyArray, num_edges: int, k: int, dtype=None) -> Array:
    """`num_edges` Haar-random `k x k` unitary (complex dtype) or orthogonal (real) blocks."""
    dtype = dtype or jnp.result_type(float)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        kr, ki = jr.split(key)
        real = jnp.finfo(dtype).dtype
        z = jr.normal(kr, (num_edges, k, k), real) + 1j * jr.normal(ki, (num_edges, k, k), real)
    else:
        z = jr.normal(key, (num_edges, k, k), dtype)
    q, rr = jnp.linalg.qr(z)
    d = jnp.diagonal(rr, axis1=-2, axis2=-1)
    return (q * (d / jnp.abs(d))[:, None, :]).astype(dtype)
