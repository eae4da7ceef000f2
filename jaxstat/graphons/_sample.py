"""W-random graphs and weighted graphs sampled from a graphon."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from .._sharding import auto_axes_inside
from ._graphon import AbstractGraphon, raise_bad_values, StepGraphon, value_flags


def _dtype(W: AbstractGraphon):
    return W.values.dtype if isinstance(W, StepGraphon) else jnp.result_type(float)


def _check_args(W, n):
    if not isinstance(W, AbstractGraphon):
        raise TypeError(f"expected a graphon, got {type(W).__name__}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")


def sample_latent(key: PRNGKeyArray, n: int, *, sort: bool = False, dtype=None) -> Array:
    """Latent positions `x_1, ..., x_n` i.i.d. uniform on `[0, 1]` (sorted if `sort`).

    Sorting relabels the nodes and so changes no invariant of the sampled graph; it aligns the
    sample with `W` so that `W_{A_n} -> W` in `L^2` and not only in cut distance.

    **Arguments:** `key`; `n`; `sort`; `dtype` (default: the default float dtype).

    **Returns:** the `n` positions.

    **Example:**

    ```python
    import jax.random as jr
    from jaxstat.graphons import sample_latent

    x = sample_latent(jr.key(0), 100, sort=True)
    ```
    """
    dtype = jnp.result_type(float) if dtype is None else dtype
    x = jr.uniform(key, (n,), dtype=dtype)
    return jnp.sort(x) if sort else x


_NAME = "graphon values W(x_i, x_j)"


@eqx.filter_jit
# Runs on meshes with explicit axes too (see `jaxstat._sharding`).
@auto_axes_inside
def _sample_weighted_graph(key, W, n, sort, loops):
    """`sample_weighted_graph` and the flags `(bad, index)` of its values (`value_flags`),
    raised by the caller: outside this program when they are concrete, so that the program has
    no host callback (JAX's persistent compilation cache skips such programs)."""
    x = sample_latent(key, n, sort=sort, dtype=_dtype(W))
    A = W(x[:, None], x[None, :])
    bad, index = value_flags(A)
    if not loops:
        A = A * (1 - jnp.eye(n, dtype=A.dtype))
    return A, bad, index


def sample_weighted_graph(
    key: PRNGKeyArray, W: AbstractGraphon, n: int, *, sort: bool = False, loops: bool = False
) -> Float[Array, "n n"]:
    """The weighted W-random graph `H(n, W)`: `A[i, j] = W(x_i, x_j)` at uniform latent `x_i`.

    **Arguments:**

    - `key`: a PRNG key.
    - `W`: the graphon.
    - `n`: the number of nodes.
    - `sort`: sort the latent positions (nodes labelled in the order of `x`).
    - `loops`: keep the diagonal `W(x_i, x_i)`; by default it is zero (a simple weighted graph).

    **Returns:** the symmetric `n x n` weight matrix.

    **Example:**

    ```python
    import jax.random as jr
    from jaxstat.graphons import FunctionGraphon, sample_weighted_graph

    A = sample_weighted_graph(jr.key(0), FunctionGraphon(lambda x, y: x * y), 100, sort=True)
    ```
    """
    _check_args(W, n)
    return raise_bad_values(*_sample_weighted_graph(key, W, n, sort, loops), _NAME)


@eqx.filter_jit
# Runs on meshes with explicit axes too (see `jaxstat._sharding`).
@auto_axes_inside
def _sample_graph(key, W, n, sort):
    """`sample_graph` and the flags of the graphon's values (see `_sample_weighted_graph`)."""
    key_x, key_e = jr.split(key)
    P, bad, index = _sample_weighted_graph(key_x, W, n, sort, False)
    u = jr.uniform(key_e, (n, n), dtype=P.dtype)
    upper = jnp.triu(u < P, k=1)
    return (upper | upper.T).astype(P.dtype), bad, index


def sample_graph(
    key: PRNGKeyArray, W: AbstractGraphon, n: int, *, sort: bool = False
) -> Float[Array, "n n"]:
    """The W-random graph `G(n, W)`: latent `x_i` uniform, and each edge `ij` (`i < j`) present
    independently with probability `W(x_i, x_j)`.

    **Arguments:** as `sample_weighted_graph`.

    **Returns:** the symmetric 0/1 adjacency matrix (zero diagonal), in the graphon's float dtype.

    **Example:**

    ```python
    import jax.numpy as jnp
    import jax.random as jr
    from jaxstat.graphons import StepGraphon, sample_graph

    A = sample_graph(jr.key(0), StepGraphon(jnp.array([[0.9, 0.1], [0.1, 0.9]])), 200)
    ```
    """
    _check_args(W, n)
    return raise_bad_values(*_sample_graph(key, W, n, sort), _NAME)
