r"""The abstract parameter symmetry and the product of symmetries.

A symmetry is a group `G` acting on parameters `theta` (a pytree, or an equinox model) such that the
network computes the same function at `g . theta` for every `g` in `G`. From the action alone:

- orbit (vertical) directions: for a Lie algebra basis `xi_1 .. xi_k`,
  `v_a = d/ds (exp(s xi_a) . theta)` at `s = 0`, computed as the JVP of the action through a
  chart `xi -> g(xi)` with `g(0) = e`;
- the horizontal projection of a gradient: `h = grad - V c`, `c = argmin_c |V c - grad|`, the least
  squares solve over the orbit directions `V = [v_1 .. v_k]` (a `lineax` solve; `lx.SVD()` by
  default, exact also where the `v_a` are linearly dependent);
- for an exact symmetry `L(g . theta) = L(theta)`, so `<grad L, v_a> = 0`: gradients are horizontal;
  Noether's theorem gives quantities conserved by gradient flow `d theta / dt = -grad L` (the
  charges).
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
import numpy as np
from jax.flatten_util import ravel_pytree

from ..._checks import is_concrete, raise_if


def sqnorm(tree) -> jax.Array:
    """`|theta|^2`: the sum of squares of all inexact array leaves of a pytree (or model)."""
    leaves = jtu.tree_leaves(eqx.filter(tree, eqx.is_inexact_array))
    if not leaves:
        return jnp.zeros(())
    return sum(jnp.sum(jnp.abs(x) ** 2) for x in leaves)


# Host code (alignment, notebooks) calls these compiled: one compilation per group and parameter
# structure, shared by every caller outside a jitted function.
compiled_act = eqx.filter_jit(lambda group, params, g: group.act(params, g))
compiled_canonicalize = eqx.filter_jit(lambda group, params: group.canonicalize(params))


# The message of a symmetry whose iterative part did not converge (`NeuronSymmetry`'s balancing
# of several layers of rescaled units, the only iterative `orbit_min_norm` / `canonicalize`).
UNCONVERGED_MESSAGE = (
    "balancing the positive rescalings (minimising the parameter norm over them) did not "
    "converge within `max_steps` sweeps; raise `max_steps` or loosen `rtol`/`atol` of "
    "the NeuronSymmetry"
)


def _inexact(tree):
    return eqx.filter(tree, eqx.is_inexact_array)


class AbstractSymmetry(eqx.Module):
    r"""A group `G` of parameter transformations that leave the network's function unchanged.

    Every method is a pure function of the parameter pytree `params` (a plain pytree or an equinox
    model), jittable with `eqx.filter_jit`, except `align`, which runs the linear assignment solver
    on the host.

    Subclasses implement:

    - `act(params, g)`: `g . theta`;
    - `identity(params)`: the group's unit `e` (shapes depend on `params`);
    - `random_element(key, params)`: a random `g` (continuous parts near `e`), for tests;
    - `algebra_zero(params)`: the zero of the Lie algebra (a pytree; empty arrays for
      discrete groups);
    - `chart(params, xi)`: a group element `g(xi)` with `g(0) = e`, differentiable in `xi`;
    - `invariants(params)`: a pytree `I` with `I(g . theta) = I(theta)`;
    - `canonicalize(params)`: a representative of the orbit, constant on orbits and idempotent;
    - `orbit_min_norm(params)`: `min_g |g . theta|^2` (an infimum where it is not attained);
    - `charges(params)`: the Noether charges, constant along gradient flow of any invariant loss;
    - `align(reference, params)`: representatives `(r', p')` of the two orbits, `p'` moved along its
      orbit to be close to `r'`.

    A subclass whose `orbit_min_norm` iterates overrides `orbit_min_norm_result` too, which returns
    the convergence as a value (raised after a compiled program by `check_converged`).
    """

    @abc.abstractmethod
    def act(self, params, g):
        """`g . theta`."""

    @abc.abstractmethod
    def identity(self, params):
        """The unit element `e`, `e . theta = theta`."""

    @abc.abstractmethod
    def random_element(self, key, params):
        """A random group element (continuous parts near the identity)."""

    @abc.abstractmethod
    def algebra_zero(self, params):
        """The zero of the Lie algebra of the group's continuous part."""

    @abc.abstractmethod
    def chart(self, params, xi):
        """A group element `g(xi)` with `g(0) = e`, smooth in the Lie algebra element `xi`."""

    @abc.abstractmethod
    def invariants(self, params):
        """A pytree of functions of `theta` constant on orbits."""

    @abc.abstractmethod
    def canonicalize(self, params):
        """A representative of the orbit of `theta`, the same for every point of the orbit."""

    @abc.abstractmethod
    def orbit_min_norm(self, params):
        """`min_{g in G} |g . theta|^2`, the squared norm of all inexact leaves."""

    @abc.abstractmethod
    def charges(self, params):
        """The conserved quantities of gradient flow associated with the continuous part."""

    @abc.abstractmethod
    def align(self, reference, params):
        """Representatives `(reference', params')` of both orbits, `params'` matched to
        `reference'`."""

    def orbit_min_norm_result(self, params):
        r"""`(min_g |g . theta|^2, converged)`: `orbit_min_norm` with the success of its
        iterative part returned as a boolean scalar instead of raised (`False`: it stopped
        before its tolerance, and the value is not the minimum). A program that computes it
        has no host callback (JAX's persistent compilation cache cannot store one); read the
        flag after it with `check_converged`. Default: `orbit_min_norm` and `True` (closed
        forms, nothing to converge)."""
        return self.orbit_min_norm(params), jnp.array(True)

    def check_converged(self, value, converged):
        r"""`value`, after raising where `converged` (from `orbit_min_norm_result`, any shape) is
        `False`: `eqx.EquinoxRuntimeError` with the library's message on the host when the flag
        is concrete, `eqx.error_if` in the program when it is traced."""
        # (The negation on the host for a concrete flag: eagerly, `~` would compile a program.)
        failed = ~np.asarray(converged) if is_concrete(converged) else ~converged
        return raise_if(value, failed, UNCONVERGED_MESSAGE)

    def orbit_directions(self, params):
        r"""The vertical directions `v_a = d/ds (g(s e_a) . theta)|_{s=0}`, one per Lie algebra
        basis vector `e_a` of the chart.

        **Arguments:** `params`: the parameters `theta`.

        **Returns:** the inexact leaves of `params` (other leaves `None`), each with a leading axis
        of length `k` (the dimension of the group's continuous part; `0` for a discrete group).
        """
        flat, unravel = ravel_pytree(self.algebra_zero(params))

        def moved(x):
            return _inexact(self.act(params, self.chart(params, unravel(x))))

        jac = jax.jacfwd(moved)(flat)
        return jtu.tree_map(lambda leaf: jnp.moveaxis(leaf, -1, 0), jac)

    def horizontal(
        self, params, grad, solver: lx.AbstractLinearSolver = lx.SVD(), *, throw: bool = True
    ):
        r"""The horizontal part `h = grad - V c` of a gradient, `c = argmin_c |V c - grad|^2`.

        `V c` is the JVP of the action along the Lie algebra element `c`, so `V` is a matrix-free
        `lineax.FunctionLinearOperator`; `lx.SVD()` materialises it (exact, minimum-norm `c` when
        the directions are dependent), `lx.LSMR(rtol, atol)` keeps it matrix-free for large models.

        **Arguments:** `params`: `theta`; `grad`: a gradient with the same structure (for example
        from `eqx.filter_grad`); `solver`: the least squares solver; `throw`: raise when the
        solver fails (with `False`, its last iterate is used and `horizontal_result` says so).

        **Returns:** `h`, with the inexact leaves of `grad`; `<h, v_a> = 0` for every orbit
        direction.
        """
        return self.horizontal_result(params, grad, solver, throw=throw)[0]

    def horizontal_result(
        self, params, grad, solver: lx.AbstractLinearSolver = lx.SVD(), *, throw: bool = True
    ):
        r"""`(h, result)`: `horizontal` and the least squares solve's `lineax.RESULTS` (a
        training monitor passes `throw=False` and records whether the solve converged)."""
        grad = _inexact(grad)
        flat, unravel = ravel_pytree(self.algebra_zero(params))
        if flat.size == 0:
            return grad, lx.RESULTS.successful

        def vertical(x):
            _, tangent = jax.jvp(
                lambda y: _inexact(self.act(params, self.chart(params, unravel(y)))), (flat,), (x,)
            )
            return tangent

        op = lx.FunctionLinearOperator(vertical, jax.eval_shape(lambda: flat))
        sol = lx.linear_solve(op, grad, solver=solver, throw=throw)
        return jtu.tree_map(lambda a, b: a - b, grad, op.mv(sol.value)), sol.result


class ProductSymmetry(AbstractSymmetry):
    r"""The product `G_1 x ... x G_m` of symmetries,
    `(g_1, .., g_m) . theta = g_1 . (... (g_m . theta))`.

    Intended for factors that commute (they act on different parameters, or one of them is a
    permutation or a scaling that the other's canonical form is equivariant to). Canonicalisation
    applies the factors' canonical forms in order, so list continuous factors before discrete ones:
    `c(theta) = c_m(... c_1(theta))` is constant on orbits when each `c_i` is invariant under `G_i`
    and equivariant under the later factors. The invariants are the canonical representative (a
    complete invariant); the orbit-minimal norm adds the factors' reductions
    `min |g . theta|^2 = |theta|^2 + sum_i (min_{G_i} |g_i . theta|^2 - |theta|^2)`, exact when the
    non-isometric factors act on disjoint parameters (permutations and sign flips are isometries).

    **Arguments:** `factors`: a tuple of symmetries.
    """

    factors: tuple[AbstractSymmetry, ...]

    def __check_init__(self):
        if len(self.factors) == 0:
            raise ValueError("a product of symmetries needs at least one factor")

    def act(self, params, g):
        for factor, gi in reversed(list(zip(self.factors, g))):
            params = factor.act(params, gi)
        return params

    def identity(self, params):
        return tuple(f.identity(params) for f in self.factors)

    def random_element(self, key, params):
        keys = jax.random.split(key, len(self.factors))
        return tuple(f.random_element(k, params) for f, k in zip(self.factors, keys))

    def algebra_zero(self, params):
        return tuple(f.algebra_zero(params) for f in self.factors)

    def chart(self, params, xi):
        return tuple(f.chart(params, x) for f, x in zip(self.factors, xi))

    def invariants(self, params):
        return _inexact(self.canonicalize(params))

    def canonicalize(self, params):
        for factor in self.factors:
            params = factor.canonicalize(params)
        return params

    def orbit_min_norm(self, params):
        base = sqnorm(params)
        return base + sum(f.orbit_min_norm(params) - base for f in self.factors)

    def orbit_min_norm_result(self, params):
        base = sqnorm(params)
        value, converged = base, jnp.array(True)
        for f in self.factors:
            v, c = f.orbit_min_norm_result(params)
            value, converged = value + v - base, converged & c
        return value, converged

    def charges(self, params):
        return tuple(f.charges(params) for f in self.factors)

    def align(self, reference, params):
        for factor in self.factors:
            reference, params = factor.align(reference, params)
        return reference, params
