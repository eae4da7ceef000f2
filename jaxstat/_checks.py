"""Small input checks shared by the subpackages."""

import equinox as eqx
import jax
import numpy as np


def is_concrete(*xs) -> bool:
    """`True` when none of `xs` is a tracer, so its values can be checked in Python."""
    return not any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(xs))


def raise_if(x, bad, message: str):
    """`x`, after raising where `bad` (a boolean array, any entry): on the host,
    `eqx.EquinoxRuntimeError(message)`, when `bad` is concrete (the program that computed it
    then needs no host callback, which JAX's persistent compilation cache cannot store); with
    `eqx.error_if` on `x` in the caller's program when it is traced."""
    if is_concrete(bad):
        if np.any(np.asarray(bad)):
            raise eqx.EquinoxRuntimeError(message)
        return x
    return eqx.error_if(x, bad, message)
