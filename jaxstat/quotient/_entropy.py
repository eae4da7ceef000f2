r"""Local entropy of a loss by stochastic gradient Langevin dynamics, in any dimension.

The local entropy of a loss `f` at scope `gamma` and inverse temperature `beta` is

    F(x; gamma) = -1/beta log int exp(-beta f(x') - beta gamma/2 |x - x'|^2) dx',

with gradient `grad F(x) = gamma (x - <x'>)`, `<.>` the mean under the Gibbs measure
`rho(x') ∝ exp(-beta U(x'))`, `U(x') = f(x') + gamma/2 |x - x'|^2`. The mean is estimated by
Langevin chains started at `x` (as in Entropy-SGD),

    x' <- x' - eta grad U(x') + sqrt(2 eta / beta) xi,       xi ~ N(0, I),

whose stationary law is `rho` up to an `O(eta)` discretisation bias (`Langevin()`), or exactly
`rho` with a Metropolis-Hastings correction (`MetropolisAdjustedLangevin()`). The standard error
of the mean comes from the spread of the independent chains' time averages (batch means, one
batch per chain): `SE = std(chain means) / sqrt(num_chains)`.

**Link with viscous Hamilton-Jacobi.** With `nu = 1 / (2 beta)` and `t = 1 / gamma`, Cole-Hopf
(`u = -2 nu log phi`, `phi` the heat flow of `exp(-f / (2 nu))`, heat kernel
`(4 pi nu t)^{-d/2} exp(-|x - y|^2 / (4 nu t))`) gives the solution of
`u_t + 1/2 |grad u|^2 = nu Lap u`, `u(., 0) = f`, as

    u(x, t) = F(x; 1/t) + c(t),      c(t) = d / (2 beta) log(2 pi t / beta),

because `(4 pi nu t)^{-d/2} = (2 pi t / beta)^{-d/2}` and `-2 nu log` of it is `c(t)`
(`hj_offset`). So `grad_x u = grad F` obeys viscous Burgers in `t`.

**The value by thermodynamic integration.** Differentiating under the integral,
`dF/dgamma = 1/2 <|x - x'|^2>`, so `u` evolves in `t` as

    du/dt = g(t) = d / (2 beta t) - <|x - x'|^2>_{gamma = 1/t} / (2 t^2),

smooth down to `t = 0` (`g(0) = nu Lap f - 1/2 |grad f|^2`), and
`F(x; gamma) = f(x) + int_0^{1/gamma} g(s) ds - c(1/gamma)`. `local_entropy_value` integrates
`s g(s)` with the trapezoidal rule in `log s` on `num_scopes` geometric nodes from
`t_0 = t * min_scope_ratio` to `t = 1/gamma`, and the head by `int_0^{t_0} g ≈ t_0 g(t_0)`
(error `O(t_0^2 g'(0))`). In `log s` the Monte Carlo error of each node stays bounded as
`s -> 0` (`s g(s)` has variance `O(d / beta^2)` per sample), so no scope dominates the error.
Each node's Langevin step is `step_size * s / t`: the Gibbs measure at scope `1/s` has width
`O(sqrt(s / beta))`, and this keeps the number of steps needed to mix about the same.
"""

import abc
import math

import equinox as eqx
import jax
import jax.flatten_util as jfu
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, PyTree

from .._checks import is_concrete, raise_if
from .._jit import jit


class AbstractLangevinSampler(eqx.Module):
    """A Markov kernel whose (approximate) stationary law is `exp(-beta U)`, from the Langevin
    proposal `y = x - eta grad U(x) + sqrt(2 eta / beta) xi`."""

    @abc.abstractmethod
    def step(self, energy, x, key, eta, beta):
        """One transition: returns `(x_new, accepted)` (`accepted` a 0/1 float)."""


def _proposal(energy, x, key, eta, beta):
    value, grad = jax.value_and_grad(energy)(x)
    noise = jr.normal(key, x.shape, x.dtype)
    return value, grad, x - eta * grad + jnp.sqrt(2 * eta / beta) * noise


class Langevin(AbstractLangevinSampler):
    r"""Unadjusted Langevin (Euler-Maruyama): `x' <- x' - eta grad U(x') + sqrt(2 eta / beta) xi`.

    Its stationary law is `exp(-beta U)` up to an `O(eta)` bias (for a quadratic `U` the mean is
    exact and the variance is `1 / (beta k (1 - eta k / 2))`, `k` the curvature). This is the
    inner loop of Entropy-SGD.
    """

    def step(self, energy, x, key, eta, beta):
        _, _, y = _proposal(energy, x, key, eta, beta)
        return y, jnp.ones((), x.dtype)


class MetropolisAdjustedLangevin(AbstractLangevinSampler):
    r"""Langevin proposal with a Metropolis-Hastings test (MALA): stationary law exactly `rho`.

    Accept `y` with probability `min(1, exp(-beta U(y) + beta U(x) - log q(x | y) + log q(y | x)))`,
    `q(y | x) ∝ exp(-beta |y - x + eta grad U(x)|^2 / (4 eta))`.
    """

    def step(self, energy, x, key, eta, beta):
        key_prop, key_acc = jr.split(key)
        ux, gx, y = _proposal(energy, x, key_prop, eta, beta)
        uy, gy = jax.value_and_grad(energy)(y)
        log_q_forward = -beta * jnp.sum((y - x + eta * gx) ** 2) / (4 * eta)
        log_q_backward = -beta * jnp.sum((x - y + eta * gy) ** 2) / (4 * eta)
        log_ratio = -beta * (uy - ux) + log_q_backward - log_q_forward
        log_ratio = jnp.where(jnp.isfinite(log_ratio), log_ratio, -jnp.inf)
        accept = jnp.log(jr.uniform(key_acc, (), x.dtype)) < log_ratio
        return jnp.where(accept, y, x), accept.astype(x.dtype)


class LocalEntropyGradient(eqx.Module):
    """The Langevin estimate of the Gibbs mean `<x'>` and of `grad F = gamma (x - <x'>)`.

    **Fields:** `mean`, `grad` (pytrees shaped like `x`), `mean_stderr`, `grad_stderr` (their
    Monte Carlo standard errors, per component; `grad_stderr = gamma * mean_stderr`),
    `acceptance` (the Metropolis acceptance rate; 1 for `Langevin()`).
    """

    mean: PyTree
    grad: PyTree
    mean_stderr: PyTree
    grad_stderr: PyTree
    acceptance: Float[Array, ""]


class LocalEntropyValue(eqx.Module):
    """The thermodynamic-integration estimate of `F(x; gamma)` and its Monte Carlo error."""

    value: Float[Array, ""]
    stderr: Float[Array, ""]


def hj_offset(t: Float[ArrayLike, "..."], beta: Float[ArrayLike, "..."], dim: int):
    r"""`c(t) = d / (2 beta) log(2 pi t / beta)`, so that `u(x, t) = F(x; 1/t) + c(t)`.

    `u` is the viscous Hamilton-Jacobi solution `u_t + 1/2 |grad u|^2 = nu Lap u`, `u(., 0) = f`,
    `nu = 1 / (2 beta)` (Cole-Hopf with the normalised heat kernel), `F` the local entropy.

    **Example:** `F = u - hj_offset(t, beta, d)` converts an HJ solution into local entropy.
    """
    t, beta = jnp.asarray(t), jnp.asarray(beta)
    return dim / (2 * beta) * jnp.log(2 * math.pi * t / beta)


def _check_static(num_steps, burn_in, num_chains, sampler):
    if not isinstance(sampler, AbstractLangevinSampler):
        raise TypeError(
            f"`sampler` must be `Langevin()` or `MetropolisAdjustedLangevin()`, got {sampler!r}."
        )
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"`num_steps` must be a positive int, got {num_steps!r}.")
    if not isinstance(burn_in, int) or burn_in < 0:
        raise ValueError(f"`burn_in` must be a non-negative int, got {burn_in!r}.")
    if not isinstance(num_chains, int) or num_chains < 2:
        raise ValueError(
            f"`num_chains` must be an int >= 2 (the standard error needs several chains), got "
            f"{num_chains!r}."
        )


def _flat_point(x):
    flat, unravel = jfu.ravel_pytree(x)
    if flat.size == 0:
        raise ValueError("`x` has no entries.")
    if not jnp.issubdtype(flat.dtype, jnp.floating):
        raise TypeError(f"`x` must be floating point, got {flat.dtype}.")
    return flat, unravel


def _chain_means(loss_flat, x, gamma, beta, eta, key, num_steps, burn_in, num_chains, sampler):
    """Per-chain time averages after burn-in of `x'` and of `|x - x'|^2`, chains started at `x`.

    Returns `(means (C, n), sq (C,), acceptance (C,))`."""

    def energy(y):
        return loss_flat(y) + 0.5 * gamma * jnp.sum((x - y) ** 2)

    def chain(key):
        # Burn-in and averaging in one loop (one copy of the sampler's step to compile), the
        # first `burn_in` steps not counted.
        def step(carry, inputs):
            y, total, total_sq, total_acc = carry
            key, counted = inputs
            y, accepted = sampler.step(energy, y, key, eta, beta)
            total = jnp.where(counted, total + y, total)
            total_sq = jnp.where(counted, total_sq + jnp.sum((x - y) ** 2), total_sq)
            total_acc = jnp.where(counted, total_acc + accepted, total_acc)
            return (y, total, total_sq, total_acc), None

        zero = jnp.zeros((), x.dtype)
        carry = (x, jnp.zeros_like(x), zero, zero)
        counted = jnp.arange(burn_in + num_steps) >= burn_in
        (_, total, total_sq, total_acc), _ = jax.lax.scan(
            step, carry, (jr.split(key, burn_in + num_steps), counted)
        )
        return total / num_steps, total_sq / num_steps, total_acc / num_steps

    return jax.vmap(chain)(jr.split(key, num_chains))


def _not_scalar(name, shape) -> str:
    return f"`{name}` must be a scalar, got shape {shape} (vmap over it instead)."


def _check_values(name, value, dtype, checked=False):
    value = jnp.asarray(value, dtype)
    if value.ndim != 0:
        raise ValueError(_not_scalar(name, value.shape))
    if checked:  # on the host already (`_host_checks`)
        return value
    return eqx.error_if(value, ~(value > 0), f"`{name}` must be positive.")


def _host_checks(x, **scalars) -> bool:
    """The checks of `_check_values` on the host, `ValueError` with the same messages, when `x`
    and the scalars are concrete. Returns whether they ran: the estimator's program then
    compiles without them (no `eqx.error_if` host callback, which JAX's persistent compilation
    cache cannot store)."""
    leaves = jax.tree_util.tree_leaves(x)
    if not leaves or not is_concrete(x, tuple(scalars.values())):
        return False
    dtype = jnp.result_type(*leaves)  # the dtype `ravel_pytree` gives the point
    if not jnp.issubdtype(dtype, jnp.floating):
        return False  # refused with a TypeError when the program is traced
    for name, value in scalars.items():
        value = np.asarray(value, dtype)
        if value.ndim != 0:
            raise ValueError(_not_scalar(name, value.shape))
        if not value > 0:
            raise ValueError(f"`{name}` must be positive.")
    return True


def _prepare(loss, x, gamma, beta, step_size, num_steps, burn_in, num_chains, sampler, checked):
    """The checks and set-up shared by the local-entropy estimators: the static arguments, the
    point flattened (`flat`, `unravel`), the loss on flat vectors, and `gamma`, `beta`,
    `step_size` as positive scalars of the point's dtype (checked in the program unless
    `checked`: on the host already)."""
    _check_static(num_steps, burn_in, num_chains, sampler)
    flat, unravel = _flat_point(x)
    gamma = _check_values("gamma", gamma, flat.dtype, checked)
    beta = _check_values("beta", beta, flat.dtype, checked)
    eta = _check_values("step_size", step_size, flat.dtype, checked)
    return flat, unravel, lambda y: loss(unravel(y)), gamma, beta, eta


def _diverged_message(what) -> str:
    return (
        f"the Langevin chains diverged while estimating {what}: reduce `step_size` (it must be "
        "below 2 / (curvature of the loss + gamma))."
    )


def _diverged(value, what):
    return eqx.error_if(value, ~jnp.all(jnp.isfinite(value)), _diverged_message(what))


def local_entropy_gradient(
    loss,
    x: PyTree[Float[Array, "..."]],
    *,
    gamma: Float[ArrayLike, ""],
    beta: Float[ArrayLike, ""],
    key: PRNGKeyArray,
    step_size: Float[ArrayLike, ""],
    num_steps: int = 1000,
    burn_in: int = 200,
    num_chains: int = 8,
    sampler: AbstractLangevinSampler = Langevin(),
) -> LocalEntropyGradient:
    r"""The gradient of the local entropy, `grad F(x) = gamma (x - <x'>)`, by Langevin chains.

    `<x'>` is the mean under `rho(x') ∝ exp(-beta f(x') - beta gamma/2 |x - x'|^2)`, estimated
    by `num_chains` independent chains started at `x`, each run `burn_in` steps and then averaged
    over `num_steps` steps of `x' <- x' - eta grad U(x') + sqrt(2 eta / beta) xi` (with
    `U(x') = f(x') + gamma/2 |x - x'|^2`, `eta = step_size`; Metropolis-corrected with
    `MetropolisAdjustedLangevin()`).

    Works on any pytree of parameters (flattened with `jax.flatten_util.ravel_pytree`), under
    `jax.jit` and `jax.vmap` over `x`.

    **Arguments:**

    - `loss`: `f`, a function of a pytree shaped like `x` returning a scalar.
    - `x`: the point (a pytree of floating arrays).
    - `gamma`: the scope, `gamma > 0`.
    - `beta`: the inverse temperature, `beta > 0`.
    - `key`: a JAX PRNG key.
    - `step_size`: the Langevin step `eta > 0`, below `2 / (max curvature of f + gamma)`.
    - `num_steps`, `burn_in`: steps averaged, and discarded before averaging, per chain.
    - `num_chains`: independent chains (>= 2); their spread gives the standard error.
    - `sampler`: `Langevin()` (default, `O(eta)` bias) or `MetropolisAdjustedLangevin()` (exact).

    **Returns:**

    A `LocalEntropyGradient` with `mean`, `grad`, `mean_stderr`, `grad_stderr`, `acceptance`.

    **Example:**

    ```python
    import jax.numpy as jnp
    import jax.random as jr
    from jaxstat.quotient import local_entropy_gradient

    f = lambda y: 0.5 * jnp.sum(y**2)
    x = jnp.ones(3)
    est = local_entropy_gradient(f, x, gamma=1.0, beta=10.0, key=jr.key(0), step_size=0.05)
    est.grad  # about gamma a x / (a + gamma) = 0.5
    ```
    """
    checked = _host_checks(x, gamma=gamma, beta=beta, step_size=step_size)
    estimate, diverged = _local_entropy_gradient(
        loss,
        x,
        gamma=gamma,
        beta=beta,
        key=key,
        step_size=step_size,
        num_steps=num_steps,
        burn_in=burn_in,
        num_chains=num_chains,
        sampler=sampler,
        checked=checked,
    )
    return raise_if(estimate, diverged, _diverged_message("the Gibbs mean"))


@jit(arrays=("gamma", "beta", "step_size"))
def _local_entropy_gradient(
    loss, x, *, gamma, beta, key, step_size, num_steps, burn_in, num_chains, sampler, checked
):
    """`local_entropy_gradient` and whether its chains diverged (raised by the caller)."""
    flat, unravel, loss_flat, gamma, beta, eta = _prepare(
        loss, x, gamma, beta, step_size, num_steps, burn_in, num_chains, sampler, checked
    )
    means, _, acceptance = _chain_means(
        loss_flat, flat, gamma, beta, eta, key, num_steps, burn_in, num_chains, sampler
    )
    mean = jnp.mean(means, axis=0)
    stderr = jnp.std(means, axis=0, ddof=1) / math.sqrt(num_chains)
    estimate = LocalEntropyGradient(
        mean=unravel(mean),
        grad=unravel(gamma * (flat - mean)),
        mean_stderr=unravel(stderr),
        grad_stderr=unravel(gamma * stderr),
        acceptance=jnp.mean(acceptance),
    )
    return estimate, ~jnp.all(jnp.isfinite(mean))


@jit(arrays=("gamma", "beta", "step_size"))
def local_entropy_value(
    loss,
    x: PyTree[Float[Array, "..."]],
    *,
    gamma: Float[ArrayLike, ""],
    beta: Float[ArrayLike, ""],
    key: PRNGKeyArray,
    step_size: Float[ArrayLike, ""],
    num_scopes: int = 16,
    min_scope_ratio: float = 1e-3,
    num_steps: int = 1000,
    burn_in: int = 200,
    num_chains: int = 8,
    sampler: AbstractLangevinSampler = MetropolisAdjustedLangevin(),
) -> LocalEntropyValue:
    r"""The local entropy `F(x; gamma)` by thermodynamic integration over the scope.

    `F(x; gamma) = f(x) + int_0^t g(s) ds - c(t)`, `t = 1/gamma`,
    `g(s) = d / (2 beta s) - <|x - x'|^2>_{1/s} / (2 s^2)`, `c(t) = d / (2 beta) log(2 pi t / beta)`
    (see the module docstring): `s g(s)` is integrated by the trapezoidal rule in `log s` on
    `num_scopes` geometric nodes in `[t min_scope_ratio, t]`, the head `[0, t_0]` by `t_0 g(t_0)`.
    Each node runs `num_chains` chains (as in `local_entropy_gradient`) with step
    `step_size * s / t`. The returned standard error is the Monte Carlo one; the deterministic
    errors are the quadrature in `log s` (`O(h^2)`, `h` the log-spacing), the head
    (`O(t_0^2)`), and, with `Langevin()`, the `O(eta)` sampling bias.

    **Arguments:**

    - `loss`, `x`, `gamma`, `beta`, `key`: as in `local_entropy_gradient`.
    - `step_size`: the Langevin step at scope `gamma` (smaller scopes use proportionally smaller).
    - `num_scopes`: nodes of the scope integral (>= 2).
    - `min_scope_ratio`: `t_0 / t`, in `(0, 1)`.
    - `num_steps`, `burn_in`, `num_chains`: per node.
    - `sampler`: `MetropolisAdjustedLangevin()` (default, no sampling bias) or `Langevin()`.

    **Returns:**

    A `LocalEntropyValue` with `value` and `stderr`.

    **Example:**

    ```python
    import jax.numpy as jnp
    import jax.random as jr
    from jaxstat.quotient import local_entropy_value

    f = lambda y: 0.5 * jnp.sum(y**2)  # F = x^2 / 4 + (d / 2 beta) log(2 / gamma) at gamma = 1
    est = local_entropy_value(f, jnp.ones(2), gamma=1.0, beta=5.0, key=jr.key(0), step_size=0.1)
    ```
    """
    if not isinstance(num_scopes, int) or num_scopes < 2:
        raise ValueError(f"`num_scopes` must be an int >= 2, got {num_scopes!r}.")
    if not 0 < min_scope_ratio < 1:
        raise ValueError(f"`min_scope_ratio` must lie in (0, 1), got {min_scope_ratio!r}.")
    flat, unravel, loss_flat, gamma, beta, eta = _prepare(
        loss, x, gamma, beta, step_size, num_steps, burn_in, num_chains, sampler, False
    )
    d = flat.size
    t = 1 / gamma
    log_ratio = jnp.linspace(math.log(min_scope_ratio), 0.0, num_scopes, dtype=flat.dtype)
    s = t * jnp.exp(log_ratio)

    def node(s_j, key_j):
        _, sq, _ = _chain_means(
            loss_flat,
            flat,
            1 / s_j,
            beta,
            eta * s_j / t,
            key_j,
            num_steps,
            burn_in,
            num_chains,
            sampler,
        )
        # s g(s) per chain: d / (2 beta) - <|x - x'|^2> / (2 s).
        return d / (2 * beta) - sq / (2 * s_j)

    sg = jax.vmap(node)(s, jr.split(key, num_scopes))  # (num_scopes, num_chains)
    h = log_ratio[1] - log_ratio[0]
    weights = jnp.full((num_scopes,), h, flat.dtype).at[0].mul(0.5).at[-1].mul(0.5)
    weights = weights.at[0].add(1.0)  # the head t_0 g(t_0) = s_0 g(s_0)
    per_chain = weights @ sg  # (num_chains,): independent estimates of int_0^t g
    integral = _diverged(jnp.mean(per_chain), "the local entropy")
    stderr = jnp.std(per_chain, ddof=1) / math.sqrt(num_chains)
    value = loss_flat(flat) + integral - hj_offset(t, beta, d)
    return LocalEntropyValue(value=value, stderr=stderr)
