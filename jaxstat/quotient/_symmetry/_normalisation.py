r"""Scale invariance of the parameters feeding a normalisation layer.

If a layer `z = W x + b` is followed by a normalisation `N(z) = (z - mean z) / std z` (a LayerNorm
with `eps = 0`, over all of `z` or over groups of its entries), then `N(c z) = N(z)` for `c > 0`:
the group `R_{>0}` acts by `(W, b) -> (c W, c b)`. The gradient is orthogonal to `theta_S = (W, b)`,
so `|theta_S|^2` is conserved by gradient flow (the charge); the invariant and canonical
representative is the direction `theta_S / |theta_S|`; the orbit's minimal norm is an infimum,
`|theta|^2 - |theta_S|^2` (`c -> 0`).
"""

from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr

from ._base import AbstractSymmetry, sqnorm


class NormalisationScaling(AbstractSymmetry):
    r"""`theta_S -> c theta_S`, `c > 0`, for the arrays `theta_S = where(params)` (a tuple of
    arrays) that feed a scale-invariant normalisation. Chart `c = exp(xi)`.

    **Arguments:** `where`: a function returning the tuple of scaled arrays.
    """

    where: Callable = eqx.field(static=True)

    def _arrays(self, params):
        arrays = self.where(params)
        return tuple(arrays) if isinstance(arrays, (tuple, list)) else (arrays,)

    def _scale(self, params, c):
        arrays = self.where(params)
        if isinstance(arrays, (tuple, list)):
            scaled = type(arrays)(c.astype(x.dtype) * x for x in arrays)
        else:
            scaled = c.astype(arrays.dtype) * arrays
        return eqx.tree_at(self.where, params, scaled)

    def act(self, params, g):
        return self._scale(params, g)

    def identity(self, params):
        return jnp.ones((), self._arrays(params)[0].dtype)

    def random_element(self, key, params):
        return jnp.exp(0.5 * jr.normal(key, (), self._arrays(params)[0].dtype))

    def algebra_zero(self, params):
        return jnp.zeros((), self._arrays(params)[0].dtype)

    def chart(self, params, xi):
        return jnp.exp(xi)

    def charges(self, params):
        return sqnorm(self._arrays(params))

    def _normalised(self, params):
        norm = jnp.sqrt(sqnorm(self._arrays(params)))
        params = eqx.error_if(
            params,
            norm == 0,
            "the parameters before a normalisation layer are all zero: their direction (the "
            "scale-invariant quotient) is undefined",
        )
        return self._scale(params, 1 / norm)

    def invariants(self, params):
        return self._arrays(self._normalised(params))

    def canonicalize(self, params):
        return self._normalised(params)

    def orbit_min_norm(self, params):
        return sqnorm(params) - sqnorm(self._arrays(params))

    def align(self, reference, params):
        return self.canonicalize(reference), self.canonicalize(params)
