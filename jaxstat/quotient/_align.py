r"""Alignment of two models modulo their symmetry group, the quotient distance and loss barriers.

`align(reference, params, group)` returns representatives `(r', p')` of the two orbits with `p'`
matched to `r'`: continuous parts are put in canonical form (balanced rescalings; balanced `GL`
factors, compared through the invariants `Q_h^T K_h`, `O_h V_h`), then permutations are found by
weight matching, git-re-basin's coordinate descent `max_{pi} sum_l <r_l, pi . p_l>` where each step
is a linear assignment problem solved by `scipy.optimize.linear_sum_assignment` (host code). The
quotient distance is `d(r, p) = |r' - p'|`: zero exactly when `p = g . r` for some `g` in the group
(generic parameters), and for a permutation group it equals `min_pi |r - pi . p|` when weight
matching finds the optimum.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu

from ._symmetry._base import AbstractSymmetry, compiled_canonicalize, sqnorm


def align(reference, params, group: AbstractSymmetry):
    """Representatives `(reference', params')` of the orbits of `reference` and `params` under
    `group`, `params'` matched to `reference'` (see the module docstring)."""
    return group.align(reference, params)


def canonicalize(params, group: AbstractSymmetry):
    r"""The canonical representative `c(theta)` of the orbit `G . theta`: `c(g . theta) =
    c(theta)` for every `g` in `group`, and `c(theta)` computes the same function as `theta`.

    Compiled once per group and parameter structure, and shared with `align` (which puts both
    models in this form before matching permutations). Inside a jitted function call
    `group.canonicalize(params)` directly.
    """
    return compiled_canonicalize(group, params)


def quotient_distance(a, b, group: AbstractSymmetry) -> jax.Array:
    r"""`d(a, b) = |a' - b'|` for the aligned representatives `(a', b') = align(a, b, group)`."""
    ra, rb = group.align(a, b)
    diff = jtu.tree_map(
        lambda x, y: x - y,
        eqx.filter(ra, eqx.is_inexact_array),
        eqx.filter(rb, eqx.is_inexact_array),
    )
    return jnp.sqrt(sqnorm(diff))


def interpolate(a, b, t):
    """`(1 - t) a + t b` on the inexact leaves (other leaves from `a`)."""
    return jtu.tree_map(lambda x, y: (1 - t) * x + t * y if eqx.is_inexact_array(x) else x, a, b)


def loss_barrier(loss, a, b, num: int = 25):
    r"""The loss along the segment `theta(t) = (1 - t) a + t b` and its barrier
    `B = max_t [L(theta(t)) - ((1 - t) L(a) + t L(b))]` (git-re-basin's definition).

    **Arguments:** `loss`: `params -> scalar`; `a`, `b`: two parameter pytrees of equal structure;
    `num`: number of points in `[0, 1]`.

    **Returns:** `(ts, losses, barrier)`.
    """
    if num < 2:
        raise ValueError(f"loss_barrier needs at least 2 points, got num={num}")
    ts = jnp.linspace(0.0, 1.0, num)
    losses = jax.vmap(lambda t: loss(interpolate(a, b, t)))(ts)
    barrier = jnp.max(losses - ((1 - ts) * losses[0] + ts * losses[-1]))
    return ts, losses, barrier
