"""Objectives: functions on graphons with their derivative kernels, and their combinations.

An objective `F` maps a graphon to a scalar and has an `L^2` derivative kernel `DF(W)`: `d/de F(W +
e U) = <DF(W), U>_{L^2}` for symmetric `U`. On a step graphon with block values `A` and block
lengths `mu`, `DF(W)[i, j] = sym(dF/dA)[i, j] / (mu_i mu_j)`, which is how `kernel` is computed by
automatic differentiation when no closed form is given. Combinations follow the chain rule: `D(a F +
b G) = a DF + b DG`, `D(F G) = G DF + F DG`, `D f(F_1, ..., F_k) = sum_i d_i f DF_i`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Shaped

from ._density import (
    homomorphism_density,
    homomorphism_kernel,
    scalar_entropy,
    scalar_entropy_kernel,
)
from ._graphon import as_step_graphon, StepGraphon
from ._pattern import as_pattern, Pattern


def autodiff_kernel(fn: Callable[[StepGraphon], Array], W: StepGraphon) -> Float[Array, "n n"]:
    """`DF(W)` of a scalar function of step graphons, by reverse-mode differentiation:
    `sym(dF/dA) / (mu mu^T)`."""
    W = as_step_graphon(W)
    sizes = W.sizes
    grad = jax.grad(lambda A: fn(StepGraphon(A, sizes, check=False)))(W.values)
    return (grad + grad.T) / (2 * jnp.outer(sizes, sizes))


class AbstractObjective(eqx.Module):
    """A scalar function of graphons with its derivative kernel.

    Subclasses implement `__call__(W)` on step graphons and may override `kernel(W)` with a closed
    form (the default differentiates `__call__`). Objectives combine with `+`, `-`, `*` (by a scalar
    or another objective) and `Composition`.
    """

    @abc.abstractmethod
    def __call__(self, W: StepGraphon | Shaped[ArrayLike, "n n"]) -> Float[Array, ""]:
        """`F(W)`."""

    def kernel(self, W: StepGraphon | Shaped[ArrayLike, "n n"]) -> Float[Array, "n n"]:
        """The derivative kernel `DF(W)` on the blocks of `W`."""
        W = as_step_graphon(W)
        return autodiff_kernel(self, W)

    def __add__(self, other):
        if not isinstance(other, AbstractObjective):
            return NotImplemented
        return LinearCombination((self, other), (1.0, 1.0))

    def __sub__(self, other):
        if not isinstance(other, AbstractObjective):
            return NotImplemented
        return LinearCombination((self, other), (1.0, -1.0))

    def __neg__(self):
        return LinearCombination((self,), (-1.0,))

    def __mul__(self, other):
        if isinstance(other, AbstractObjective):
            return Product((self, other))
        if isinstance(other, int | float | np.number | jax.Array) and jnp.ndim(other) == 0:
            return LinearCombination((self,), (other,))
        return NotImplemented

    def __rmul__(self, other):
        return self.__mul__(other)


class HomomorphismDensity(AbstractObjective):
    """`F(W) = t(F, W)`, with the kernel of `homomorphism_kernel`.

    **Arguments:** `pattern`: a `Pattern`, an edge list or a networkx graph.

    **Example:**

    ```python
    from jaxstat.graphons import HomomorphismDensity, Pattern

    triangles = HomomorphismDensity(Pattern.cycle(3))
    ```
    """

    pattern: Pattern

    def __init__(self, pattern):
        self.pattern = as_pattern(pattern)

    def __call__(self, W: StepGraphon | Shaped[ArrayLike, "n n"]) -> Float[Array, ""]:
        W = as_step_graphon(W)
        return homomorphism_density(self.pattern, W)

    def kernel(self, W: StepGraphon | Shaped[ArrayLike, "n n"]) -> Float[Array, "n n"]:
        W = as_step_graphon(W)
        return homomorphism_kernel(self.pattern, W)


class ScalarEntropy(AbstractObjective):
    """`Ent(W) = int h(W)`, `h(p) = p log p + (1 - p) log(1 - p)`, kernel `log(W / (1 - W))`.

    **Example:**

    ```python
    from jaxstat.graphons import HomomorphismDensity, Pattern, ScalarEntropy

    F = HomomorphismDensity(Pattern.cycle(3)) + 0.1 * ScalarEntropy()  # entropy-regularised
    ```
    """

    def __call__(self, W: StepGraphon | Shaped[ArrayLike, "n n"]) -> Float[Array, ""]:
        W = as_step_graphon(W)
        return scalar_entropy(W)

    def kernel(self, W: StepGraphon | Shaped[ArrayLike, "n n"]) -> Float[Array, "n n"]:
        W = as_step_graphon(W)
        return scalar_entropy_kernel(W)


class LinearCombination(AbstractObjective):
    """`F = sum_i c_i F_i`, `DF = sum_i c_i DF_i`.

    **Arguments:** `terms`: objectives; `coefficients`: scalars (Python or JAX), one per term.

    **Example:**

    ```python
    from jaxstat.graphons import HomomorphismDensity, LinearCombination, Pattern, ScalarEntropy

    F = LinearCombination((HomomorphismDensity(Pattern.cycle(3)), ScalarEntropy()), (1.0, 0.1))
    ```
    """

    terms: tuple[AbstractObjective, ...]
    coefficients: tuple[float | Array, ...]

    def __init__(self, terms, coefficients):
        terms, coefficients = tuple(terms), tuple(coefficients)
        if len(terms) != len(coefficients):
            raise ValueError("one coefficient per term")
        if not all(isinstance(t, AbstractObjective) for t in terms):
            raise TypeError("terms must be objectives")
        self.terms = terms
        self.coefficients = coefficients

    def __call__(self, W: StepGraphon | Shaped[ArrayLike, "n n"]) -> Float[Array, ""]:
        W = as_step_graphon(W)
        return sum(c * t(W) for c, t in zip(self.coefficients, self.terms))

    def kernel(self, W: StepGraphon | Shaped[ArrayLike, "n n"]) -> Float[Array, "n n"]:
        W = as_step_graphon(W)
        return sum(c * t.kernel(W) for c, t in zip(self.coefficients, self.terms))


class Product(AbstractObjective):
    """`F = prod_i F_i`, `DF = sum_i (prod_{j != i} F_j) DF_i`.

    **Arguments:** `terms`: the objectives `F_i`.

    **Example:**

    ```python
    from jaxstat.graphons import HomomorphismDensity, Pattern, Product

    F = Product((HomomorphismDensity([(0, 1)]), HomomorphismDensity(Pattern.cycle(3))))  # also `*`
    ```
    """

    terms: tuple[AbstractObjective, ...]

    def __init__(self, terms):
        terms = tuple(terms)
        if not terms or not all(isinstance(t, AbstractObjective) for t in terms):
            raise TypeError("a product needs one or more objectives")
        self.terms = terms

    def __call__(self, W: StepGraphon | Shaped[ArrayLike, "n n"]) -> Float[Array, ""]:
        W = as_step_graphon(W)
        return jnp.prod(jnp.stack([t(W) for t in self.terms]))

    def kernel(self, W: StepGraphon | Shaped[ArrayLike, "n n"]) -> Float[Array, "n n"]:
        W = as_step_graphon(W)
        values = [t(W) for t in self.terms]
        out = 0
        for i, t in enumerate(self.terms):
            others = [v for j, v in enumerate(values) if j != i]
            factor = jnp.prod(jnp.stack(others)) if others else 1
            out = out + factor * t.kernel(W)
        return out


class Composition(AbstractObjective):
    """`F(W) = f(F_1(W), ..., F_k(W))` for a differentiable user function `f`; `DF = sum_i
    (d_i f) DF_i` (the partials of `f` by automatic differentiation, the kernels of the `F_i` by
    their own rules).

    **Arguments:** `fn`: `f`, a JAX function of `k` scalars; `terms`: the objectives `F_i`.

    **Example:**

    ```python
    from jaxstat.graphons import Composition, HomomorphismDensity

    # penalise the distance of the edge density to 1/2
    F = Composition(lambda e: (e - 0.5) ** 2, (HomomorphismDensity([(0, 1)]),))
    ```
    """

    fn: Callable
    terms: tuple[AbstractObjective, ...]

    def __init__(self, fn, terms):
        terms = tuple(terms)
        if not terms or not all(isinstance(t, AbstractObjective) for t in terms):
            raise TypeError("a composition needs one or more objectives")
        self.fn = fn
        self.terms = terms

    def __call__(self, W: StepGraphon | Shaped[ArrayLike, "n n"]) -> Float[Array, ""]:
        W = as_step_graphon(W)
        return jnp.asarray(self.fn(*(t(W) for t in self.terms)))

    def kernel(self, W: StepGraphon | Shaped[ArrayLike, "n n"]) -> Float[Array, "n n"]:
        W = as_step_graphon(W)
        values = tuple(t(W) for t in self.terms)
        partials = jax.grad(lambda v: jnp.asarray(self.fn(*v)))(values)
        return sum(p * t.kernel(W) for p, t in zip(partials, self.terms))


class CustomObjective(AbstractObjective):
    """An objective given by a user function of the step graphon, kernel by differentiation.

    **Arguments:** `fn`: a JAX function `StepGraphon -> scalar` (read `W.values` and `W.sizes`;
    `int g(W)` is `W.sizes @ g(W.values) @ W.sizes`).

    **Example:**

    ```python
    import jax.numpy as jnp
    from jaxstat.graphons import CustomObjective

    # half the squared L^2 distance to a target kernel T (on the same blocks): DF = W - T
    T = jnp.array([[0.7, 0.3], [0.3, 0.6]])
    F = CustomObjective(lambda W: 0.5 * W.sizes @ (W.values - T) ** 2 @ W.sizes)
    ```
    """

    fn: Callable

    def __call__(self, W: StepGraphon | Shaped[ArrayLike, "n n"]) -> Float[Array, ""]:
        W = as_step_graphon(W)
        return jnp.asarray(self.fn(W))


@eqx.filter_jit
def derivative_kernel(
    objective: AbstractObjective, W: StepGraphon | Shaped[ArrayLike, "n n"]
) -> Float[Array, "n n"]:
    """The derivative kernel `DF(W)` of an objective on the blocks of a step graphon.

    **Arguments:** `objective`; `W`, a `StepGraphon` or a matrix (uniform blocks).

    **Returns:** the symmetric matrix of block values of `DF(W)`.

    **Example:**

    ```python
    import jax.numpy as jnp
    from jaxstat.graphons import HomomorphismDensity, Pattern, derivative_kernel

    F = HomomorphismDensity(Pattern.cycle(3)) * HomomorphismDensity([(0, 1)])
    derivative_kernel(F, jnp.full((3, 3), 0.5))  # 4 * 0.5**3 everywhere (F = p^4 on constants)
    ```
    """
    if not isinstance(objective, AbstractObjective):
        raise TypeError(f"expected an objective, got {type(objective).__name__}")
    return objective.kernel(as_step_graphon(W))
