"""Small simple graphs `F` (patterns) and the order in which a homomorphism density is contracted.

`t(F, W) = int prod_{ij in E(F)} W(x_i, x_j) dx` is, for a step graphon with block values `A` and
block masses `mu`, the tensor network `sum_x prod_v mu[x_v] prod_{uv in E} A[x_u, x_v]`. It is
contracted by variable elimination: summing out a vertex `v` multiplies the factors that contain
`v` and leaves one factor on the current neighbours of `v`. The cost of an order is set by the
widths `|N(v)|` it meets (a step of width `w` costs `O(n^(w+1))` operations and `O(n^w)` memory),
so an order is chosen that minimises the largest width (the induced width, the treewidth for the
best order), then the number of steps at that width, and so on down: exactly by dynamic
programming over vertex subsets for patterns up to `_EXACT_LIMIT` free vertices, by the greedy
min-degree rule beyond. Cycles and K4 minus an edge contract with `O(n^2)` memory and matrix
products only; K4 needs width 3.
"""

from __future__ import annotations

import functools
import itertools
import string
from collections.abc import Iterable

import equinox as eqx
import networkx as nx


_EXACT_LIMIT = 14
_LETTERS = string.ascii_letters


class Pattern(eqx.Module):
    """A small simple graph `F` on vertices `0 .. k-1`, the pattern of a homomorphism density.

    Static (hashable, no array leaves), so it may be closed over or passed through `eqx.filter_jit`.

    **Arguments:**

    - `edges`: pairs `(u, v)`, `u != v`, without repetition; any hashable vertex labels (they are
      relabelled `0 .. k-1` in sorted order when sortable, else in order of appearance).
    - `num_vertices`: the number of vertices, when there are isolated vertices that no edge names
      (only with integer labels `0 .. num_vertices - 1`).

    **Example:**

    ```python
    from jaxstat.graphons import Pattern

    F = Pattern([(0, 1), (1, 2), (2, 0)])  # the triangle, also `Pattern.cycle(3)`
    ```
    """

    edges: tuple[tuple[int, int], ...] = eqx.field(static=True)
    num_vertices: int = eqx.field(static=True)

    def __init__(self, edges: Iterable, num_vertices: int | None = None):
        edges = [tuple(e) for e in edges]
        for e in edges:
            if len(e) != 2:
                raise ValueError(f"an edge is a pair of vertices, got {e!r}")
        labels = list(dict.fromkeys(v for e in edges for v in e))
        if num_vertices is not None:
            if not all(isinstance(v, int) and 0 <= v < num_vertices for v in labels):
                raise ValueError(
                    "with `num_vertices`, vertices must be integers 0 .. num_vertices - 1"
                )
            labels = list(range(num_vertices))
        else:
            try:
                labels = sorted(labels)
            except TypeError:
                pass
        index = {v: i for i, v in enumerate(labels)}
        out = []
        seen = set()
        for u, v in edges:
            if u == v:
                raise ValueError(f"a pattern is a simple graph: loop at vertex {u!r}")
            key = frozenset((u, v))
            if key in seen:
                raise ValueError(f"a pattern is a simple graph: edge {(u, v)!r} repeated")
            seen.add(key)
            i, j = index[u], index[v]
            out.append((min(i, j), max(i, j)))
        if len(labels) > len(_LETTERS):
            raise ValueError(f"patterns have at most {len(_LETTERS)} vertices, got {len(labels)}")
        self.edges = tuple(sorted(out))
        self.num_vertices = len(labels)

    @property
    def num_edges(self) -> int:
        return len(self.edges)

    def degrees(self) -> tuple[int, ...]:
        deg = [0] * self.num_vertices
        for u, v in self.edges:
            deg[u] += 1
            deg[v] += 1
        return tuple(deg)

    def to_networkx(self) -> nx.Graph:
        G = nx.Graph()
        G.add_nodes_from(range(self.num_vertices))
        G.add_edges_from(self.edges)
        return G

    @classmethod
    def from_networkx(cls, G: nx.Graph) -> Pattern:
        """The pattern of an undirected simple networkx graph (node labels are relabelled)."""
        if G.is_directed() or G.is_multigraph():
            raise TypeError("a pattern is an undirected simple graph (nx.Graph)")
        nodes = list(G.nodes)
        index = {v: i for i, v in enumerate(nodes)}
        return cls([(index[u], index[v]) for u, v in G.edges], num_vertices=len(nodes))

    @classmethod
    def complete(cls, k: int) -> Pattern:
        """The complete graph `K_k`."""
        return cls(itertools.combinations(range(k), 2), num_vertices=k)

    @classmethod
    def cycle(cls, k: int) -> Pattern:
        """The cycle `C_k`, `k >= 3`."""
        if k < 3:
            raise ValueError(f"a cycle has at least 3 vertices, got {k}")
        return cls([(i, (i + 1) % k) for i in range(k)], num_vertices=k)

    @classmethod
    def path(cls, k: int) -> Pattern:
        """The path with `k` edges (`k + 1` vertices)."""
        return cls([(i, i + 1) for i in range(k)], num_vertices=k + 1)

    @classmethod
    def star(cls, k: int) -> Pattern:
        """The star `K_{1,k}`: a centre joined to `k` leaves."""
        return cls([(0, i) for i in range(1, k + 1)], num_vertices=k + 1)

    @classmethod
    def k4_minus_edge(cls) -> Pattern:
        """`K4` minus an edge (the diamond): two triangles sharing the edge `01`."""
        return cls([(0, 1), (0, 2), (0, 3), (1, 2), (1, 3)], num_vertices=4)


def as_pattern(F) -> Pattern:
    """A `Pattern` from a `Pattern`, a networkx graph, or an edge list."""
    if isinstance(F, Pattern):
        return F
    if isinstance(F, nx.Graph):
        return Pattern.from_networkx(F)
    try:
        edges = list(F)
    except TypeError:
        raise TypeError(
            f"a pattern is a `Pattern`, a networkx graph or an edge list, got {type(F).__name__}"
        ) from None
    return Pattern(edges)


#
# Contraction plans.
#


def _neighbourhood(adj: list[frozenset], eliminated: frozenset, v: int) -> frozenset:
    """Vertices outside `eliminated | {v}` joined to `v` through eliminated vertices: the scope of
    the factor left by summing out `v` after `eliminated`."""
    seen = {v}
    stack = [v]
    out = set()
    while stack:
        u = stack.pop()
        for w in adj[u]:
            if w in seen:
                continue
            seen.add(w)
            if w in eliminated:
                stack.append(w)
            else:
                out.add(w)
    return frozenset(out)


def _cost(widths: Iterable[int], k: int) -> tuple[int, ...]:
    """Lexicographic cost: the number of steps of width `k-1, k-2, ..., 0` (largest first)."""
    counts = [0] * max(k, 1)
    for w in widths:
        counts[w] += 1
    return tuple(reversed(counts))


@functools.lru_cache(maxsize=512)
def elimination_order(
    edges: tuple[tuple[int, int], ...], num_vertices: int, roots: tuple[int, ...] = ()
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """An elimination order of the non-root vertices and the widths it meets.

    **Returns:** `(order, widths)`, `widths[i] = |N(order[i])|` when it is summed out.
    """
    adj = [set() for _ in range(num_vertices)]
    for u, v in edges:
        adj[u].add(v)
        adj[v].add(u)
    adj = [frozenset(a) for a in adj]
    free = [v for v in range(num_vertices) if v not in roots]
    k = num_vertices
    if len(free) <= _EXACT_LIMIT:
        # best[S] = (cost, order) over orders that eliminate exactly the set S first.
        best: dict[frozenset, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {
            frozenset(): (_cost((), k), (), ())
        }
        for size in range(1, len(free) + 1):
            for subset in itertools.combinations(free, size):
                S = frozenset(subset)
                cand = None
                for v in subset:
                    prev = S - {v}
                    _, order, widths = best[prev]
                    w = len(_neighbourhood(adj, prev, v))
                    new_widths = widths + (w,)
                    c = _cost(new_widths, k)
                    if cand is None or c < cand[0]:
                        cand = (c, order + (v,), new_widths)
                best[S] = cand
        _, order, widths = best[frozenset(free)]
        return order, widths
    # Greedy min-degree on the fill graph.
    eliminated: frozenset = frozenset()
    order, widths = [], []
    remaining = set(free)
    while remaining:
        v = min(remaining, key=lambda u: (len(_neighbourhood(adj, eliminated, u)), u))
        widths.append(len(_neighbourhood(adj, eliminated, v)))
        order.append(v)
        eliminated = eliminated | {v}
        remaining.remove(v)
    return tuple(order), tuple(widths)


@functools.lru_cache(maxsize=512)
def contraction_plan(
    edges: tuple[tuple[int, int], ...], num_vertices: int, roots: tuple[int, ...] = ()
) -> tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]:
    """The elimination as a list of einsum steps over factor scopes.

    Factors are identified by their scopes (tuples of vertices); edge factors are `A`, vertex
    factors of non-root vertices are `mu`, intermediate factors are earlier outputs. Each step is
    `(input factor ids, output scope)`; the final step multiplies what is left onto `roots`.

    **Returns:** a tuple of steps `(inputs, output)` where `inputs` are indices into the growing
    list `[edge factors..., vertex factors..., outputs of earlier steps...]`.
    """
    order, _ = elimination_order(edges, num_vertices, roots)
    scopes: list[tuple[int, ...]] = [tuple(e) for e in edges]
    scopes += [(v,) for v in range(num_vertices) if v not in roots]
    alive = set(range(len(scopes)))
    steps = []
    for v in order:
        inputs = tuple(sorted(i for i in alive if v in scopes[i]))
        out = sorted({u for i in inputs for u in scopes[i]} - {v})
        steps.append((inputs, tuple(out)))
        alive -= set(inputs)
        alive.add(len(scopes))
        scopes.append(tuple(out))
    steps.append((tuple(sorted(alive)), tuple(roots)))
    return tuple(steps)


def einsum_scope(scope: tuple[int, ...]) -> str:
    return "".join(_LETTERS[v] for v in scope)


@functools.lru_cache(maxsize=512)
def edge_orbits(
    edges: tuple[tuple[int, int], ...], num_vertices: int
) -> tuple[tuple[tuple[int, int], int], ...]:
    """Orbits of the edges under the automorphism group of `F`: one representative edge per orbit
    and the orbit's size. Edges in one orbit have the same rooted density up to transposition."""
    G = nx.Graph()
    G.add_nodes_from(range(num_vertices))
    G.add_edges_from(edges)
    autos = list(nx.algorithms.isomorphism.GraphMatcher(G, G).isomorphisms_iter())
    remaining = set(edges)
    out = []
    for e in edges:
        if e not in remaining:
            continue
        orbit = {tuple(sorted((s[e[0]], s[e[1]]))) for s in autos}
        remaining -= orbit
        out.append((e, len(orbit)))
    return tuple(out)
