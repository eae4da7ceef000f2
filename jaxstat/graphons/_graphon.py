"""Graphons `W: [0,1]^2 -> [0,1]` (symmetric): step graphons of matrices, graphons as functions."""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from .._checks import is_concrete


def _float_dtype(x) -> jnp.dtype:
    dtype = jnp.result_type(x)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError("graphon values are real, got a complex array")
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    return dtype


_VALUE_ERRORS = (
    "contain NaN or infinite entries",
    "must lie in [0, 1] (clip them first)",
    "must be symmetric (use (A + A.T) / 2)",
)


def value_flags(values) -> tuple[Array, Array]:
    """`(bad, index)` for the graphon values `values`: `bad` when they are not finite, outside
    `[0, 1]` or not symmetric (up to `64 eps`), `index` the first failure (an index into the
    messages, `_VALUE_ERRORS`). A compiled program may return them for its caller to raise with
    `raise_bad_values`."""
    finite = jnp.all(jnp.isfinite(values))
    in_box = jnp.all((values >= 0) & (values <= 1))
    tol = 64 * jnp.finfo(values.dtype).eps
    symmetric = jnp.all(jnp.abs(values - values.T) <= tol)
    index = jnp.where(~finite, 0, jnp.where(~in_box, 1, 2))
    return ~(finite & in_box & symmetric), index


def raise_bad_values(x, bad, index, name: str):
    """`x`, after raising for the flags of `value_flags`: a `ValueError` now when they are
    concrete, `eqx.branched_error_if` on `x` when traced. The message is `"{name} {what}"`."""
    messages = [f"{name} {m}" for m in _VALUE_ERRORS]
    if is_concrete(bad, index):
        if bool(bad):
            raise ValueError(messages[int(index)])
        return x
    return eqx.branched_error_if(x, bad, index, messages)


_value_flags = eqx.filter_jit(value_flags)


def _check_values(values: Array, name: str) -> Array:
    # Concrete values: the flags from a small program without host callback (where the values
    # live: no copy of an n x n matrix to the host), raised here.
    return raise_bad_values(values, *_value_flags(values), name)


def _check_sizes(sizes: Array) -> Array:
    message = "block sizes must be positive and sum to 1"
    tol = 64 * sizes.shape[0] * jnp.finfo(sizes.dtype).eps
    if is_concrete(sizes):
        host = np.asarray(sizes)
        if np.any(~(host > 0)) or abs(np.sum(host) - 1) > tol:
            raise ValueError(message)
        return sizes
    bad = jnp.any(~(sizes > 0)) | (jnp.abs(jnp.sum(sizes) - 1) > tol)
    return eqx.error_if(sizes, bad, message)


def check_graphon_values(values: Array, name: str = "graphon values") -> Array:
    """`values` (square, symmetric, in `[0, 1]`), checked: a `ValueError` when they are concrete,
    `eqx.error_if` when traced (inside `jit`)."""
    if values.ndim != 2 or values.shape[0] != values.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {values.shape}")
    return _check_values(values, name)


class AbstractGraphon(eqx.Module):
    """A graphon: a symmetric measurable `W: [0,1]^2 -> [0,1]`, evaluable at points."""

    @abc.abstractmethod
    def __call__(self, x: ArrayLike, y: ArrayLike) -> Array:
        """`W(x, y)`, broadcasting `x` against `y`."""


class StepGraphon(AbstractGraphon):
    """The step graphon of a symmetric matrix `A` with entries in `[0, 1]`.

    `[0, 1]` is cut into consecutive blocks `I_1, ..., I_n` of lengths `mu_1, ..., mu_n` (`1/n` each
    by default) and `W_A(x, y) = A[i, j]` for `x in I_i`, `y in I_j`. With uniform blocks this is
    the graphon of the weighted graph with adjacency `A`; a refinement (each block cut into `k`
    equal parts, `A` replaced by `kron(A, ones(k, k))`) is the same graphon.

    **Arguments:**

    - `values`: the symmetric `n x n` matrix `A`, entries in `[0, 1]` (integer and boolean
      adjacency matrices are converted to the default float dtype).
    - `sizes`: the block lengths `mu`, positive, summing to 1; default `1/n` each.

    Shapes raise `ValueError` at once; values outside `[0, 1]`, asymmetric or non-finite values and
    bad block lengths raise a `ValueError` when they are concrete, and through `eqx.error_if`
    under `jit`.

    **Example:**

    ```python
    import jax.numpy as jnp
    from jaxstat.graphons import StepGraphon

    W = StepGraphon(jnp.array([[0.9, 0.1], [0.1, 0.9]]))  # two communities
    W(0.2, 0.7)  # 0.1
    ```
    """

    values: Float[Array, "n n"]
    sizes: Float[Array, " n"]

    def __init__(self, values: ArrayLike, sizes: ArrayLike | None = None, *, check: bool = True):
        values = jnp.asarray(values)
        values = values.astype(_float_dtype(values))
        if values.ndim != 2 or values.shape[0] != values.shape[1]:
            raise ValueError(f"step graphon values must be a square matrix, got {values.shape}")
        n = values.shape[0]
        if n == 0:
            raise ValueError("a step graphon needs at least one block")
        if sizes is None:
            sizes = jnp.full((n,), 1 / n, dtype=values.dtype)
        else:
            sizes = jnp.asarray(sizes, dtype=values.dtype)
            if sizes.shape != (n,):
                raise ValueError(f"sizes must have shape ({n},) to match values, got {sizes.shape}")
            if check:
                sizes = _check_sizes(sizes)
        if check:
            values = check_graphon_values(values, "step graphon values")
        self.values = values
        self.sizes = sizes

    @property
    def n(self) -> int:
        """The number of blocks."""
        return self.values.shape[0]

    def block_index(self, x: ArrayLike) -> Int[Array, "*shape"]:
        """The block `i` with `x in I_i`."""
        edges = jnp.cumsum(self.sizes)
        i = jnp.searchsorted(edges, jnp.asarray(x, self.values.dtype), side="right")
        return jnp.clip(i, 0, self.n - 1)

    def __call__(self, x: ArrayLike, y: ArrayLike) -> Array:
        return self.values[self.block_index(x), self.block_index(y)]

    def refine(self, k: int) -> StepGraphon:
        """The same graphon on a partition where each block is cut into `k` equal parts."""
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"refinement factor must be a positive integer, got {k!r}")
        values = jnp.kron(self.values, jnp.ones((k, k), self.values.dtype))
        sizes = jnp.repeat(self.sizes / k, k)
        return StepGraphon(values, sizes, check=False)

    def permute(self, perm: ArrayLike) -> StepGraphon:
        """Relabel the blocks: block `i` of the result is block `perm[i]` of `self`. With uniform
        blocks this is `W^phi` for a measure-preserving `phi`, so every invariant is unchanged."""
        perm = jnp.asarray(perm)
        if perm.shape != (self.n,):
            raise ValueError(f"a permutation of {self.n} blocks has shape ({self.n},)")
        return StepGraphon(self.values[perm][:, perm], self.sizes[perm], check=False)

    @classmethod
    def from_networkx(cls, G, weight: str | None = None, nodelist=None) -> StepGraphon:
        """The step graphon of a networkx graph (uniform blocks, node order `nodelist`)."""
        import networkx as nx

        if G.is_directed():
            raise TypeError("a graphon comes from an undirected graph")
        A = nx.to_numpy_array(G, nodelist=nodelist, weight=weight, dtype=np.float64)
        return cls(jnp.asarray(A, dtype=jnp.result_type(float)))


class FunctionGraphon(AbstractGraphon):
    """A graphon given by a function `W(x, y)`.

    **Arguments:**

    - `fn`: a JAX function of two arrays that broadcasts (`fn(x[:, None], x[None, :])` is the
      matrix of values), symmetric, with values in `[0, 1]`. Checked where it is evaluated on a
      grid (discretisation, sampling).

    **Example:**

    ```python
    from jaxstat.graphons import FunctionGraphon

    W = FunctionGraphon(lambda x, y: x * y)
    W(0.5, 0.5)  # 0.25
    ```
    """

    fn: Callable

    def __call__(self, x: ArrayLike, y: ArrayLike) -> Array:
        x, y = jnp.asarray(x), jnp.asarray(y)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(jnp.result_type(float))
        if not jnp.issubdtype(y.dtype, jnp.floating):
            y = y.astype(jnp.result_type(float))
        out = jnp.asarray(self.fn(x, y))
        return jnp.broadcast_to(out, jnp.broadcast_shapes(x.shape, y.shape)).astype(
            jnp.result_type(x, y)
        )


def as_step_graphon(W) -> StepGraphon:
    """A `StepGraphon` from a step graphon or a matrix (uniform blocks)."""
    if isinstance(W, StepGraphon):
        return W
    if isinstance(W, AbstractGraphon):
        raise TypeError(
            f"this function needs a step graphon; discretise the {type(W).__name__} first "
            "(`jaxstat.graphons.discretise(W, n)`)"
        )
    return StepGraphon(W)
