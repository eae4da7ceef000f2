"""Small input checks shared by the subpackages."""

import jax


def is_concrete(*xs) -> bool:
    """`True` when none of `xs` is a tracer, so its values can be checked in Python."""
    return not any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(xs))
