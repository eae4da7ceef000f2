"""A symmetry of a submodule (or subtree) acting inside a larger model."""

from collections.abc import Callable

import equinox as eqx

from ._base import AbstractSymmetry, sqnorm


class OnSubtree(AbstractSymmetry):
    r"""The symmetry `inner` of the subtree `where(params)`, acting on the whole pytree.

    A transformation of a submodule that leaves the submodule's function unchanged leaves the
    function of any model that uses the submodule only through calls unchanged too, so every
    symmetry of a child is a symmetry of its parent: `g . theta` replaces `where(theta)` by
    `g . where(theta)`.

    **Arguments:** `where`: the subtree's location (as for `eqx.tree_at`); `inner`: its symmetry.
    """

    where: Callable = eqx.field(static=True)
    inner: AbstractSymmetry

    def _put(self, params, sub):
        return eqx.tree_at(self.where, params, sub)

    def act(self, params, g):
        return self._put(params, self.inner.act(self.where(params), g))

    def identity(self, params):
        return self.inner.identity(self.where(params))

    def random_element(self, key, params):
        return self.inner.random_element(key, self.where(params))

    def algebra_zero(self, params):
        return self.inner.algebra_zero(self.where(params))

    def chart(self, params, xi):
        return self.inner.chart(self.where(params), xi)

    def invariants(self, params):
        return self.inner.invariants(self.where(params))

    def canonicalize(self, params):
        return self._put(params, self.inner.canonicalize(self.where(params)))

    def orbit_min_norm(self, params):
        sub = self.where(params)
        return sqnorm(params) - sqnorm(sub) + self.inner.orbit_min_norm(sub)

    def orbit_min_norm_result(self, params):
        sub = self.where(params)
        value, converged = self.inner.orbit_min_norm_result(sub)
        return sqnorm(params) - sqnorm(sub) + value, converged

    def charges(self, params):
        return self.inner.charges(self.where(params))

    def align(self, reference, params):
        ref, par = self.inner.align(self.where(reference), self.where(params))
        return self._put(reference, ref), self._put(params, par)
