"""Step graphons from graphons: evaluation on a grid with a quadrature rule."""

from __future__ import annotations

import abc

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._graphon import AbstractGraphon, StepGraphon


class AbstractRule(eqx.Module):
    """A quadrature rule on `[0, 1]`: nodes `x_i` and weights `mu_i` (summing to 1) whose blocks
    `[mu_1 + ... + mu_(i-1), mu_1 + ... + mu_i]` contain the nodes."""

    @abc.abstractmethod
    def nodes_and_weights(self, n: int, dtype) -> tuple[Float[Array, " n"], Float[Array, " n"]]:
        """The `n` nodes and weights."""


class Midpoint(AbstractRule):
    """Block centres `x_i = (i + 1/2) / n`, weights `1/n`. For a Lipschitz graphon the step
    graphon is `O(1/n)`-close in `L^2`, and a step graphon on a partition dividing `n` is
    reproduced exactly."""

    def nodes_and_weights(self, n: int, dtype) -> tuple[Float[Array, " n"], Float[Array, " n"]]:
        x = (jnp.arange(n, dtype=dtype) + 0.5) / n
        return x, jnp.full((n,), 1 / n, dtype=dtype)


class GaussLegendre(AbstractRule):
    """Gauss-Legendre nodes and weights on `[0, 1]` (the nodes interlace with the cumulative
    weights, so node `i` lies in block `i`). Homomorphism densities of the resulting step graphon
    are the tensor-product Gauss rule for `t(F, W)`: exact when `W` is a polynomial of degree at
    most `2n - 1` in each variable, spectrally accurate for smooth `W`."""

    def nodes_and_weights(self, n: int, dtype) -> tuple[Float[Array, " n"], Float[Array, " n"]]:
        x, w = np.polynomial.legendre.leggauss(n)
        return jnp.asarray((x + 1) / 2, dtype=dtype), jnp.asarray(w / 2, dtype=dtype)


@eqx.filter_jit
def _discretise(W: AbstractGraphon, n: int, rule: AbstractRule):
    """The values `W(x_i, x_j)` and block lengths of `discretise`, unchecked: the caller builds
    the `StepGraphon`, whose checks run on the host when the values are concrete (a program
    without host callback, which JAX's persistent compilation cache can store)."""
    dtype = W.values.dtype if isinstance(W, StepGraphon) else jnp.result_type(float)
    x, mu = rule.nodes_and_weights(n, dtype)
    return W(x[:, None], x[None, :]), mu


def discretise(W: AbstractGraphon, n: int, *, rule: AbstractRule = Midpoint()) -> StepGraphon:
    """The step graphon `A[i, j] = W(x_i, x_j)` on the blocks of a quadrature rule.

    **Arguments:**

    - `W`: any graphon (a `FunctionGraphon`, or a `StepGraphon` to resample).
    - `n`: the number of blocks.
    - `rule`: `Midpoint()` (uniform blocks, default) or `GaussLegendre()`.

    **Returns:** a `StepGraphon` with `n` blocks.

    **Example:**

    ```python
    from jaxstat.graphons import FunctionGraphon, discretise

    W = FunctionGraphon(lambda x, y: x * y)
    Wn = discretise(W, 64)
    ```
    """
    if not isinstance(W, AbstractGraphon):
        raise TypeError(f"expected a graphon, got {type(W).__name__}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return StepGraphon(*_discretise(W, n, rule))
