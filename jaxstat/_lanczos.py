"""Lanczos for a symmetric operator, matrix-free: the one copy of the recurrence and of the Ritz
extraction, used by the stability certificates (`AutoStability`, bounded memory) and by
`jaxstat.quotient.sharpness` (full reorthogonalisation, Ritz vectors for warm starts).

For a symmetric `B` (given by its products) and a unit start vector `q_0`, the three-term
recurrence

    beta_{j+1} q_{j+1} = B q_j - alpha_j q_j - beta_j q_{j-1},     alpha_j = <q_j, B q_j>,

builds the tridiagonal `T_m = tridiag(beta, alpha, beta)` (`m` steps) of `B` on the Krylov space
`K_m(B, q_0)`. Its eigenpairs `(theta_i, s_i)` give the Ritz pairs `(theta_i, Q_m s_i)`, with
`theta_1 <= ... <= theta_m` in `[lambda_min(B), lambda_max(B)]` (Cauchy interlacing), so
`theta_1` is an upper bound on `lambda_min(B)` and `theta_m` a lower bound on `lambda_max(B)`;
the extremes converge first (Kaniel-Paige). The residual of a Ritz pair is
`|B Q_m s_i - theta_i Q_m s_i| = beta_m |e_m^T s_i|`, and for a symmetric `B` some eigenvalue lies
within it of `theta_i` (and within `residual^2 / gap` when the others are `gap` away). When
`beta_{j+1}` vanishes (to rounding) the Krylov space is invariant, the Ritz values are
eigenvalues of `B`, and the recurrence stops.

Each step also subtracts `<q_j, w> q_j` once more (local reorthogonalisation: keeps `alpha_j`
accurate to rounding). Beyond that, the reorthogonalisation is a strategy:

- `LocalOrthogonalisation` (default): nothing more; three vectors are kept whatever the number of
  steps. In floating point the `q_j` lose orthogonality exactly as Ritz values converge
  (Paige, 1976); a converged Ritz value then reappears as a copy, which leaves the extremes and
  their residuals valid. No Ritz vectors (the basis is not kept).
- `FullReorthogonalisation`: the basis `Q` (`m` vectors) is kept and each new vector is
  orthogonalised against all of it (classical Gram-Schmidt, twice): no spurious copies, and Ritz
  vectors `Q s_i`; memory `O(m N)`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
import jax.lax as lax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PyTree

from ._numerics import full_precision_dot as _dot


# Lanczos steps between two convergence checks (each an eigendecomposition of the tridiagonal
# matrix, which costs more than a step at small sizes).
_CHECK_EVERY = 8


class AbstractOrthogonalisation(eqx.Module):
    """How a new Lanczos vector is orthogonalised beyond the three-term recurrence, and which
    vectors are kept for it (the state)."""

    @abc.abstractmethod
    def init(self, q0: Float[Array, " N"], num_steps: int) -> PyTree:
        """The state after the first vector `q0`, for at most `num_steps` steps."""

    @abc.abstractmethod
    def orthogonalise(self, state: PyTree, w: Float[Array, " N"]) -> Float[Array, " N"]:
        """`w` made orthogonal to the kept vectors."""

    @abc.abstractmethod
    def append(self, state: PyTree, j: Int[Array, ""], q: Float[Array, " N"]) -> PyTree:
        """The state with `q` kept as the `j`-th vector (`j < num_steps`; dropped otherwise)."""


class LocalOrthogonalisation(AbstractOrthogonalisation):
    """Only the three-term recurrence (and the local step against `q_j`): bounded memory."""

    def init(self, q0, num_steps):
        return None

    def orthogonalise(self, state, w):
        return w

    def append(self, state, j, q):
        return None


class FullReorthogonalisation(AbstractOrthogonalisation):
    """Keeps the basis `Q` (rows `q_0, ..., q_{m-1}`, zero beyond the steps done) and applies
    `w <- w - Q^T (Q w)` twice (classical Gram-Schmidt twice is as good as modified)."""

    def init(self, q0, num_steps):
        return jnp.zeros((num_steps, q0.size), q0.dtype).at[0].set(q0)

    def orthogonalise(self, state, w):
        w = w - _dot(_dot(state, w), state)
        return w - _dot(_dot(state, w), state)

    def append(self, state, j, q):
        return state.at[j].set(q, mode="drop")


class Tridiagonal(eqx.Module):
    """The Lanczos tridiagonal `T_m` and the state of the recurrence.

    - `alphas`: diagonal; the first `size` entries are set.
    - `betas`: `betas[i]` couples rows `i` and `i + 1`; `betas[size - 1] = beta_m`, the coupling
      to the next (not taken) vector, which gives the Ritz residuals.
    - `size`: `m`, steps done (products with `B`).
    - `norm`: `max_j |alpha_j| + beta_j + beta_{j+1}` (between `|T|` and `3 |B|`).
    - `breakdown`: the Krylov space became invariant (`beta_m <= 100 eps norm`).
    """

    alphas: Float[Array, " k"]
    betas: Float[Array, " k"]
    size: Int[Array, ""]
    norm: Float[Array, ""]
    breakdown: Bool[Array, ""]


class RitzPairs(eqx.Module):
    """The eigenpairs of the active block `T_m` of a `Tridiagonal` (padded to its full size `k`).

    - `values`: ascending; the first `k - m` are padding, strictly below every Ritz value (so
      `values[k - m]` is `theta_1` and `values[-1]` is `theta_m`).
    - `vectors`: columns `s_i` (coordinates in the Lanczos basis; zero beyond row `m`).
    - `residuals`: `beta_m |e_m^T s_i|`.
    - `active`: which columns are Ritz pairs (not padding).
    """

    values: Float[Array, " k"]
    vectors: Float[Array, "k k"]
    residuals: Float[Array, " k"]
    active: Bool[Array, " k"]


def ritz(T: Tridiagonal) -> RitzPairs:
    """The Ritz pairs of `T_m`. The padding rows (beyond `m`) are decoupled and placed on the
    diagonal below the Gershgorin interval of `T_m` (`>= min alpha - 2 max beta`), so their
    eigenvalues are distinct from every Ritz value and their eigenvectors unit vectors outside the
    active block: the Ritz values are the top `m` eigenvalues of the padded matrix."""
    k = T.alphas.size
    idx = jnp.arange(k)
    active_row = idx < T.size
    spread = 2 * jnp.max(jnp.where(active_row, T.betas, 0))
    a = jnp.where(active_row, T.alphas, T.alphas[0])
    lo, hi = jnp.min(a) - spread, jnp.max(a) + spread
    low = lo - (hi - lo) - jnp.abs(lo) - 1
    diag = jnp.where(active_row, T.alphas, low)
    off = jnp.where(idx[:-1] < T.size - 1, T.betas[:-1], 0)
    theta, S = jnp.linalg.eigh(jnp.diag(diag) + jnp.diag(off, 1) + jnp.diag(off, -1))
    last = jnp.maximum(T.size - 1, 0)
    residuals = T.betas[last] * jnp.abs(S[last])
    return RitzPairs(values=theta, vectors=S, residuals=residuals, active=idx >= k - T.size)


def lanczos(
    matvec: Callable[[Float[Array, " N"]], Float[Array, " N"]],
    v0: Float[Array, " N"],
    *,
    max_steps: int,
    orthogonalisation: AbstractOrthogonalisation = LocalOrthogonalisation(),
    stop: Callable[[Tridiagonal], Bool[Array, ""]] | None = None,
    check_every: int = _CHECK_EVERY,
) -> tuple[Tridiagonal, PyTree]:
    """At most `max_steps` steps of the Lanczos recurrence (module docstring) from `v0` (nonzero).

    Stops at an invariant Krylov space (breakdown) or when `stop(T)` holds; `stop` is evaluated
    every `check_every` steps and at a breakdown (it typically computes `ritz(T)`, which costs
    more than a step at small sizes). Reverse-mode differentiation is not supported (a
    `lax.while_loop`); `vmap` runs until every batch element has stopped.

    **Returns:** the `Tridiagonal` and the final state of `orthogonalisation` (the basis `Q` for
    `FullReorthogonalisation`, `None` for the default).
    """
    dtype = v0.dtype
    k = max(1, min(int(max_steps), v0.size))
    tiny = 100 * jnp.finfo(dtype).eps
    q0 = v0 / jnp.linalg.norm(v0)
    zero = jnp.zeros((), dtype)

    def cond(carry):
        j, *_, done = carry
        return (j < k) & ~done

    def body(carry):
        j, q_prev, q, beta, alphas, betas, norm, state, _, _ = carry
        w = matvec(q)
        alpha = _dot(q, w)
        w = w - alpha * q - beta * q_prev
        w = w - _dot(q, w) * q  # local reorthogonalisation: alpha_j accurate to rounding
        w = orthogonalisation.orthogonalise(state, w)
        beta_next = jnp.linalg.norm(w)
        alphas = alphas.at[j].set(alpha)
        betas = betas.at[j].set(beta_next)
        norm = jnp.maximum(norm, jnp.abs(alpha) + beta + beta_next)  # <= 3 |B|, >= |T row j|
        breakdown = beta_next <= tiny * norm  # invariant Krylov space: Ritz values exact
        done = breakdown
        if stop is not None:
            T = Tridiagonal(alphas, betas, j + 1, norm, breakdown)
            check = breakdown | ((j + 1) % check_every == 0)
            done = done | lax.cond(check, lambda: stop(T), lambda: jnp.array(False))
        q_next = w / jnp.where(breakdown, 1, beta_next)
        state = orthogonalisation.append(state, j + 1, q_next)
        return j + 1, q, q_next, beta_next, alphas, betas, norm, state, breakdown, done

    init = (
        jnp.asarray(0),
        jnp.zeros_like(q0),
        q0,
        zero,
        jnp.zeros(k, dtype),
        jnp.zeros(k, dtype),
        zero,
        orthogonalisation.init(q0, k),
        jnp.array(False),
        jnp.array(False),
    )
    j, _, _, _, alphas, betas, norm, state, breakdown, _ = lax.while_loop(cond, body, init)
    return Tridiagonal(alphas, betas, j, norm, breakdown), state


class Extremes(eqx.Module):
    """The extreme Ritz values of a symmetric operator and their residuals.

    - `smallest`, `largest`: `theta_1 >= lambda_min(B)` and `theta_m <= lambda_max(B)`.
    - `smallest_residual`, `largest_residual`: `r = beta_m |e_m^T s|` of each.
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


def _extremes(T: Tridiagonal) -> Extremes:
    """The extreme Ritz values of `T`, their residuals and error estimates (`converged` left
    `False`)."""
    pairs = ritz(T)
    k = pairs.values.size
    theta, resid = pairs.values, pairs.residuals
    i_min, i_max = k - T.size, k - 1
    second = T.size > 1
    gap_min = jnp.where(second, theta[jnp.minimum(i_min + 1, k - 1)] - theta[i_min], 0)
    gap_max = jnp.where(second, theta[i_max] - theta[jnp.maximum(i_max - 1, 0)], 0)

    def error(r, gap):
        return jnp.minimum(r, r**2 / jnp.where(gap > 0, gap, 1) + jnp.where(gap > 0, 0, r))

    return Extremes(
        smallest=theta[i_min],
        smallest_residual=resid[i_min],
        smallest_error=error(resid[i_min], gap_min),
        largest=theta[i_max],
        largest_residual=resid[i_max],
        largest_error=error(resid[i_max], gap_max),
        converged=jnp.array(False),
        num_products=T.size,
    )


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
    from `v0` (see the module docstring), in bounded memory (`LocalOrthogonalisation`: three
    state-sized vectors); stops early when the ends asked for (`smallest`, `largest`) have
    converged (error estimate `min(r, r^2 / gap) <= rtol * max |theta|`).

    **Arguments:**

    - `matvec`: `x -> B x` for a real symmetric `B`, on flat real vectors.
    - `v0`: the start vector (nonzero; a random one reaches every eigenvector almost surely).
    - `max_steps`: bound on the products with `B` (capped at the dimension).
    - `rtol`: relative error estimate at which an end counts as converged.

    **Returns:** an `Extremes`.
    """
    tiny = 100 * jnp.finfo(v0.dtype).eps

    def converged(ext, norm):
        scale = jnp.maximum(jnp.maximum(jnp.abs(ext.smallest), jnp.abs(ext.largest)), tiny * norm)
        ok = jnp.array(True)
        if smallest:
            ok = ok & (ext.smallest_error <= rtol * scale)
        if largest:
            ok = ok & (ext.largest_error <= rtol * scale)
        return ok

    T, _ = lanczos(matvec, v0, max_steps=max_steps, stop=lambda T: converged(_extremes(T), T.norm))
    ext = _extremes(T)
    return eqx.tree_at(lambda e: e.converged, ext, converged(ext, T.norm) | T.breakdown)
