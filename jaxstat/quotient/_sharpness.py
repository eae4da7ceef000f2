r"""Sharpness: the top Hessian eigenvalue of a loss by Lanczos on Hessian-vector products.

`lambda_max(H)`, `H = grad^2 L(theta)`, is found matrix-free from products
`H v = d/de grad L(theta + e v)|_{e=0}` (`jax.jvp` of `jax.grad`, forward over reverse). Lanczos
(`jaxstat._lanczos`) builds an orthonormal basis `q_0, ..., q_{m-1}` of the Krylov space
`span{v, H v, ..., H^{m-1} v}`,

    beta_{j+1} q_{j+1} = H q_j - alpha_j q_j - beta_j q_{j-1},      alpha_j = q_j . H q_j,

re-orthogonalised in full against all previous `q` (`FullReorthogonalisation`: classical
Gram-Schmidt applied twice; `m` is small, and it keeps the Ritz values free of spurious copies),
and returns the largest eigenvalue of the tridiagonal `T = tridiag(beta, alpha, beta)` with its
Ritz vector `Q y`. The Ritz value converges to `lambda_max` from below, geometrically with a rate
set by the gap to the next eigenvalue; the returned residual `r = |H v - lambda v|` (one more
product) bounds the error of the symmetric eigenvalue problem: some eigenvalue of `H` lies within
`r` of `lambda`. If the Krylov space becomes invariant (`beta_j = 0`, e.g. a warm start at an
eigenvector), the recurrence stops there and the Ritz values of the steps done are exact.
"""

import equinox as eqx
import jax
import jax.flatten_util as jfu
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from .._lanczos import FullReorthogonalisation, lanczos, ritz
from .._numerics import full_precision_dot


class Sharpness(eqx.Module):
    """The top Hessian eigenvalue estimate.

    **Fields:** `value` (the largest Ritz value), `vector` (its unit Ritz vector, a pytree shaped
    like the parameters: pass it as `init` to warm-start the next call), `residual`
    (`|H v - value v|`, a bound on the distance from `value` to the spectrum).
    """

    value: Float[Array, ""]
    vector: PyTree
    residual: Float[Array, ""]


@eqx.filter_jit
def sharpness(
    loss,
    params: PyTree[Float[Array, "..."]],
    *,
    num_iterations: int = 20,
    init: PyTree[Float[Array, "..."]] | None = None,
    key: PRNGKeyArray | None = None,
) -> Sharpness:
    r"""The top eigenvalue of the Hessian of `loss` at `params`, by `num_iterations` Lanczos steps.

    See the module docstring for the recurrence. The cost is `num_iterations + 1`
    Hessian-vector products (each about two gradient evaluations) and `O(m n)` memory for the
    basis. Jittable; `vmap` over `params` gives a batch of estimates; not reverse-differentiable
    (the recurrence is a `lax.while_loop`).

    **Arguments:**

    - `loss`: a scalar function of a pytree shaped like `params` (close over a batch).
    - `params`: the parameters (a pytree of floating arrays).
    - `num_iterations`: `m`, Lanczos steps (static; at most the number of parameters, fewer are
        used when `params` has fewer entries).
    - `init`: the starting vector (a pytree like `params`, e.g. the previous call's `vector`).
    - `key`: for a random start when `init` is not given (default `jax.random.key(0)`).

    **Returns:**

    A `Sharpness` with `value`, `vector` and `residual`.

    **Example:**

    ```python
    import jax.numpy as jnp
    import jax.random as jr
    from jaxstat.quotient import sharpness

    x, y = jr.normal(jr.key(0), (64, 3)), jr.normal(jr.key(1), (64,))
    batch = (x, y)

    def loss(params, batch):
        x, y = batch
        return jnp.mean((x @ params["w"] - y) ** 2)

    params = {"w": jnp.zeros(3)}
    out = sharpness(lambda p: loss(p, batch), params, num_iterations=20)  # 2 |x|^2 / 64 top
    new_params = {"w": params["w"] + 0.1}
    out = sharpness(lambda p: loss(p, batch), new_params, num_iterations=5, init=out.vector)
    ```
    """
    if not isinstance(num_iterations, int) or num_iterations < 1:
        raise ValueError(f"`num_iterations` must be a positive int, got {num_iterations!r}.")
    x, unravel = jfu.ravel_pytree(params)
    if x.size == 0:
        raise ValueError("`params` has no entries.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"`params` must be floating point, got {x.dtype}.")
    n, dtype = x.size, x.dtype
    m = min(num_iterations, n)
    grad = jax.grad(lambda y: loss(unravel(y)))

    def hvp(v):
        return jax.jvp(grad, (x,), (v,))[1]

    if init is None:
        v0 = jr.normal(jr.key(0) if key is None else key, (n,), dtype)
    else:
        v0, _ = jfu.ravel_pytree(init)
        if v0.shape != x.shape:
            raise ValueError(f"`init` has {v0.size} entries, `params` has {n}.")
        v0 = v0.astype(dtype)
    norm0 = jnp.linalg.norm(v0)
    v0 = eqx.error_if(
        v0, ~(norm0 > 0) | ~jnp.isfinite(norm0), "`init` must be a non-zero finite vector."
    )
    T, Q = lanczos(hvp, v0 / norm0, max_steps=m, orthogonalisation=FullReorthogonalisation())
    pairs = ritz(T)
    value = pairs.values[-1]
    v = full_precision_dot(pairs.vectors[:, -1], Q)
    v = v / jnp.linalg.norm(v)
    residual = jnp.linalg.norm(hvp(v) - value * v)
    value = eqx.error_if(
        value,
        ~jnp.isfinite(value) | ~jnp.isfinite(residual),
        "the Hessian-vector products of `loss` are not finite at `params`.",
    )
    return Sharpness(value=value, vector=unravel(v), residual=residual)
