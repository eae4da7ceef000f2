"""Random draws of several shapes from one random-bit generation."""

import math
from collections.abc import Callable, Sequence

import jax
from jaxtyping import Array, Key, UInt32


def draws(
    sampler: Callable,
    keys: Key[Array, " k"] | UInt32[Array, "k 2"],
    shapes: Sequence[tuple[int, ...]],
    dtype,
) -> list[Array]:
    """`[sampler(k, s, dtype) for k, s in zip(keys, shapes)]`, from one batched draw.

    `sampler(key, shape, dtype)` must be elementwise in its random bits, like `jr.normal` and
    `jr.uniform` (with `functools.partial` for bounds): under JAX's default partitionable
    Threefry the bits at flat index `i` depend only on the key and `i`, so drawing every key at
    the largest size and keeping the first `prod(shape)` values of each gives the per-key draws
    bit for bit. Each separate draw is a Threefry hash of its own, which XLA compiles at about
    0.2 s on a CPU; this is one. (Values the sampler's arithmetic uses, such as bounds, should be
    arguments of the compiled program, not constants: XLA folds constant arithmetic, rounding
    it differently from the draws made apart.)
    """
    if len(keys) != len(shapes):
        raise ValueError(f"got {len(keys)} keys for {len(shapes)} shapes")
    sizes = [math.prod(s) for s in shapes]
    flat = jax.vmap(lambda k: sampler(k, (max(sizes),), dtype))(keys)
    return [flat[i, :size].reshape(s) for i, (size, s) in enumerate(zip(sizes, shapes))]
