"""Convex potentials on the orthant of edge weights and the Hessian metrics they define.

A separable potential `psi(w) = sum_e phi(w_e)` gives the Hessian metric `G(w) = hess psi(w) =
diag(phi''(w_e))` on the orthant `w >= 0`. Complexifying each coordinate, `zeta_e = w_e + i theta_e`
(edge weight and connection phase), the Kähler potential `K(zeta) = 4 psi(Re zeta)` on the tube
domain has Levi form `d^2 K / d zeta_e d conj(zeta_f) = delta_ef phi''(w_e)`: the same factor
acts on the phases, and the metric is `phi''(w_e) (dw_e^2 + dtheta_e^2)`.

- `ShiftedEntropy(eps)`: `phi(w) = (w + eps) log(w + eps)`, `G = diag(1 / (w + eps))`, bounded on
  the closed orthant: natural gradient reaches a face (`w_e = 0`) in finite time and leaves it.
- `Entropy()`: `phi(w) = w log w`, `G = diag(1 / w)`, degenerate on the faces: multiplicative
  updates, an edge never reaches 0 and a dead edge is never born.
- `Euclidean()`: `phi(w) = w^2 / 2`, `G = I`: projected gradient descent, for comparison.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._checks import is_concrete


class AbstractHessianPotential(eqx.Module):
    """A separable convex potential `psi(w) = sum_e phi(w_e)` on edge weights `w >= 0`.

    Subclasses give `phi`, the metric `phi''` and its inverse, and the mirror-descent displacement.
    """

    @abc.abstractmethod
    def phi(self, w: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        """`phi(w)` elementwise."""

    @abc.abstractmethod
    def metric(self, w: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        """The diagonal of the Hessian metric, `G(w)_ee = phi''(w_e)`."""

    @abc.abstractmethod
    def inverse_metric(self, w: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
        """The diagonal of `G(w)^{-1}`, `1 / phi''(w_e)` (finite on the whole closed orthant, or 0
        where the metric degenerates)."""

    @abc.abstractmethod
    def mirror_displacement(
        self, w: Float[Array, "*shape"], step: Float[Array, "*shape"]
    ) -> Float[Array, "*shape"]:
        """`u = w' - w` of the mirror step `phi'(w') = phi'(w) - step` (before clipping at 0),
        computed without cancellation."""

    def value(self, w: Float[ArrayLike, "*shape"]) -> Float[Array, ""]:
        """`psi(w) = sum_e phi(w_e)`."""
        return jnp.sum(self.phi(jnp.asarray(w)))

    @property
    def reaches_faces(self) -> bool:
        """`True` when the inverse metric is positive on the faces, so that descent can move an
        edge to `w_e = 0` in finite time and back."""
        return True


class ShiftedEntropy(AbstractHessianPotential):
    """The shifted entropic potential `phi(w) = (w + eps) log(w + eps)`, `G = diag(1 / (w + eps))`.

    The metric is non-degenerate on the closed orthant, so natural gradient
    `dw = -eta (w + eps) grad L` (clipped at 0) lets an edge die in finite time and be born again
    when the descent direction points inward. The mirror step is
    `w' = (w + eps) exp(-eta grad L) - eps`, clipped at 0.

    **Arguments:**

    - `eps`: the shift, `> 0`. As `eps -> 0` the updates tend to the multiplicative ones of
      [`jaxstat.strata.Entropy`][] (at rate `O(eps)`).

    **Example:**

    ```python
    import jax.numpy as jnp
    from jaxstat.strata import ShiftedEntropy

    pot = ShiftedEntropy(1e-2)
    pot.inverse_metric(jnp.array([0.0, 1.0]))  # [0.01, 1.01]
    ```
    """

    eps: Float[ArrayLike, ""] = 1e-2

    def __check_init__(self):
        if is_concrete(self.eps) and not bool(jnp.all(jnp.asarray(self.eps) > 0)):
            raise ValueError(
                f"eps must be positive, got {self.eps}; use jaxstat.strata.Entropy() for eps = 0"
            )

    def phi(self, w):
        v = w + self.eps
        return v * jnp.log(v)

    def metric(self, w):
        return 1 / (w + self.eps)

    def inverse_metric(self, w):
        return w + self.eps

    def mirror_displacement(self, w, step):
        return (w + self.eps) * jnp.expm1(-step)


class Entropy(AbstractHessianPotential):
    """The entropic potential `phi(w) = w log w`, `G = diag(1 / w)`: multiplicative updates.

    Natural gradient is `dw = -eta w grad L` and the mirror step the exponentiated gradient
    `w' = w exp(-eta grad L)`: a positive weight stays positive and a zero weight stays zero (the
    metric degenerates on the faces), so there is no face crossing. For comparison with
    [`jaxstat.strata.ShiftedEntropy`][].
    """

    def phi(self, w):
        return jnp.where(w > 0, w * jnp.log(jnp.where(w > 0, w, 1)), 0)

    def metric(self, w):
        return 1 / w

    def inverse_metric(self, w):
        return w

    def mirror_displacement(self, w, step):
        return w * jnp.expm1(-step)

    @property
    def reaches_faces(self) -> bool:
        return False


class Euclidean(AbstractHessianPotential):
    """`phi(w) = w^2 / 2`, `G = I`: the natural gradient is the plain gradient and the step is
    projected gradient descent onto the orthant. For comparison."""

    def phi(self, w):
        return 0.5 * w**2

    def metric(self, w):
        return jnp.ones_like(w)

    def inverse_metric(self, w):
        return jnp.ones_like(w)

    def mirror_displacement(self, w, step):
        return -step
