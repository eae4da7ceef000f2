"""A compiled training loop for models with graphs: `steps` optimiser updates in one `lax.scan`,
recording the loss and the stratum (edges alive) after every step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ._transform import StratumState


class FitResult(eqx.Module):
    """What [`jaxstat.strata.fit`][] returns.

    **Attributes:**

    - `model`: the trained model.
    - `opt_state`: the final optimiser state (pass it back to `fit` to continue; read the stratum
      with [`jaxstat.strata.stratum`][]).
    - `losses`: the loss before each update, shape `(steps,)`.
    - `num_alive`: the number of edges with `w_e > 0` after each update, shape `(steps,)`; `None`
      when the optimiser state holds no single `StratumState`.
    """

    model: Any
    opt_state: Any
    losses: Float[Array, " steps"]
    num_alive: Int[Array, " steps"] | None


def _strata_states(opt_state) -> list[StratumState]:
    leaves = jtu.tree_leaves(opt_state, is_leaf=lambda x: isinstance(x, StratumState))
    return [x for x in leaves if isinstance(x, StratumState)]


@eqx.filter_jit
def fit(
    loss: Callable[..., Float[Array, ""]],
    model,
    optimiser: optax.GradientTransformation,
    steps: int,
    *,
    key: PRNGKeyArray | None = None,
    opt_state=None,
) -> FitResult:
    """Minimise `loss(model)` (or `loss(model, key)`) with `steps` updates of `optimiser`, compiled
    as one `lax.scan`.

    The floating arrays of `model` (`eqx.is_inexact_array`) are trained; everything else (integer
    edge lists, Python floats, functions) is held fixed and never enters the loop carry. With
    `optimiser = partition(natural_gradient(...), optax.adam(...))` this trains the graph's
    weights on the stratified space and the rest with Adam; edges may die and be born during
    training, and `num_alive` records the support size after each step.

    **Arguments:**

    - `loss`: `loss(model) -> scalar`, or `loss(model, key) -> scalar` when `key` is given (a fresh
      subkey each step: dropout, label masking, minibatches).
    - `model`: any pytree (typically an `eqx.Module` holding `jaxstat.graphs.Graph`s).
    - `optimiser`: an optax transformation of `eqx.filter(model, eqx.is_inexact_array)`, e.g.
      [`jaxstat.strata.partition`][]`(natural_gradient(0.1), optax.adam(1e-2))`.
    - `steps`: the number of updates (static).
    - `key`: a PRNG key, split into one subkey per step.
    - `opt_state`: an optimiser state to continue from (default `optimiser.init(params)`).

    **Returns:** a [`jaxstat.strata.FitResult`][].

    **Example:**

    ```python
    tx = partition(natural_gradient(0.1), optax.adam(1e-2))
    out = fit(lambda m: jnp.mean((m(x) - y) ** 2), model, tx, 200)
    out.model, out.losses[-1], stratum(out.opt_state).summary()
    ```
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    params, static = eqx.partition(model, eqx.is_inexact_array)
    if opt_state is None:
        opt_state = optimiser.init(params)
    track = len(_strata_states(opt_state)) == 1

    def objective(p, k):
        m = eqx.combine(p, static)
        return loss(m) if key is None else loss(m, k)

    def body(carry, k):
        params, state = carry
        value, grads = jax.value_and_grad(objective)(params, k)
        updates, state = optimiser.update(grads, state, params)
        params = eqx.apply_updates(params, updates)
        alive = _strata_states(state)[0].num_alive if track else jnp.array(0, jnp.int32)
        return (params, state), (value, alive)

    keys = jr.split(key, steps) if key is not None else None
    (params, opt_state), (losses, alive) = jax.lax.scan(
        body, (params, opt_state), keys, length=steps
    )
    return FitResult(eqx.combine(params, static), opt_state, losses, alive if track else None)
