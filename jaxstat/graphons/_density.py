"""Homomorphism densities, rooted densities, derivative kernels and the scalar entropy.

For a step graphon `W` with block values `A` and block lengths `mu`:

- `t(F, W) = int prod_{uv in E(F)} W(x_u, x_v) dx = sum_x prod_v mu[x_v] prod_{uv} A[x_u, x_v]`;
- rooted density `t_R(F, W)(y) = int prod_{uv in E(F)} W(x_u, x_v) prod_{v not in R} dx_v` with the
  root vertices `R` held at `x_R = y` (a step function of `y`);
- derivative kernel `DF(W)(x, y) = sum_{e = uv in E(F)} sym t_{(u, v)}(F - e, W)(x, y)`, where
  `sym K(x, y) = (K(x, y) + K(y, x)) / 2`: `d/de t(F, W + e U) = <DF(W), U>_{L^2}` for symmetric
  `U`, so `DF(W)` is the `L^2` gradient. Edges in one orbit of `Aut(F)` give the same term, so one
  rooted density is contracted per orbit;
- scalar entropy `Ent(W) = int h(W)`, `h(p) = p log p + (1 - p) log(1 - p)`, with kernel `h'(W) =
  log(W / (1 - W))`.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jax.scipy.special import xlogy
from jaxtyping import Array, ArrayLike, Float, Shaped

from ._graphon import as_step_graphon, StepGraphon
from ._pattern import as_pattern, contraction_plan, edge_orbits, einsum_scope


def _contract(
    edges: tuple[tuple[int, int], ...],
    num_vertices: int,
    A: Array,
    mu: Array,
    roots: tuple[int, ...] = (),
) -> Array:
    """The tensor network of a (rooted) density, contracted along the elimination plan."""
    n = A.shape[0]
    num_free = sum(v not in roots for v in range(num_vertices))
    factors: list[Array] = [A] * len(edges) + [mu] * num_free
    scopes: list[tuple[int, ...]] = [tuple(e) for e in edges]
    scopes += [(v,) for v in range(num_vertices) if v not in roots]
    steps = contraction_plan(edges, num_vertices, roots)
    for inputs, out in steps[:-1]:
        spec = ",".join(einsum_scope(scopes[i]) for i in inputs) + "->" + einsum_scope(out)
        factors.append(jnp.einsum(spec, *(factors[i] for i in inputs), optimize="optimal"))
        scopes.append(out)
    inputs, out = steps[-1]
    covered = tuple(r for r in out if any(r in scopes[i] for i in inputs))
    if inputs:
        spec = ",".join(einsum_scope(scopes[i]) for i in inputs) + "->" + einsum_scope(covered)
        result = jnp.einsum(spec, *(factors[i] for i in inputs), optimize="optimal")
    else:
        result = jnp.ones((), A.dtype)
    # Roots that no factor touches (isolated in the pattern) contribute a constant 1 there.
    shape = tuple(n if r in covered else 1 for r in out)
    return jnp.broadcast_to(result.reshape(shape), (n,) * len(out))


@eqx.filter_jit
def _homomorphism_density(F, W: StepGraphon) -> Float[Array, ""]:
    return _contract(F.edges, F.num_vertices, W.values, W.sizes)


def homomorphism_density(F, W: StepGraphon | Shaped[ArrayLike, "n n"]) -> Float[Array, ""]:
    """Homomorphism density `t(F, W) = int prod_{ij in E(F)} W(x_i, x_j) dx`.

    Contracted by variable elimination in an order that minimises the largest intermediate (see
    `Pattern`): `O(n^3)` operations and `O(n^2)` memory for cycles, trees, K4 minus an edge and
    every pattern of treewidth 2.

    **Arguments:**

    - `F`: the pattern: a `Pattern`, an edge list or a networkx graph (static).
    - `W`: a `StepGraphon`, or a symmetric matrix with entries in `[0, 1]` (uniform blocks).

    **Returns:** the scalar `t(F, W)`.

    **Example:**

    ```python
    import jax.numpy as jnp
    import jax.random as jr
    from jaxstat.graphons import Pattern, StepGraphon, homomorphism_density, sample_graph

    A = sample_graph(jr.key(0), StepGraphon(jnp.full((1, 1), 0.3)), 500)
    homomorphism_density(Pattern.cycle(3), A)  # about 0.3**3
    ```
    """
    # A matrix is checked here (on the host when concrete), outside the compiled contraction.
    return _homomorphism_density(as_pattern(F), as_step_graphon(W))


@eqx.filter_jit
def rooted_density(
    F, W: StepGraphon | Shaped[ArrayLike, "n n"], roots: tuple[int, ...]
) -> Shaped[Array, "*shape"]:
    """Rooted homomorphism density: `t(F, W)` with the vertices `roots` held fixed.

    `t_R(F, W)(y) = int prod_{uv in E(F)} W(x_u, x_v) prod_{v not in R} dx_v` at `x_R = y`, on the
    blocks: entry `[i_1, ..., i_r]` is the value for `y_k` in block `i_k`. So
    `t(F, W) = sum_i prod_k mu[i_k] t_R(F, W)[i]`. One root gives the `F`-degree function (the
    degree for `F = K2`).

    **Arguments:**

    - `F`: the pattern (static).
    - `W`: a `StepGraphon` or a matrix.
    - `roots`: distinct vertices of `F` (static).

    **Returns:** an array of shape `(n,) * len(roots)`.

    **Example:**

    ```python
    import jax.numpy as jnp
    from jaxstat.graphons import StepGraphon, rooted_density

    W = StepGraphon(jnp.array([[0.8, 0.2], [0.2, 0.5]]))
    degrees = rooted_density([(0, 1)], W, (0,))
    ```
    """
    F = as_pattern(F)
    W = as_step_graphon(W)
    roots = tuple(int(r) for r in roots)
    if len(set(roots)) != len(roots) or not all(0 <= r < F.num_vertices for r in roots):
        raise ValueError(f"roots must be distinct vertices of the pattern, got {roots}")
    return _contract(F.edges, F.num_vertices, W.values, W.sizes, roots)


@eqx.filter_jit
def homomorphism_kernel(F, W: StepGraphon | Shaped[ArrayLike, "n n"]) -> Float[Array, "n n"]:
    """Derivative kernel `DF(W)` of `t(F, .)`: the sum over edges `uv` of the density of `F - uv`
    with `u, v` held fixed, symmetrised.

    `DF(W)(x, y) = sum_{e = uv} sym t_{(u, v)}(F - e, W)(x, y)` is the `L^2` gradient:
    `d/de t(F, W + e U) = <DF(W), U>` for symmetric `U`. One rooted density is contracted per orbit
    of edges under the automorphisms of `F` (the triangle costs one matrix product).

    **Arguments:** as `homomorphism_density`.

    **Returns:** the block values of `DF(W)` (an `n x n` symmetric matrix on the blocks of `W`).

    **Example:**

    ```python
    import jax.numpy as jnp
    from jaxstat.graphons import Pattern, StepGraphon, homomorphism_kernel

    W = StepGraphon(jnp.array([[0.8, 0.2], [0.2, 0.5]]))
    homomorphism_kernel(Pattern.cycle(3), W)  # 3 A diag(mu) A
    ```
    """
    F = as_pattern(F)
    W = as_step_graphon(W)
    A, mu = W.values, W.sizes
    if not F.edges:
        return jnp.zeros_like(A)
    K = jnp.zeros_like(A)
    for (u, v), size in edge_orbits(F.edges, F.num_vertices):
        rest = tuple(e for e in F.edges if e != (u, v))
        K = K + size * _contract(rest, F.num_vertices, A, mu, (u, v))
    return (K + K.T) / 2


@eqx.filter_jit
def scalar_entropy(W: StepGraphon | Shaped[ArrayLike, "n n"]) -> Float[Array, ""]:
    """Scalar entropy `Ent(W) = int h(W(x, y)) dx dy`, `h(p) = p log p + (1 - p) log(1 - p)`.

    Convex, `<= 0`, minimal (`-log 2`) at `W = 1/2`; `h(0) = h(1) = 0`.

    **Arguments:** `W`, a `StepGraphon` or a matrix.

    **Returns:** the scalar `Ent(W)`.

    **Example:**

    ```python
    import jax.numpy as jnp
    from jaxstat.graphons import scalar_entropy

    scalar_entropy(jnp.full((4, 4), 0.5))  # -log 2
    ```
    """
    W = as_step_graphon(W)
    A, mu = W.values, W.sizes
    h = xlogy(A, A) + xlogy(1 - A, 1 - A)
    return mu @ h @ mu


@eqx.filter_jit
def scalar_entropy_kernel(W: StepGraphon | Shaped[ArrayLike, "n n"]) -> Float[Array, "n n"]:
    """Derivative kernel of the scalar entropy, `h'(W) = log(W / (1 - W))`: `-inf` where `W = 0`,
    `+inf` where `W = 1` (entropy flows start in the open box and never reach its faces).

    **Arguments:** `W`, a `StepGraphon` or a matrix.

    **Returns:** the block values of `h'(W)`.

    **Example:**

    ```python
    import jax.numpy as jnp
    from jaxstat.graphons import scalar_entropy_kernel

    scalar_entropy_kernel(jnp.full((2, 2), 0.5))  # zeros: 1/2 minimises h
    ```
    """
    W = as_step_graphon(W)
    A = W.values
    return jnp.log(A) - jnp.log1p(-A)
