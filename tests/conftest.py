import jax
import jax.random as jr
import pytest


# Correctness tests run in float64; scale and dtype tests ask for float32 explicitly.
jax.config.update("jax_enable_x64", True)


@pytest.fixture
def getkey():
    """A fresh PRNG key on every call, from a fixed seed (reproducible)."""
    key = jr.key(5678)

    def _getkey():
        nonlocal key
        key, subkey = jr.split(key)
        return subkey

    return _getkey
