r"""Neuron (unit / channel) symmetries: permutations of units combined with per-unit scalings.

A *unit* is an index `i` along one axis of several parameter arrays (its sites): the incoming
weights and bias of a hidden neuron (or output channel of a convolution), and its outgoing weights
(a column of the next layer). With an elementwise activation `sigma` between them:

- every `sigma`: permuting the units of a layer (all its sites by the same permutation `pi`)
  leaves the network's function unchanged;
- positively homogeneous `sigma` (`sigma(s z) = s sigma(z)`, `s > 0`: ReLU, leaky ReLU, identity):
  the rescaling `w_in_i -> s_i w_in_i`, `w_out_i -> w_out_i / s_i` too;
- odd `sigma` (`sigma(-z) = -sigma(z)`: tanh): the sign flip `s_i in {-1, +1}` with the same action.

A site has a power `p in {+1, 0, -1}`: its slice is multiplied by `s_i^p` (`+1` incoming, `-1`
outgoing, `0` permuted only, e.g. the weights before a normalisation layer that the unit passes
through). With positive scalings the conserved charges of gradient flow are
`Q_i = sum_sites p |slice_i|^2 = |w_in_i|^2 - |w_out_i|^2`, and the balanced representative
minimises `|theta|^2` over the scalings: it solves `|w_in_i| = |w_out_i|` for every unit, which for
one hidden layer gives `min |g . theta|^2 = |rest|^2 + 2 sum_i |w_in_i| |w_out_i|`.
"""

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
from jax import lax
from scipy.optimize import linear_sum_assignment

from ..._krylov import GMRES
from ._base import (
    AbstractSymmetry,
    compiled_act,
    compiled_canonicalize,
    sqnorm,
    UNCONVERGED_MESSAGE,
)


# ---------------------------------------------------------------------------------------------
# Scaling strategies


class AbstractScaling(eqx.Module):
    """How the units of a layer may be rescaled: a strategy of `Units`."""

    continuous: eqx.AbstractClassVar[bool]

    @abc.abstractmethod
    def random(self, key, n, dtype):
        """Random scalings `s` of shape `(n,)`."""

    @abc.abstractmethod
    def from_algebra(self, xi):
        """`s(xi)` with `s(0) = 1` (the chart of the continuous part)."""

    @abc.abstractmethod
    def algebra_size(self, n) -> int:
        """The dimension of the continuous part for `n` units."""

    @abc.abstractmethod
    def discrete_canonical(self, incoming):
        """The discrete scalings `s` (shape `(n,)`) that put units with incoming slices `incoming`
        (shape `(n, m)`) in canonical form; ones where the discrete part is trivial."""


class PositiveScaling(AbstractScaling):
    """`s_i > 0` (positively homogeneous activations). Chart `s = exp(xi)`."""

    continuous = True

    def random(self, key, n, dtype):
        return jnp.exp(0.5 * jr.normal(key, (n,), dtype))

    def from_algebra(self, xi):
        return jnp.exp(xi)

    def algebra_size(self, n):
        return n

    def discrete_canonical(self, incoming):
        return jnp.ones(incoming.shape[:1], incoming.dtype)


class SignFlip(AbstractScaling):
    """`s_i in {-1, +1}` (odd activations). Discrete: no Lie algebra, no charges."""

    continuous = False

    def random(self, key, n, dtype):
        return jnp.where(jr.bernoulli(key, 0.5, (n,)), 1.0, -1.0).astype(dtype)

    def from_algebra(self, xi):
        raise AssertionError("a discrete scaling has no chart")

    def algebra_size(self, n):
        return 0

    def discrete_canonical(self, incoming):
        lead = jnp.take_along_axis(
            incoming, jnp.argmax(jnp.abs(incoming), axis=1)[:, None], axis=1
        )[:, 0]
        return jnp.where(lead < 0, -1.0, 1.0).astype(incoming.dtype)


class NoScaling(AbstractScaling):
    """Units may only be permuted (activations that are neither homogeneous nor odd)."""

    continuous = False

    def random(self, key, n, dtype):
        return jnp.ones((n,), dtype)

    def from_algebra(self, xi):
        raise AssertionError("no scaling has no chart")

    def algebra_size(self, n):
        return 0

    def discrete_canonical(self, incoming):
        return jnp.ones(incoming.shape[:1], incoming.dtype)


# ---------------------------------------------------------------------------------------------
# Sites and units


class Site(eqx.Module):
    """One array slice of a unit: `where(params)` is the array, `axis` the unit axis, `block`
    consecutive entries per unit along it (e.g. `H*W` after flattening channels), `power` the
    exponent of the unit's scaling on this slice (`+1` in, `-1` out, `0` permuted only)."""

    where: Callable = eqx.field(static=True)
    axis: int = eqx.field(static=True)
    power: int = eqx.field(static=True, default=0)
    block: int = eqx.field(static=True, default=1)

    def __check_init__(self):
        if self.power not in (-1, 0, 1):
            raise ValueError(f"a site's power must be -1, 0 or +1, got {self.power}")
        if self.block < 1:
            raise ValueError(f"a site's block must be a positive integer, got {self.block}")

    def get(self, params):
        """The array as `(n_units, block * rest)`."""
        x = jnp.moveaxis(self.where(params), self.axis, 0)
        n = x.shape[0] // self.block
        return x.reshape(n, -1)

    def n_units(self, params) -> int:
        x = self.where(params)
        if x.shape[self.axis] % self.block:
            raise ValueError(
                f"axis {self.axis} of length {x.shape[self.axis]} is not a whole number of blocks "
                f"of {self.block}"
            )
        return x.shape[self.axis] // self.block

    def map_slices(self, params, fn):
        """Replace the array by `fn` of its `(n_units, block * rest)` view."""

        def replace(x):
            y = jnp.moveaxis(x, self.axis, 0)
            shape = y.shape
            y = fn(y.reshape(shape[0] // self.block, -1))
            return jnp.moveaxis(y.reshape(shape), 0, self.axis)

        return eqx.tree_at(self.where, params, replace_fn=replace)

    def transform(self, params, perm, scale):
        """Replace unit `i` by `s_i^power` times old unit `perm[i]`."""

        def fn(y):
            y = y[perm]
            if self.power != 0:
                y = y * (scale**self.power)[:, None].astype(y.dtype)
            return y

        return self.map_slices(params, fn)


class Units(eqx.Module):
    """The units of one layer: the sites they index and how they may be scaled.

    **Arguments:** `sites`: a tuple of `Site`s (all with the same number of units); `scaling`: an
    `AbstractScaling` (`PositiveScaling()`, `SignFlip()` or `NoScaling()`); `name`: optional label
    (the permutation's name in a permutation spec).
    """

    sites: tuple[Site, ...]
    scaling: AbstractScaling = NoScaling()
    name: str | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if len(self.sites) == 0:
            raise ValueError("a layer of units needs at least one site")

    def size(self, params) -> int:
        sizes = {site.n_units(params) for site in self.sites}
        if len(sizes) != 1:
            raise ValueError(
                f"the sites of one layer of units disagree on its size: {sorted(sizes)}"
            )
        return sizes.pop()

    def transform(self, params, perm, scale):
        for site in self.sites:
            params = site.transform(params, perm, scale)
        return params

    def signed_sqnorms(self, params):
        """`sum_sites power |slice_i|^2`, per unit."""
        return sum(
            site.power * jnp.sum(jnp.abs(site.get(params)) ** 2, axis=1)
            for site in self.sites
            if site.power != 0
        )

    def sqnorms(self, params, power):
        """`sum |slice_i|^2` over the sites with this power, per unit."""
        out = [jnp.sum(jnp.abs(s.get(params)) ** 2, axis=1) for s in self.sites if s.power == power]
        return sum(out) if out else None

    def zero_units(self, params, units):
        """`params` with the slices of power `+1` and `-1` of the units where `units` is true set
        to zero."""
        for site in self.sites:
            if site.power != 0:
                params = site.map_slices(params, lambda y: jnp.where(units[:, None], 0, y))
        return params

    def mark_units(self, marks, units):
        """`marks` (a boolean pytree shaped like the parameters) with the entries of the slices of
        power `+1` and `-1` of the units where `units` is true set."""
        for site in self.sites:
            if site.power != 0:
                marks = site.map_slices(marks, lambda y: y | units[:, None])
        return marks


def _dtype(params):
    leaves = jax.tree_util.tree_leaves(eqx.filter(params, eqx.is_inexact_array))
    return jnp.result_type(*leaves) if leaves else jnp.float32


# ---------------------------------------------------------------------------------------------
# The symmetry


class NeuronSymmetry(AbstractSymmetry):
    r"""Permutations and per-unit scalings of the units of one or more layers.

    A group element is one `(perm, s)` per layer of units; unit `i` becomes `s_i^p` times old unit
    `perm[i]` on every site of power `p`. The group is `prod_layers S_n x (scalings)^n`.

    - Orbit directions: `d/dxi_i` of `exp(xi_i)` scalings (positive scalings only).
    - Charges: `|w_in_i|^2 - |w_out_i|^2` per unit for positive scalings (empty for discrete ones).
    - Canonical form: (1) the balanced representative `argmin_s |s . theta|^2` over all positive
      scalings jointly (a convex problem in `log s`, solved by block coordinate descent over the
      layers, each block update exact: `s_i = (|w_out_i| / |w_in_i|)^(1/2)`; its stationarity
      condition is `|w_in_i| = |w_out_i|` for every unit); (2) sign flips making the largest
      incoming entry of each unit positive, layer by layer in the given (input to output) order;
      (3) each layer's units sorted by `sum_sites |slice_i|^2`, a key no other layer's permutation
      changes (ties by `sum_sites sum slice_i`).
    - Dead units (positive scalings): a unit whose slices of power +1 are all zero (a ReLU unit
      whose input is always zero) or whose slices of power -1 are (its output is never read), as
      weight decay leaves them, or that only reads dead units, has no balanced point: its orbit's
      infimum sends its nonzero side to zero. The canonical form then balances the live units on
      the entries they share with live units only, gives each dead unit the scale `s_i = exp(xi_i)`
      with `xi` minimising `sum_e (log |e(xi)|)^2` over the dead units' nonzero entries `e` (the
      magnitudes of a dead unit's nonzero weights have geometric mean 1; a linear least-squares
      problem in `xi`), keeps zero weights zero, and sorts the dead units after the live ones.
      This is constant on orbits, idempotent, and leaves the function unchanged.
    - Invariants: the canonical form (complete); orbit-minimal norm: `|balanced theta|^2`.
    - Alignment: weight matching (git-re-basin): coordinate descent over the layers' permutations,
      each step the linear assignment `max_pi sum_i <r_i, p_{pi(i)}>` over all sites of the layer
      (`scipy.optimize.linear_sum_assignment`), started from the canonical forms of both models.

    **Arguments:** `units`: a tuple of `Units`, one per layer, input to output; `rtol`, `atol`: the
    balancing stops when every live unit has `| |w_in_i|^2 - |w_out_i|^2 | <= atol + rtol
    (|w_in_i|^2 + |w_out_i|^2)` (defaults `rtol = 1e-12` in float64, `1e-6` in float32,
    `atol = 0`); `max_steps`: its limit on sweeps over the layers.
    """

    units: tuple[Units, ...]
    rtol: float | None = eqx.field(static=True, default=None)
    atol: float | None = eqx.field(static=True, default=None)
    max_steps: int = eqx.field(static=True, default=1024)

    def _sizes(self, params):
        return [u.size(params) for u in self.units]

    def act(self, params, g):
        for u, (perm, scale) in zip(self.units, g):
            params = u.transform(params, perm, scale)
        return params

    def identity(self, params):
        dtype = _dtype(params)
        return tuple((jnp.arange(n), jnp.ones((n,), dtype)) for n in self._sizes(params))

    def random_element(self, key, params):
        dtype = _dtype(params)
        sizes = self._sizes(params)
        keys = jr.split(key, 2 * len(sizes))
        # A uniformly random permutation: the order of i.i.d. random 32-bit keys, as
        # `jr.permutation` draws it (ties have probability ~ n^2 / 2^33), from one random-bit
        # generation instead of its two (XLA compiles each in about 0.2 s on a CPU).
        return tuple(
            (jnp.argsort(jr.bits(kp, (n,))), u.scaling.random(ks, n, dtype))
            for u, n, kp, ks in zip(self.units, sizes, keys[::2], keys[1::2])
        )

    def algebra_zero(self, params):
        dtype = _dtype(params)
        return tuple(
            jnp.zeros((u.scaling.algebra_size(n),), dtype)
            for u, n in zip(self.units, self._sizes(params))
        )

    def chart(self, params, xi):
        out = []
        for u, n, x in zip(self.units, self._sizes(params), xi):
            scale = u.scaling.from_algebra(x) if u.scaling.continuous else jnp.ones((n,), x.dtype)
            out.append((jnp.arange(n), scale))
        return tuple(out)

    def charges(self, params):
        return tuple(u.signed_sqnorms(params) if u.scaling.continuous else None for u in self.units)

    # canonical form ------------------------------------------------------------------------

    def _dead(self, params):
        """Per layer, which units are dead (`None` for layers without positive scalings).

        A unit is dead when all its slices of power +1 or all its slices of power -1 are zero: a
        ReLU unit whose input is always zero, or whose output is never read (weight decay makes
        them). Entries a unit shares with dead units count as zero, to a fixed point: a unit that
        only reads dead units is dead too. Positive scalings keep zeros, so the dead units of
        `g . theta` are those of `theta`, permuted."""
        for u in self.units:
            if u.scaling.continuous and (
                u.sqnorms(params, 1) is None or u.sqnorms(params, -1) is None
            ):
                raise ValueError(
                    "a layer of positively rescaled units needs sites of power +1 and -1"
                )

        def dead_in(masked, previous):
            return tuple(
                (u.sqnorms(masked, 1) == 0) | (u.sqnorms(masked, -1) == 0) | d
                if u.scaling.continuous
                else None
                for u, d in zip(self.units, previous)
            )

        def cond(carry):
            return carry[1]

        def body(carry):
            dead, _ = carry
            new = dead_in(self._zero_dead(params, dead), dead)
            changed = jnp.any(
                jnp.stack([jnp.any(a != b) for a, b in zip(new, dead) if b is not None])
            )
            return new, changed

        none = tuple(
            jnp.zeros((n,), bool) if u.scaling.continuous else None
            for u, n in zip(self.units, self._sizes(params))
        )
        dead, _ = lax.while_loop(cond, body, (dead_in(params, none), jnp.array(True)))
        return dead

    def _zero_dead(self, params, dead):
        """`params` with the slices of power +1 and -1 of the dead units set to zero."""
        for u, d in zip(self.units, dead):
            if d is not None:
                params = u.zero_units(params, d)
        return params

    def _balancing(self, params, dead, throw=True):
        r"""The scalings `s` minimising `|s . theta_live|^2`, `theta_live` the parameters with the
        slices of dead units zeroed; `s_i = 1` for dead units. The live units' minimiser is the
        balanced point `|w_in_i| = |w_out_i|` of the entries not shared with dead units.

        With the other layers fixed, the objective in the scalings of one layer is
        `sum_i a_i s_i^2 + b_i / s_i^2` (`a_i`, `b_i` the squared norms of unit `i`'s slices of
        power +1 and -1), minimal at `s_i = (b_i / a_i)^(1/4)`. The minimiser over all layers is
        found by block coordinate descent: sweeps of this exact update over the layers, input to
        output, until every live unit satisfies `|a_i - b_i| <= atol + rtol (a_i + b_i)` (the
        objective is strictly convex in `xi = log s`; the sweeps converge linearly, in tens of
        sweeps for a few layers). One layer of scaled units needs a single update. Derivatives
        with respect to `params` follow the implicit function theorem on the stationarity
        condition `grad_xi |exp(xi) . theta_live|^2 = 0` (`jax.lax.custom_root`, a matrix-free
        GMRES solve with the Hessian in `xi`, compiled only when differentiated)."""
        dtype = _dtype(params)
        params = self._zero_dead(params, dead)
        sizes = self._sizes(params)

        def update(p, layer):
            u, d = self.units[layer], dead[layer]
            a = jnp.where(d, 1, u.sqnorms(p, 1))
            b = jnp.where(d, 1, u.sqnorms(p, -1))
            return (b / a) ** 0.25, jnp.where(d, 0, jnp.abs(a - b)), a + b

        continuous = [i for i, u in enumerate(self.units) if u.scaling.continuous]
        ones = [jnp.ones((n,), dtype) for n in sizes]
        if len(continuous) == 1:
            (layer,) = continuous
            ones[layer] = update(params, layer)[0]
            g = tuple((jnp.arange(n), s) for n, s in zip(sizes, ones))
            return g if throw else (g, jnp.array(True))

        default = 1e-12 if dtype == jnp.float64 else 1e-6
        rtol = default if self.rtol is None else self.rtol
        atol = 0.0 if self.atol is None else self.atol
        arrays, static = eqx.partition(params, eqx.is_inexact_array)

        def element(scales):
            return tuple((jnp.arange(n), s) for n, s in zip(sizes, scales))

        def fn(xi):
            # Dead units' slices are zero: a quadratic term pins their (free) coordinates at 0.
            pin = sum(jnp.sum(jnp.where(d, x, 0) ** 2) for x, d in zip(xi, dead) if d is not None)
            return sqnorm(self.act(params, self.chart(params, xi))) + pin

        def sweeps(_, xi0):
            def body(carry):
                arrays, scales, steps, _ = carry
                p = eqx.combine(arrays, static)
                balanced = jnp.array(True)
                for layer in continuous:
                    s, gap, total = update(p, layer)
                    balanced = balanced & jnp.all(gap <= atol + rtol * total)
                    p = self.units[layer].transform(p, jnp.arange(sizes[layer]), s)
                    scales = scales[:layer] + (scales[layer] * s,) + scales[layer + 1 :]
                return eqx.filter(p, eqx.is_inexact_array), scales, steps + 1, balanced

            def cond(carry):
                return ~carry[3] & (carry[2] < self.max_steps)

            init = (arrays, tuple(ones), jnp.array(0), jnp.array(False))
            _, scales, _, balanced = lax.while_loop(cond, body, init)
            xi = tuple(
                jnp.log(s) if u.scaling.continuous else x
                for u, s, x in zip(self.units, scales, xi0)
            )
            # (a float flag: `custom_root` gives its auxiliary output float tangents)
            return xi, balanced.astype(dtype)

        def tangent_solve(hessian, y):
            op = lx.FunctionLinearOperator(hessian, jax.eval_shape(lambda: y))
            inner = 1e-10 if dtype == jnp.float64 else 1e-5
            return lx.linear_solve(op, y, GMRES(rtol=inner, atol=0.0)).value

        xi, balanced = lax.custom_root(
            jax.grad(fn), self.algebra_zero(params), sweeps, tangent_solve, has_aux=True
        )
        if not throw:
            return self.chart(params, _restrict(xi, dead, live=True)), balanced != 0
        xi = eqx.error_if(xi, balanced == 0, UNCONVERGED_MESSAGE)
        return self.chart(params, _restrict(xi, dead, live=True))

    def _dead_scaling(self, params, dead):
        r"""The scalings of the dead units: `xi = log s` minimising
        `sum_e (log|e| + sum_i p_{e,i} xi_i)^2` over the nonzero entries `e` of the dead units'
        slices of power +1 and -1 (`p_{e,i}` the power of `e` in unit `i`'s slice): their
        magnitudes have geometric mean 1 along every direction of the dead units' scalings. The
        map `xi -> log|s . e|` is affine, so this is a linear least-squares problem (LSMR over
        Jacobian-vector products of the action); its minimisers differ only along scalings that
        move no nonzero entry, so the scaled parameters are unique. Live units keep `s_i = 1`.
        With one layer of scaled units every entry belongs to one unit and the minimiser is
        closed-form: `xi_i = -(sum_e p_e log|e|) / #e` over unit `i`'s nonzero entries."""
        dtype = _dtype(params)
        if sum(u.scaling.continuous for u in self.units) == 1:
            g = []
            for u, n, d in zip(self.units, self._sizes(params), dead):
                xi = jnp.zeros((n,), dtype)
                if d is not None:
                    slices = [(s.power, s.get(params)) for s in u.sites if s.power != 0]
                    logs = sum(
                        p * jnp.sum(jnp.log(jnp.abs(jnp.where(y != 0, y, 1))), axis=1)
                        for p, y in slices
                    )
                    count = sum(jnp.sum(y != 0, axis=1) for _, y in slices)
                    xi = jnp.where(d & (count > 0), -logs / jnp.maximum(count, 1), 0).real
                g.append((jnp.arange(n), jnp.exp(xi).astype(dtype)))
            return tuple(g)
        marks = jax.tree_util.tree_map(
            lambda x: jnp.zeros(x.shape, bool) if eqx.is_inexact_array(x) else x, params
        )
        for u, d in zip(self.units, dead):
            if d is not None:
                marks = u.mark_units(marks, d)
        arrays = eqx.filter(params, eqx.is_inexact_array)
        entries = jax.tree_util.tree_map(
            lambda m, x: (m & (x != 0)) if eqx.is_inexact_array(x) else None, marks, params
        )
        real = jnp.finfo(dtype).dtype

        def log_abs(m, x):
            return jnp.where(m, jnp.log(jnp.abs(jnp.where(m, x, 1))), 0).astype(real)

        rhs = jax.tree_util.tree_map(lambda m, x: -log_abs(m, x), entries, arrays)
        zero = self.algebra_zero(params)

        def dlog(xi):
            _, de = jax.jvp(
                lambda y: eqx.filter(self.act(params, self.chart(params, y)), eqx.is_inexact_array),
                (zero,),
                (_restrict(xi, dead, live=False),),
            )
            # d log|e| = Re(de / e)
            return jax.tree_util.tree_map(
                lambda m, x, dx: jnp.where(m, jnp.real(dx / jnp.where(m, x, 1)), 0).astype(real),
                entries,
                arrays,
                de,
            )

        tol = 1e-12 if dtype == jnp.float64 else 1e-6
        op = lx.FunctionLinearOperator(dlog, jax.eval_shape(lambda: zero))
        sol = lx.linear_solve(op, rhs, lx.LSMR(rtol=tol, atol=tol), throw=False)
        xi = eqx.error_if(
            sol.value,
            sol.result != lx.RESULTS.successful,
            "fixing the scalings of the dead units (a least-squares problem in log |weights|) did "
            "not converge",
        )
        return self.chart(params, _restrict(xi, dead, live=False))

    def _balance(self, params):
        """The canonical scalings: live units balanced, dead units normalised (see the class)."""
        if not any(u.scaling.continuous for u in self.units):
            return params
        dead = self._dead(params)
        params = self.act(params, self._balancing(params, dead))
        return self.act(params, self._dead_scaling(params, dead))

    def _signs(self, params):
        for u, n in zip(self.units, self._sizes(params)):
            if u.scaling.continuous:
                continue
            ins = [s.get(params) for s in u.sites if s.power == 1]
            if not ins:
                continue
            scale = u.scaling.discrete_canonical(jnp.concatenate(ins, axis=1))
            params = u.transform(params, jnp.arange(n), scale)
        return params

    def _sort_keys(self, params):
        return [
            sum(jnp.sum(jnp.abs(s.get(params)) ** 2, axis=1) for s in u.sites) for u in self.units
        ]

    def canonicalize(self, params):
        dead = (
            self._dead(params)
            if any(u.scaling.continuous for u in self.units)
            else (None,) * len(self.units)
        )
        params = self._signs(self._balance(params))
        dtype = _dtype(params)
        g = []
        for u, key, d in zip(self.units, self._sort_keys(params), dead):
            # live units first, then by `sum_sites |slice_i|^2`; ties (systematic among dead
            # units: normalised, often with a single nonzero entry) by `sum_sites sum slice_i`
            tie = sum(jnp.sum(jnp.real(s.get(params)), axis=1) for s in u.sites)
            last = jnp.zeros(key.shape, bool) if d is None else d
            g.append((jnp.lexsort((tie, key, last)), jnp.ones(key.shape, dtype)))
        return self.act(params, tuple(g))

    def invariants(self, params):
        return eqx.filter(self.canonicalize(params), eqx.is_inexact_array)

    def orbit_min_norm(self, params):
        r"""`inf_g |g . theta|^2`. With one layer of rescaled units the units decouple and
        `inf_s a_i s^2 + b_i / s^2 = 2 sqrt(a_i b_i)` (`a_i`, `b_i` the squared norms of unit
        `i`'s slices of power +1 and -1), so the infimum is
        `|theta|^2 - sum_i (a_i + b_i - 2 sqrt(a_i b_i))`, also for a dead unit (`a_i b_i = 0`:
        not attained, the infimum is still defined; weight decay makes such units). Otherwise
        the norm of the balanced point (`canonicalize`'s first stage) with the slices of the dead
        units removed (their entries tend to zero along the orbit)."""
        continuous = [u for u in self.units if u.scaling.continuous]
        if len(continuous) != 1:
            return self.check_converged(*self.orbit_min_norm_result(params))
        (u,) = continuous
        a, b = u.sqnorms(params, 1), u.sqnorms(params, -1)
        if a is None or b is None:
            raise ValueError("a layer of positively rescaled units needs sites of power +1 and -1")
        return sqnorm(params) - jnp.sum(a + b - 2 * jnp.sqrt(a * b))

    def orbit_min_norm_result(self, params):
        """`(orbit_min_norm(params), converged)`, `converged` `False` when the balancing of
        several layers of rescaled units (see `orbit_min_norm`) stopped at `max_steps` sweeps
        before its tolerance: the value is then not the minimum. Nothing is raised (see
        `AbstractSymmetry.orbit_min_norm_result`)."""
        if sum(u.scaling.continuous for u in self.units) == 1:
            return self.orbit_min_norm(params), jnp.array(True)
        dead = self._dead(params)
        live = self._zero_dead(params, dead)
        g, converged = self._balancing(params, dead, throw=False)
        return sqnorm(self.act(live, g)), converged

    # alignment -----------------------------------------------------------------------------

    def weight_matching(self, reference, params, *, max_iter: int = 100, seed: int = 0):
        """The permutations `pi_l` maximising `sum_l sum_sites <r, pi . p>` by coordinate descent
        (git-re-basin's weight matching). Host code (numpy + scipy); no scaling is applied.

        **Returns:** the group element `((pi_l, 1), ...)` to apply to `params` with `act`.
        """
        sizes = self._sizes(params)
        if sizes != self._sizes(reference):
            raise ValueError(
                f"the two models have different layer sizes: {self._sizes(reference)} and {sizes}"
            )
        dtype = _dtype(params)
        perms = [np.arange(n) for n in sizes]
        rng = np.random.default_rng(seed)

        def element(ps):
            return tuple((jnp.asarray(p), jnp.ones((len(p),), dtype)) for p in ps)

        for _ in range(max_iter):
            changed = False
            for layer in rng.permutation(len(sizes)):
                others = list(perms)
                others[layer] = np.arange(sizes[layer])
                moved = compiled_act(self, params, element(others))
                cost = np.zeros((sizes[layer], sizes[layer]))
                for site in self.units[layer].sites:
                    a = np.asarray(site.get(reference))
                    b = np.asarray(site.get(moved))
                    cost += a @ b.T
                _, col = linear_sum_assignment(cost, maximize=True)
                old = cost[np.arange(sizes[layer]), perms[layer]].sum()
                new = cost[np.arange(sizes[layer]), col].sum()
                if new > old + 1e-12 * max(1.0, abs(old)):
                    perms[layer] = col
                    changed = True
            if not changed:
                break
        return element(perms)

    def align(self, reference, params):
        # Both canonical: continuous parts balanced and signs fixed, units sorted by a key no
        # permutation changes. For `params = g . reference` this already aligns them exactly;
        # otherwise the sorted order is the starting point of the weight matching.
        reference = compiled_canonicalize(self, reference)
        params = compiled_canonicalize(self, params)
        return reference, compiled_act(self, params, self.weight_matching(reference, params))


def _restrict(xi, dead, *, live):
    """`xi` with the coordinates of the dead units (`live=True`) or of the live units
    (`live=False`) set to zero; layers without positive scalings unchanged."""
    return tuple(x if d is None else jnp.where(d if live else ~d, 0, x) for x, d in zip(xi, dead))
