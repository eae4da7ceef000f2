"""Lanczos for the extreme eigenvalues of a symmetric operator, matrix-free and in bounded memory.

For a symmetric `B` (given by its products) and a start vector `q_1`, the three-term recurrence

    beta_{j+1} q_{j+1} = B q_j - alpha_j q_j - beta_j q_{j-1},     alpha_j = <q_j, B q_j>,

builds the tridiagonal `T_j = tridiag(beta, alpha, beta)` of `B` on the Krylov space
`K_j(B, q_1)`. Its eigenvalues (Ritz values) `theta_1 <= ... <= theta_j` lie in
`[lambda_min(B), lambda_max(B)]` (Cauchy interlacing), so `theta_1` is an upper bound on
`lambda_min(B)` and `theta_j` a lower bound on `lambda_max(B)`; the extremes converge first
(Kaniel-Paige). The residual of the Ritz pair `(theta_i, Q_j s_i)` is
`|B Q_j s_i - theta_i Q_j s_i| = beta_{j+1} |e_j^T s_i|`, and for a symmetric `B` some eigenvalue
lies within it of `theta_i` (and within `residual^2 / gap` when the others are `gap` away).

No reorthogonalisation: three vectors are kept, whatever the number of steps. In floating point
the `q_j` lose orthogonality exactly as Ritz values converge (Paige, 1976); the effect is that a
converged Ritz value reappears as a copy, which leaves the extremes and their residuals valid.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax.lax as lax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int


# Lanczos steps between two convergence checks (each an eigendecomposition of the tridiagonal
# matrix, which costs more than a step at small sizes).
_CHECK_EVERY = 8


class Extremes(eqx.Module):
    """The extreme Ritz values of a symmetric operator and their residuals.

    - `smallest`, `largest`: `theta_1 >= lambda_min(B)` and `theta_j <= lambda_max(B)`.
    - `smallest_residual`, `largest_residual`: `r = beta_{j+1} |e_j^T s|` of each.
    - `smallest_error`, `largest_error`: `min(r, r^2 / gap)`, `gap` to the next Ritz value: the
      a-posteriori error bound of a symmetric eigenproblem when `gap` is the distance to the
      rest of the spectrum (an estimate otherwise, as every Lanczos stopping rule).
    - `converged`: every requested end has its error below `rtol * max |theta|`, or the Krylov
      space became invariant (then the Ritz values are eigenvalues).
    - `num_products`: products with `B` used.
    """

    smallest: Float[Array, ""]
    smallest_residual: Float[Array, ""]
    smallest_error: Float[Array, ""]
    largest: Float[Array, ""]
    largest_residual: Float[Array, ""]
    largest_error: Float[Array, ""]
    converged: Array
    num_products: Int[Array, ""]


def lanczos_extremes(
    matvec: Callable[[Float[Array, " N"]], Float[Array, " N"]],
    v0: Float[Array, " N"],
    *,
    max_steps: int,
    rtol: float,
    smallest: bool = True,
    largest: bool = True,
) -> Extremes:
    """Extreme eigenvalues of the symmetric operator `matvec` by at most `max_steps` Lanczos steps
    from `v0` (see the module docstring); stops early when the ends asked for (`smallest`,
    `largest`) have converged (error estimate `min(r, r^2 / gap) <= rtol * max |theta|`).

    **Arguments:**

    - `matvec`: `x -> B x` for a real symmetric `B`, on flat real vectors.
    - `v0`: the start vector (nonzero; a random one reaches every eigenvector almost surely).
    - `max_steps`: bound on the products with `B` (capped at the dimension).
    - `rtol`: relative error estimate at which an end counts as converged.

    **Returns:** an `Extremes`.
    """
    dtype = v0.dtype
    k = max(1, min(int(max_steps), v0.size))
    idx = jnp.arange(k)
    hi = lax.Precision.HIGHEST  # inner products in full precision (not TF32 on GPUs)
    tiny = 100 * jnp.finfo(dtype).eps

    def ritz(alphas, betas, j, beta_next):
        """The extreme Ritz values of `T_{j+1}` (rows and columns `0..j`), their residuals and
        error estimates `min(r, r^2 / gap)` (`gap` to the next Ritz value). The padding (diagonal
        `alphas[0]`, no coupling) gives eigenvectors outside the active block: masked out."""
        active = idx <= j
        diag = jnp.where(active, alphas, alphas[0])
        off = jnp.where(idx[:-1] < j, betas[:-1], 0)
        T = jnp.diag(diag) + jnp.diag(off, 1) + jnp.diag(off, -1)
        theta, S = jnp.linalg.eigh(T)
        real = jnp.sum(jnp.where(active[:, None], S**2, 0), axis=0) > 0.5
        resid = beta_next * jnp.abs(S[j])
        # Ritz values of the active block in ascending order, padding pushed to the far end.
        big = jnp.asarray(jnp.inf, dtype)
        up = jnp.sort(jnp.where(real, theta, big))
        down = -jnp.sort(jnp.where(real, -theta, big))
        i_min = jnp.argmin(jnp.where(real, theta, big))
        i_max = jnp.argmax(jnp.where(real, theta, -big))
        r_min, r_max = resid[i_min], resid[i_max]
        gap_min = jnp.where(j > 0, up[jnp.minimum(1, k - 1)] - up[0], 0)
        gap_max = jnp.where(j > 0, down[0] - down[jnp.minimum(1, k - 1)], 0)

        def error(r, gap):
            return jnp.minimum(r, r**2 / jnp.where(gap > 0, gap, 1) + jnp.where(gap > 0, 0, r))

        return (
            theta[i_min],
            r_min,
            error(r_min, gap_min),
            theta[i_max],
            r_max,
            error(r_max, gap_max),
        )

    def cond(carry):
        j, *_, done = carry
        return (j < k) & ~done

    def converged(ext, norm):
        t_min, _, e_min, t_max, _, e_max = ext
        scale = jnp.maximum(jnp.maximum(jnp.abs(t_min), jnp.abs(t_max)), tiny * norm)
        ok = jnp.array(True)
        if smallest:
            ok = ok & (e_min <= rtol * scale)
        if largest:
            ok = ok & (e_max <= rtol * scale)
        return ok

    def body(carry):
        j, q_prev, q, beta, alphas, betas, norm, ext, _ = carry
        w = matvec(q)
        alpha = jnp.dot(q, w, precision=hi)
        w = w - alpha * q - beta * q_prev
        # One local reorthogonalisation against q_j (cheap; keeps alpha_j accurate to rounding).
        w = w - jnp.dot(q, w, precision=hi) * q
        beta_next = jnp.linalg.norm(w)
        alphas = alphas.at[j].set(alpha)
        betas = betas.at[j].set(beta_next)
        norm = jnp.maximum(norm, jnp.abs(alpha) + beta + beta_next)  # <= 3 |B|, >= |T row j|
        # Invariant Krylov space: the Ritz values are eigenvalues of B.
        breakdown = beta_next <= tiny * norm
        # The Ritz values (a small eigh) every `check` steps, at a breakdown and at the end.
        check = breakdown | ((j + 1) % _CHECK_EVERY == 0) | (j + 1 == k)
        ext = lax.cond(check, lambda: jnp.stack(ritz(alphas, betas, j, beta_next)), lambda: ext)
        done = (check & converged(ext, norm)) | breakdown
        q_next = w / jnp.where(breakdown, 1, beta_next)
        return j + 1, q, q_next, beta_next, alphas, betas, norm, ext, done

    q0 = v0 / jnp.linalg.norm(v0)
    zero = jnp.zeros((), dtype)
    init = (
        jnp.asarray(0),
        jnp.zeros_like(q0),
        q0,
        zero,
        jnp.zeros(k, dtype),
        jnp.zeros(k, dtype),
        zero,
        jnp.zeros(6, dtype),
        jnp.array(False),
    )
    j, *_, ext, done = lax.while_loop(cond, body, init)
    return Extremes(
        smallest=ext[0],
        smallest_residual=ext[1],
        smallest_error=ext[2],
        largest=ext[3],
        largest_residual=ext[4],
        largest_error=ext[5],
        converged=done,
        num_products=j,
    )
