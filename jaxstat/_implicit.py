r"""The implicit adjoint of a root find, with its failure check on a scalar.

For a root `y(theta)` of `f(y, theta) = 0`, the implicit function theorem gives the tangent

    dy = -(df/dy)^{-1} (df/dtheta) dtheta,

one linear solve with the Jacobian `df/dy` at the root per forward-mode tangent (one transposed
solve per reverse-mode cotangent: `lax.custom_linear_solve` with the transposed solve spelled
out). This is
`optimistix.ImplicitAdjoint` except for one thing: a failed linear solve (not converged,
singular, non-finite) raises through `eqx.error_if` on a *scalar* that is then added (it is zero)
to the tangent, instead of on the tangent itself. `eqx.error_if` calls back to Python, XLA places
the callback on one device, and the partitioner replicates whatever the check guards: guarding
the whole tangent would gather the gradient of a solve split over devices onto every device
(lineax's own check does that: JAX's transposition of `lx.linear_solve` checks the transposed
solve with `throw=True` unconditionally). The error and its message are
the same; with `EQX_ON_ERROR=nan` a failed solve gives a NaN gradient.
"""

import functools as ft

import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.lax as lax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
import optimistix as optx


class ImplicitAdjoint(optx.AbstractAdjoint):
    """Backpropagate through a root find by the implicit function theorem (see the module
    docstring), checking the linear solve on a scalar so that a split gradient stays split.

    **Fields:** `linear_solver`, the lineax solver of `(df/dy) dy = -(df/dtheta) dtheta`.
    """

    linear_solver: lx.AbstractLinearSolver = lx.AutoLinearSolver(well_posed=None)

    def apply(self, primal_fn, rewrite_fn, inputs, tags):
        inputs = inputs + (ft.partial(eqxi.while_loop, kind="lax"),)
        root, residual = _implicit(primal_fn, rewrite_fn, inputs, tags, self.linear_solver)
        return root, jtu.tree_map(eqxi.nondifferentiable_backward, residual)


@eqx.filter_custom_jvp
def _implicit(fn_primal, fn_rewrite, inputs, tags, linear_solver):
    del fn_rewrite, tags, linear_solver
    return jtu.tree_map(jnp.asarray, fn_primal(inputs))


def _for_jacobian(root, args):
    fn_rewrite, residual, inputs = args
    return fn_rewrite(root, residual, inputs)


@_implicit.def_jvp
def _implicit_jvp(primals, tangents):
    fn_primal, fn_rewrite, inputs, tags, linear_solver = primals
    t_inputs = tangents[2]
    no_tangent = jtu.tree_map(lambda t: t is None, t_inputs, is_leaf=lambda t: t is None)
    nondiff, diff = eqx.partition(inputs, no_tangent, is_leaf=lambda t: t is None)
    root, residual = _implicit(fn_primal, fn_rewrite, inputs, tags, linear_solver)
    residual = jtu.tree_map(eqxi.nondifferentiable_backward, residual)

    def rewrite(diff):
        return fn_rewrite(root, residual, eqx.combine(diff, nondiff))

    operator = lx.JacobianLinearOperator(
        _for_jacobian, root, (fn_rewrite, residual, inputs), tags=tags
    )
    _, jvp_diff = jax.jvp(rewrite, (diff,), (t_inputs,))
    # `lax.custom_linear_solve` with both solves spelled out, rather than `lx.linear_solve`
    # transposed by JAX: lineax's transposition rule checks the transposed solve on its
    # solution (`throw=True`, unconditionally), which would replicate a split gradient.
    solve = ft.partial(_checked_solve, operator, linear_solver)
    transpose_solve = ft.partial(_checked_solve, operator.transpose(), linear_solver)
    t_root = lax.custom_linear_solve(
        operator.mv, jvp_diff, lambda _, b: solve(b), lambda _, b: transpose_solve(b)
    )
    t_root = jtu.tree_map(jnp.negative, t_root)
    t_residual = jax.custom_derivatives.zero_from_primal(residual, symbolic_zeros=True)
    return (root, residual), (t_root, t_residual)


def _checked_solve(operator, linear_solver, vector):
    """`operator^{-1} vector`; a failed solve raises through a scalar guard added to the result."""
    sol = lx.linear_solve(operator, vector, linear_solver, throw=False)
    leaves = jtu.tree_leaves(sol.value)
    token = sol.result.error_if(
        jnp.zeros((), jnp.result_type(*leaves)), sol.result != lx.RESULTS.successful
    )
    return jtu.tree_map(lambda x: x + token.astype(x.dtype), sol.value)
