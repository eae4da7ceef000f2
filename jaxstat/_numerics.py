"""Numerical conventions shared by the solvers of every subpackage: tolerances by precision,
inexact-Newton forcing terms, non-finite checks and full-precision products."""

import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
from jax import lax
from jaxtyping import Array


def default_tolerance(dtype) -> float:
    """`1e-4` in single precision, `1e-10` in double: `max |F(psi*)|` reachable in that precision
    for graphs of up to millions of nodes (rounding in `H psi` is ~ `eps |H| |psi|`)."""
    return 1e-4 if jnp.finfo(dtype).bits <= 32 else 1e-10


def inner_forcing(dtype) -> tuple[float, float]:
    """Relative tolerances `(newton, adjoint)` of the inner GMRES solves: an inexact-Newton forcing
    term of 1e-3 and an adjoint accuracy of 1e-4 in single precision (restarted GMRES stagnates
    near `eps` times the condition number); 1e-6 and `tol / 10` in double precision. Inexact Newton
    converges for any forcing below 1 (each step gains that factor), so a tight forcing only costs
    GMRES iterations, which grow with the conditioning (large `|psi|^2` terms)."""
    if jnp.finfo(dtype).bits <= 32:
        return 1e-3, 1e-4
    return 1e-6, default_tolerance(dtype) / 10


def real_dtype(*arrays) -> jnp.dtype:
    """The real dtype of the arrays' common dtype (`float32` for `complex64`)."""
    return jnp.finfo(jnp.result_type(*[a.dtype for a in arrays])).dtype


def any_nonfinite(tree) -> Array:
    """`True` if any inexact array leaf of `tree` holds a NaN or an infinity."""
    leaves = [
        jnp.any(~jnp.isfinite(x)) for x in jtu.tree_leaves(eqx.filter(tree, eqx.is_inexact_array))
    ]
    return jnp.any(jnp.stack(leaves)) if leaves else jnp.array(False)


def full_precision_dot(a, b):
    """`a @ b` in full precision: Gram-Schmidt loses orthogonality under the reduced-precision
    (TF32) float32 matmuls that GPUs use by default."""
    return jnp.matmul(a, b, precision=lax.Precision.HIGHEST)
