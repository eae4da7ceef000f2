r"""Entropy-SGD (Chaudhari et al., 2017; Deep Relaxation) as an optax gradient transformation.

Entropy-SGD descends the local entropy `F(x; gamma) = -1/beta log int exp(-beta f(x') -
beta gamma/2 |x - x'|^2) dx'` of the loss `f` instead of `f` itself, with the gradient
`grad F = gamma (x - <x'>)` estimated by a short Langevin loop. At each outer step `k`, with
`x' = mu = x`, `L` inner steps

    x'  <- x' - eta' (grad f(x') - gamma_k (x - x')) + sqrt(eta') eps xi,      xi ~ N(0, I),
    mu  <- (1 - alpha) mu + alpha x',

then the update direction `gamma_k (x - mu)`, handed on to any optax optimiser (the outer rate).
The scope grows along training ("scoping"): `gamma_k = gamma_0 (1 + gamma_1)^k`.

The noise is the paper's thermal noise `eps` times `sqrt(eta')`: the inner loop is then the
Euler-Maruyama discretisation of the Langevin dynamics whose stationary law is
`exp(-beta (f(x') + gamma/2 |x - x'|^2))` with `beta = 2 / eps^2` (the Langevin noise for inverse
temperature `beta` is `sqrt(2 eta' / beta)`). `eps = 0` is the deterministic limit: the inner loop
then descends `f(x') + gamma/2 |x - x'|^2` and `mu` tends to its minimiser (the `beta -> inf`
limit of the Gibbs mean).
"""

import inspect
from typing import Any, NamedTuple

import jax
import jax.flatten_util as jfu
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from .._checks import is_concrete


class EntropySGDState(NamedTuple):
    """The state of `entropy_sgd`: the outer step count `k` and the PRNG key of the noise."""

    count: Int[Array, ""]
    key: PRNGKeyArray


def _value_fn_kwargs(value_fn, extra_args: dict[str, Any]) -> dict[str, Any]:
    """The extra arguments `value_fn` accepts by name (as optax's line searches pick them); the
    rest belong to other transformations of the chain."""
    parameters = inspect.signature(value_fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return {k: v for k, v in extra_args.items() if k not in ("value", "grad")}
    return {k: v for k, v in extra_args.items() if k in parameters}


def _check(name, value, ok, message):
    if is_concrete(value) and not ok(np.asarray(value)):
        raise ValueError(f"`{name}` {message}, got {value!r}.")


def entropy_sgd(
    *,
    langevin_steps: int = 20,
    gamma: Float[ArrayLike, ""] = 0.03,
    scoping: Float[ArrayLike, ""] = 1e-3,
    inner_learning_rate: Float[ArrayLike, ""] = 0.1,
    thermal_noise: Float[ArrayLike, ""] = 1e-4,
    averaging: Float[ArrayLike, ""] = 0.75,
    key: PRNGKeyArray | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Entropy-SGD's local-entropy gradient `gamma_k (x - mu)` as an optax transformation.

    `update(updates, state, params, *, value_fn, key=None, **extra_args)` runs the inner loop
    (module docstring) on `value_fn(params, **kwargs)`, `kwargs` the extra arguments whose names
    `value_fn` accepts (e.g. `batch`), as optax's line searches receive `value_fn`. The incoming
    `updates` (the loss gradient, say) are not used: the output replaces them. Chain with an
    optimiser for the outer step, e.g. `optax.chain(entropy_sgd(...), optax.sgd(1.0))` is
    `x <- x - gamma_k (x - mu)`. Works under `jax.jit` and `lax.scan` over steps.

    A minibatch passed as an extra argument is used by all `L` inner steps of that update; for
    a fresh batch per inner step close `value_fn` over data and draw the batch from its input.

    **Arguments:**

    - `langevin_steps`: `L`, the inner Langevin steps per update.
    - `gamma`: `gamma_0`, the initial scope (`> 0`).
    - `scoping`: `gamma_1 >= 0`, the scope at outer step `k` is `gamma_0 (1 + gamma_1)^k`.
    - `inner_learning_rate`: `eta' > 0`, below `2 / (curvature of f + gamma)`.
    - `thermal_noise`: `eps >= 0`, the noise `sqrt(eta') eps xi` (inverse temperature
        `beta = 2 / eps^2`).
    - `averaging`: `alpha` in `(0, 1]`, the weight of the newest `x'` in the running mean `mu`.
    - `key`: the PRNG key of the noise (default `jax.random.key(0)`); each update splits it.
        An explicit `key=` passed to `update` is used instead for that step.

    **Returns:**

    An `optax.GradientTransformationExtraArgs` with state `EntropySGDState(count, key)`.

    **Example:**

    ```python
    import jax
    import jax.numpy as jnp
    import jax.random as jr
    import optax
    from jaxstat.quotient import entropy_sgd

    x, y = jr.normal(jr.key(0), (64, 3)), jr.normal(jr.key(1), (64,))
    batch = (x, y)

    def loss(params, batch):
        x, y = batch
        return jnp.mean((x @ params["w"] - y) ** 2)

    params = {"w": jnp.zeros(3)}
    grads = jax.grad(loss)(params, batch)
    opt = optax.chain(entropy_sgd(langevin_steps=20, gamma=0.1), optax.sgd(0.5))
    state = opt.init(params)
    updates, state = opt.update(grads, state, params, value_fn=lambda p: loss(p, batch))
    params = optax.apply_updates(params, updates)
    ```
    """
    if not isinstance(langevin_steps, int) or langevin_steps < 1:
        raise ValueError(f"`langevin_steps` must be a positive int, got {langevin_steps!r}.")
    _check("gamma", gamma, lambda v: v > 0, "must be positive")
    _check("scoping", scoping, lambda v: v >= 0, "must be non-negative")
    _check("inner_learning_rate", inner_learning_rate, lambda v: v > 0, "must be positive")
    _check("thermal_noise", thermal_noise, lambda v: v >= 0, "must be non-negative")
    _check("averaging", averaging, lambda v: (v > 0) & (v <= 1), "must lie in (0, 1]")
    init_key = jr.key(0) if key is None else key

    def init_fn(params):
        del params
        return EntropySGDState(count=jnp.zeros((), jnp.int32), key=init_key)

    def update_fn(updates, state, params, *, value_fn=None, key=None, **extra_args):
        del updates
        if value_fn is None:
            raise TypeError(
                "`entropy_sgd` needs the loss: call `update(updates, state, params, "
                "value_fn=loss)` (extra keyword arguments such as `batch` are passed on to it)."
            )
        kwargs = _value_fn_kwargs(value_fn, extra_args)
        x, unravel = jfu.ravel_pytree(params)
        dtype = x.dtype
        gamma_k = jnp.asarray(gamma, dtype) * (1 + jnp.asarray(scoping, dtype)) ** state.count
        eta = jnp.asarray(inner_learning_rate, dtype)
        noise = jnp.sqrt(eta) * jnp.asarray(thermal_noise, dtype)
        alpha = jnp.asarray(averaging, dtype)
        next_key, subkey = jr.split(state.key)
        if key is not None:
            subkey = key
        grad_f = jax.grad(lambda y: value_fn(unravel(y), **kwargs))

        def inner(carry, key):
            x_prime, mu = carry
            drift = grad_f(x_prime) - gamma_k * (x - x_prime)
            x_prime = x_prime - eta * drift + noise * jr.normal(key, x.shape, dtype)
            mu = (1 - alpha) * mu + alpha * x_prime
            return (x_prime, mu), None

        (_, mu), _ = jax.lax.scan(inner, (x, x), jr.split(subkey, langevin_steps))
        direction = unravel(gamma_k * (x - mu))
        return direction, EntropySGDState(count=state.count + 1, key=next_key)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
