"""Graphon distances: `L^2`, invariant `L^2` (over relabellings), cut norm and cut distance.

- `||U - W||_2` for step graphons on any two partitions, exactly, on their common refinement.
- `delta_2(U, W) = inf_phi ||U - W^phi||_2` over measure-preserving relabellings `phi`, bracketed.
  Below by the Hoffman-Wielandt bound `||lambda(U) - lambda(W)||_2` (eigenvalues of the integral
  operators, sorted, zero-padded; relabelling does not change them). Above by
  `||U^sigma - W^tau||_2` for the best relabellings of the blocks found: every permutation when
  there are at most `exact_limit` blocks (the minimum over node relabellings, still only an upper
  bound on `delta_2`: fractional overlays can do better), otherwise degree sorting and the FAQ
  quadratic-assignment heuristic of `scipy.optimize.quadratic_assignment` (run on the host).
- `||K||_cut = sup_{S, T} |int_{S x T} K|`. For a step kernel the supremum is attained at unions
  of blocks (the form is bilinear in the block fractions), so it is computed exactly by
  enumerating one side (`2^n` subsets; the best other side is then explicit) for
  `n <= exact_limit`, and otherwise bracketed: below by alternating maximisation (best `T` for
  `S`, best `S` for `T`, from random and spectral starts; each value is attained, so it is a lower
  bound), above by `min(||K||_{L^2 -> L^2}, ||K||_1)` (`|<1_S, K 1_T>| <= ||K||_op`).
- `delta_cut(U, W) = inf_phi ||U - W^phi||_cut`: below by the counting lemma
  `|t(F, U) - t(F, W)| <= |E(F)| delta_cut(U, W)` over a few patterns, above by the cut norm of the
  difference at the relabelling found for `delta_2`.
"""

from __future__ import annotations

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, Shaped

from ._density import homomorphism_density
from ._graphon import as_step_graphon, StepGraphon
from ._pattern import Pattern


class Bounds(eqx.Module):
    """A quantity bracketed: `lower <= value <= upper` (equal when computed exactly)."""

    lower: Float[Array, ""]
    upper: Float[Array, ""]


class DistanceBounds(eqx.Module):
    """A distance bracketed, with the relabellings that attain the upper bound.

    `upper` is the distance between `U.permute(permutation_u)` and `W.permute(permutation_w)`.
    """

    lower: Float[Array, ""]
    upper: Float[Array, ""]
    permutation_u: Int[Array, " n"]
    permutation_w: Int[Array, " m"]


def _overlay(U: StepGraphon, W: StepGraphon):
    """Both step graphons on the common refinement of their partitions (`n + m` cells, some of
    length zero): `(U values, W values, cell lengths)`."""
    cu, cw = jnp.cumsum(U.sizes), jnp.cumsum(W.sizes)
    dtype = jnp.result_type(U.values, W.values)
    b = jnp.sort(jnp.concatenate([jnp.zeros(1, dtype), cu, cw]))
    b = jnp.clip(b, 0, 1)
    lengths = jnp.diff(b)
    # cells created by rounding (cumulative sums of 1/6 and 2/12 differ in the last bit) are empty
    lengths = jnp.where(lengths > 64 * jnp.finfo(dtype).eps, lengths, 0)
    mid = (b[:-1] + b[1:]) / 2
    iu = jnp.clip(jnp.searchsorted(cu, mid, side="right"), 0, U.n - 1)
    iw = jnp.clip(jnp.searchsorted(cw, mid, side="right"), 0, W.n - 1)
    return U.values[iu][:, iu], W.values[iw][:, iw], lengths


@eqx.filter_jit
def l2_distance(
    U: StepGraphon | Shaped[ArrayLike, "n n"], W: StepGraphon | Shaped[ArrayLike, "m m"]
) -> Float[Array, ""]:
    """`||U - W||_2 = (int (U - W)^2)^(1/2)` for step graphons on any partitions (no relabelling).

    **Arguments:** `U`, `W`: step graphons or matrices (uniform blocks), any sizes.

    **Returns:** the scalar distance (exact: computed on the common refinement).

    **Example:**

    ```python
    import jax.numpy as jnp
    from jaxstat.graphons import StepGraphon, l2_distance

    W = StepGraphon(jnp.array([[0.8, 0.2], [0.2, 0.5]]))
    l2_distance(W, W.refine(3))  # 0
    ```
    """
    U, W = as_step_graphon(U), as_step_graphon(W)
    Ur, Wr, mu = _overlay(U, W)
    sq = mu @ (Ur - Wr) ** 2 @ mu
    # sqrt is not differentiable at 0; the distance's subgradient there is 0.
    safe = jnp.where(sq > 0, sq, 1)
    return jnp.where(sq > 0, jnp.sqrt(safe), 0)


def _operator(values, sizes):
    r = jnp.sqrt(sizes)
    return r[:, None] * values * r[None, :]


def _spectral_lower_bound(U: StepGraphon, W: StepGraphon) -> Float[Array, ""]:
    eu = jnp.linalg.eigvalsh(_operator(U.values, U.sizes))
    ew = jnp.linalg.eigvalsh(_operator(W.values, W.sizes))
    m = max(U.n, W.n)
    eu = jnp.sort(jnp.concatenate([eu, jnp.zeros(m - U.n, eu.dtype)]))
    ew = jnp.sort(jnp.concatenate([ew, jnp.zeros(m - W.n, ew.dtype)]))
    return jnp.sqrt(jnp.sum((eu - ew) ** 2))


def _degree_order(W: StepGraphon) -> Int[Array, " n"]:
    return jnp.argsort(W.values @ W.sizes, stable=True)


def _host_alignment(MU, MW) -> np.ndarray:
    """A permutation `p` with `MW[p][:, p]` close to `MU` (Frobenius): the best of degree matching
    and FAQ from two starts."""
    from scipy.optimize import quadratic_assignment

    MU, MW = np.asarray(MU, np.float64), np.asarray(MW, np.float64)
    n = MU.shape[0]

    def cost(p):
        return float(np.sum((MU - MW[np.ix_(p, p)]) ** 2))

    ident = np.arange(n)
    degree = np.empty(n, dtype=np.int64)
    degree[np.argsort(MU.sum(1), kind="stable")] = np.argsort(MW.sum(1), kind="stable")
    candidates = [ident, degree]
    for P0 in ("barycenter", np.eye(n)[degree]):
        res = quadratic_assignment(MU, MW, method="faq", options={"maximize": True, "P0": P0})
        candidates.append(np.asarray(res.col_ind, dtype=np.int64))
    best = min(candidates, key=cost)
    return best.astype(np.int32)


@eqx.filter_jit
def invariant_l2_distance(
    U: StepGraphon | Shaped[ArrayLike, "n n"],
    W: StepGraphon | Shaped[ArrayLike, "m m"],
    *,
    exact_limit: int = 8,
) -> DistanceBounds:
    """Bounds on the invariant distance `delta_2(U, W) = inf_phi ||U - W^phi||_2`.

    **Arguments:**

    - `U`, `W`: step graphons or matrices.
    - `exact_limit`: with equal block counts `n <= exact_limit`, every permutation of the blocks of
      `W` is tried (`n!` of them).

    **Returns:** a `DistanceBounds`: `lower` (Hoffman-Wielandt, valid for `delta_2` itself), `upper`
    (the best relabelling found; equal block counts above `exact_limit` use scipy's FAQ on the host
    through `jax.pure_callback`, so this works under `jit` and `vmap` but the search is not
    differentiated; `upper` is differentiable for the relabelling found) and the relabellings.

    **Example:**

    ```python
    import jax.numpy as jnp
    from jaxstat.graphons import StepGraphon, invariant_l2_distance

    W = StepGraphon(jnp.array([[0.9, 0.1, 0.3], [0.1, 0.5, 0.2], [0.3, 0.2, 0.7]]))
    perm = jnp.array([2, 0, 1])
    d = invariant_l2_distance(W, W.permute(perm))  # d.upper == 0 up to rounding
    ```
    """
    U, W = as_step_graphon(U), as_step_graphon(W)
    lower = _spectral_lower_bound(U, W)
    ou, ow = _degree_order(U), _degree_order(W)
    cand_u = [jnp.arange(U.n), ou]
    cand_w = [jnp.arange(W.n), ow]
    if U.n == W.n:
        n = U.n
        if n <= exact_limit:
            perms = jnp.asarray(list(itertools.permutations(range(n))), dtype=jnp.int32)
            dists = jax.vmap(lambda p: l2_distance(U, W.permute(p)))(perms)
            cand_u.append(jnp.arange(n))
            cand_w.append(perms[jnp.argmin(dists)])
        else:
            MU = jax.lax.stop_gradient(_operator(U.values, U.sizes))
            MW = jax.lax.stop_gradient(_operator(W.values, W.sizes))
            p = jax.pure_callback(
                _host_alignment,
                jax.ShapeDtypeStruct((n,), jnp.int32),
                MU,
                MW,
                vmap_method="sequential",
            )
            cand_u.append(jnp.arange(n))
            cand_w.append(p)
    dists = jnp.stack([l2_distance(U.permute(a), W.permute(b)) for a, b in zip(cand_u, cand_w)])
    k = jnp.argmin(dists)
    pu = jnp.stack([a.astype(jnp.int32) for a in cand_u])[k]
    pw = jnp.stack([b.astype(jnp.int32) for b in cand_w])[k]
    upper = jnp.min(dists)
    # lower <= delta_2 <= upper; the eigenvalue bound can exceed 0 by rounding when upper is 0
    lower = jnp.minimum(lower, upper)
    return DistanceBounds(lower=lower, upper=upper, permutation_u=pu, permutation_w=pw)


def _best_response(K, mu, s):
    """`max_T <1_S, K 1_T>` for the step kernel `K` and block indicator `s`: `(value, t)`."""
    r = (mu * s) @ K * mu
    t = (r > 0).astype(K.dtype)
    return jnp.sum(jnp.maximum(r, 0)), t


def _alternate(K, mu, s0, max_iter):
    """Alternating maximisation of `<1_S, K 1_T>` from `s0` (non-decreasing, to a fixed point)."""

    def cond(carry):
        i, _, value, prev = carry
        return (i < max_iter) & (value > prev)

    def body(carry):
        i, s, value, _ = carry
        _, t = _best_response(K, mu, s)
        new_value, s_new = _best_response(K.T, mu, t)
        return i + 1, s_new, new_value, value

    v0, _ = _best_response(K, mu, s0)
    init = (0, s0, v0, jnp.asarray(-jnp.inf, K.dtype))
    _, _, value, _ = jax.lax.while_loop(cond, body, init)
    return value


@eqx.filter_jit
def cut_norm(
    K: StepGraphon | Shaped[ArrayLike, "n n"],
    sizes: Float[ArrayLike, " n"] | None = None,
    *,
    exact_limit: int = 14,
    num_starts: int = 16,
    max_iter: int = 100,
    key: PRNGKeyArray | None = None,
) -> Bounds:
    """Bounds on the cut norm `||K||_cut = sup_{S, T} |int_{S x T} K|` of a step kernel.

    **Arguments:**

    - `K`: the block values of a kernel (any real `n x n` matrix, e.g. a difference of graphons),
      or a `StepGraphon`.
    - `sizes`: block lengths (default `1/n`; ignored for a `StepGraphon`).
    - `exact_limit`: exact enumeration (`2^n n^2` work) when `n <= exact_limit`.
    - `num_starts`, `max_iter`, `key`: random starts of the alternating heuristic (default key
      `jr.key(0)`), in addition to the sign patterns of the leading singular vectors.

    **Returns:** `Bounds(lower, upper)`; `lower == upper` when enumerated.

    **Example:**

    ```python
    import jax.numpy as jnp
    from jaxstat.graphons import cut_norm

    cut_norm(jnp.full((5, 5), -0.3))  # exactly 0.3
    ```
    """
    if isinstance(K, StepGraphon):
        K, sizes = K.values, K.sizes
    K = jnp.asarray(K)
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"a step kernel is a square matrix, got shape {K.shape}")
    if not jnp.issubdtype(K.dtype, jnp.floating):
        K = K.astype(jnp.result_type(float))
    n = K.shape[0]
    mu = jnp.full((n,), 1 / n, K.dtype) if sizes is None else jnp.asarray(sizes, K.dtype)
    if mu.shape != (n,):
        raise ValueError(f"sizes must have shape ({n},), got {mu.shape}")
    K = eqx.error_if(K, ~jnp.all(jnp.isfinite(K)), "the kernel has NaN or infinite entries")
    if n <= exact_limit:
        bits = (np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1
        S = jnp.asarray(bits, K.dtype)
        r = (S * mu) @ K * mu
        value = jnp.max(jnp.maximum(jnp.sum(jnp.maximum(r, 0), 1), -jnp.sum(jnp.minimum(r, 0), 1)))
        return Bounds(lower=value, upper=value)
    key = jr.key(0) if key is None else key
    M = _operator(K, mu)
    u, sv, vt = jnp.linalg.svd(M)
    op = sv[0]
    l1 = mu @ jnp.abs(K) @ mu
    starts = [u[:, 0] > 0, u[:, 0] < 0, vt[0] > 0, vt[0] < 0]
    starts = jnp.stack([s.astype(K.dtype) for s in starts])
    random = jr.bernoulli(key, 0.5, (num_starts, n)).astype(K.dtype)
    starts = jnp.concatenate([starts, random])
    lower = jnp.maximum(
        jnp.max(jax.vmap(lambda s: _alternate(K, mu, s, max_iter))(starts)),
        jnp.max(jax.vmap(lambda s: _alternate(-K, mu, s, max_iter))(starts)),
    )
    upper = jnp.minimum(op, l1)
    return Bounds(lower=lower, upper=upper)


_COUNTING_PATTERNS = (Pattern.path(1), Pattern.path(2), Pattern.cycle(3), Pattern.cycle(4))


@eqx.filter_jit
def cut_distance(
    U: StepGraphon | Shaped[ArrayLike, "n n"],
    W: StepGraphon | Shaped[ArrayLike, "m m"],
    *,
    patterns: tuple = _COUNTING_PATTERNS,
    exact_limit: int = 8,
    alignment: DistanceBounds | None = None,
    key: PRNGKeyArray | None = None,
) -> DistanceBounds:
    """Bounds on the cut distance `delta_cut(U, W) = inf_phi ||U - W^phi||_cut`.

    **Arguments:**

    - `U`, `W`: step graphons or matrices.
    - `patterns`: patterns for the counting-lemma lower bound `max_F |t(F, U) - t(F, W)| / |E(F)|`
      (default: an edge, a 2-path, a triangle, a 4-cycle).
    - `exact_limit`: passed to `invariant_l2_distance` (which supplies the relabelling).
    - `alignment`: the result of `invariant_l2_distance(U, W)` when already computed (its
      relabellings are reused instead of searched again).
    - `key`: for the cut-norm heuristic.

    **Returns:** a `DistanceBounds`: `lower` from the counting lemma, `upper` the cut norm (exact
    for at most 14 overlay cells, else its upper bound `min(op, L^1)`) of `U^sigma - W^tau` at the
    relabellings found for `delta_2`.

    **Example:**

    ```python
    import jax.numpy as jnp
    import jax.random as jr
    from jaxstat.graphons import StepGraphon, cut_distance, discretise, sample_graph

    W = StepGraphon(jnp.array([[0.8, 0.2], [0.2, 0.5]]))
    A = sample_graph(jr.key(0), W, 100, sort=True)
    d = cut_distance(A, discretise(W, 100))  # d.lower <= delta_cut <= d.upper
    ```
    """
    U, W = as_step_graphon(U), as_step_graphon(W)
    lower = jnp.max(
        jnp.stack(
            [
                jnp.abs(homomorphism_density(F, U) - homomorphism_density(F, W)) / F.num_edges
                for F in patterns
            ]
        )
    )
    if alignment is None:
        aligned = invariant_l2_distance(U, W, exact_limit=exact_limit)
    else:
        aligned = alignment
        if aligned.permutation_u.shape != (U.n,) or aligned.permutation_w.shape != (W.n,):
            raise ValueError("the alignment's relabellings do not match the block counts")
    Ur, Wr, mu = _overlay(U.permute(aligned.permutation_u), W.permute(aligned.permutation_w))
    upper = cut_norm(Ur - Wr, mu, key=key).upper
    return DistanceBounds(
        lower=lower,
        upper=upper,
        permutation_u=aligned.permutation_u,
        permutation_w=aligned.permutation_w,
    )
