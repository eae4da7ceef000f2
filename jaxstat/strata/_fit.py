"""A compiled training loop for models with graphs: `steps` optimiser updates in one `lax.scan`,
recording the loss and the stratum (edges alive) after every step, optionally safeguarded by a
validation loss (keep the best parameters, reject steps that make it jump, stop early)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from .._numerics import any_nonfinite
from ._transform import StratumState


class Validation(eqx.Module):
    """A held-out loss that safeguards [`jaxstat.strata.fit`][].

    After every update `k` the validation loss `V_k = loss(model_k)` is evaluated (on data that
    the training loss never sees, e.g. labelled nodes held out with
    [`jaxstat.strata.validation_split`][]) and:

    - **keep the best**: `fit` returns the parameters `argmin_k V_k` over `k = 0..steps` (`k = 0`
      is the starting model), so a run can never end worse on validation than it started;
    - **reject a jump**: with `max_increase = r`, an update with
      `V_new > V_cur + r |V_cur|` (or a non-finite loss, gradient or `V_new`) is rejected: the
      parameters *and the optimiser state* (momentum included) return to those before it, so one
      bad step cannot carry on through momentum;
    - **stop early**: with `patience = p`, training stops once `p` consecutive updates brought no
      new best `V` (the remaining steps are skipped, at no cost).

    **Arguments:**

    - `loss`: `loss(model) -> scalar`, deterministic (no key).
    - `patience`: a positive int, or `None` (never stop early).
    - `max_increase`: the largest accepted relative increase `r >= 0` of the validation loss in
      one update, or `None` (accept every finite update).

    **Example:**

    ```python
    import jax.numpy as jnp
    import jax.random as jr
    import jaxstat.graphs as jg
    import jaxstat.stationary as js
    import optax
    from jaxstat.strata import Validation, fit, natural_gradient, partition, validation_split

    points = jr.normal(jr.key(0), (100, 2))
    graph = jg.knn_graph(points, k=5)
    model = js.feature_layer(graph, js.GradientModel(js.Quadratic(1.0)), 2, 1, key=jr.key(1))
    x, y = points, jnp.sin(points[:, :1])
    labelled = jnp.arange(100) < 50            # the first 50 nodes carry labels y
    train, val = validation_split(labelled, 0.2, key=jr.key(0))
    train_loss = lambda m, key: jnp.sum(train[:, None] * (m(x) - y) ** 2) / train.sum()
    val_loss = lambda m: jnp.sum(val[:, None] * (m(x) - y) ** 2) / val.sum()
    tx = partition(natural_gradient(0.1), optax.adam(1e-2))
    out = fit(train_loss, model, tx, 100, key=jr.key(1),
              validation=Validation(val_loss, patience=20, max_increase=0.5))
    out.model, out.best_step, out.accepted
    ```
    """

    loss: Callable[..., Float[Array, ""]]
    patience: int | None = None
    max_increase: float | None = None

    def __check_init__(self):
        if not callable(self.loss):
            raise TypeError(f"the validation loss must be callable, got {type(self.loss).__name__}")
        patience = self.patience
        if patience is not None and (
            not isinstance(patience, int) or isinstance(patience, bool) or patience < 1
        ):
            raise ValueError(f"patience must be a positive int or None, got {self.patience!r}")
        if self.max_increase is not None and not (
            isinstance(self.max_increase, (int, float)) and self.max_increase >= 0
        ):
            raise ValueError(
                f"max_increase must be a non-negative float or None, got {self.max_increase!r}"
            )


class FitResult(eqx.Module):
    """What [`jaxstat.strata.fit`][] returns.

    **Attributes:**

    - `model`: the trained model; with a [`jaxstat.strata.Validation`][], the one with the lowest
      validation loss among the starting model and every accepted update.
    - `opt_state`: the optimiser state that goes with `model` (pass it back to `fit` to continue;
      read the stratum with [`jaxstat.strata.stratum`][]).
    - `losses`: the training loss before each update, shape `(steps,)`; `nan` at steps skipped
      after early stopping.
    - `num_alive`: the number of edges with `w_e > 0` after each update (of the accepted
      parameters), shape `(steps,)`; `None` when the optimiser state holds no single
      `StratumState`.
    - `validation_losses`: the validation loss of each proposed update, shape `(steps,)` (`inf` for
      a non-finite step, `nan` at skipped steps); `None` without validation.
    - `accepted`: whether each update was kept, shape `(steps,)`; `None` without validation.
    - `best_step`: the number of updates behind `model` (0: the starting model); `steps` without
      validation.
    - `steps_run`: the number of updates attempted before early stopping (`steps` if none).
    """

    model: Any
    opt_state: Any
    losses: Float[Array, " steps"]
    num_alive: Int[Array, " steps"] | None
    validation_losses: Float[Array, " steps"] | None = None
    accepted: Bool[Array, " steps"] | None = None
    best_step: Int[Array, ""] | int = 0
    steps_run: Int[Array, ""] | int = 0


def _strata_states(opt_state) -> list[StratumState]:
    leaves = jtu.tree_leaves(opt_state, is_leaf=lambda x: isinstance(x, StratumState))
    return [x for x in leaves if isinstance(x, StratumState)]


def _select(pred, on_true, on_false):
    return jtu.tree_map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


@eqx.filter_jit
def fit(
    loss: Callable[..., Float[Array, ""]],
    model,
    optimiser: optax.GradientTransformation,
    steps: int,
    *,
    key: PRNGKeyArray | None = None,
    opt_state=None,
    validation: Validation | None = None,
) -> FitResult:
    """Minimise `loss(model)` (or `loss(model, key)`) with `steps` updates of `optimiser`, compiled
    as one `lax.scan`.

    The floating arrays of `model` (`eqx.is_inexact_array`) are trained; everything else (integer
    edge lists, Python floats, functions) is held fixed and never enters the loop carry. With
    `optimiser = partition(natural_gradient(...), optax.adam(...))` this trains the graph's
    weights on the stratified space and the rest with Adam; edges may die and be born during
    training, and `num_alive` records the support size after each step.

    With `validation`, training is safeguarded by a held-out loss `V` (see
    [`jaxstat.strata.Validation`][]): the returned model minimises `V` over the run, updates that
    make `V` jump (or are not finite) are rejected with the optimiser state, and `patience` stops
    the run early. A model whose forward solve can fail on a bad graph should turn the failure
    into a non-finite output (`layer.solve(x, throw=False)`, then `nan` where `result` is not
    successful) so that the step is rejected rather than raised. To bound every step as well, chain
    a clip first: `optax.chain(optax.clip_by_global_norm(c), tx)`.

    **Arguments:**

    - `loss`: `loss(model) -> scalar`, or `loss(model, key) -> scalar` when `key` is given (a fresh
      subkey each step: dropout, label masking, minibatches).
    - `model`: any pytree (typically an `eqx.Module` holding `jaxstat.graphs.Graph`s).
    - `optimiser`: an optax transformation of `eqx.filter(model, eqx.is_inexact_array)`, e.g.
      [`jaxstat.strata.partition`][]`(natural_gradient(0.1), optax.adam(1e-2))`.
    - `steps`: the number of updates (static).
    - `key`: a PRNG key, split into one subkey per step.
    - `opt_state`: an optimiser state to continue from (default `optimiser.init(params)`).
    - `validation`: a [`jaxstat.strata.Validation`][], or `None` (every update is kept).

    **Returns:** a [`jaxstat.strata.FitResult`][].

    **Example:**

    ```python
    import jax.numpy as jnp
    import jax.random as jr
    import jaxstat.graphs as jg
    import jaxstat.stationary as js
    import optax
    from jaxstat.strata import fit, natural_gradient, partition, stratum

    points = jr.normal(jr.key(0), (100, 2))
    graph = jg.knn_graph(points, k=5)
    model = js.feature_layer(graph, js.GradientModel(js.Quadratic(1.0)), 2, 1, key=jr.key(1))
    x, y = points, jnp.sin(points[:, :1])
    tx = partition(natural_gradient(0.1), optax.adam(1e-2))
    out = fit(lambda m: jnp.mean((m(x) - y) ** 2), model, tx, 200)
    out.model, out.losses[-1], stratum(out.opt_state).summary()
    ```
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if validation is not None and not isinstance(validation, Validation):
        raise TypeError(
            f"validation must be a jaxstat.strata.Validation, got {type(validation).__name__}"
        )
    params, static = eqx.partition(model, eqx.is_inexact_array)
    if opt_state is None:
        opt_state = optimiser.init(params)
    track = len(_strata_states(opt_state)) == 1

    def objective(p, k):
        m = eqx.combine(p, static)
        return loss(m) if key is None else loss(m, k)

    def alive_of(state):
        return _strata_states(state)[0].num_alive if track else jnp.array(0, jnp.int32)

    keys = jr.split(key, steps) if key is not None else None
    if validation is None:

        def body(carry, k):
            params, state = carry
            value, grads = jax.value_and_grad(objective)(params, k)
            updates, state = optimiser.update(grads, state, params)
            params = eqx.apply_updates(params, updates)
            return (params, state), (value, alive_of(state))

        (params, opt_state), (losses, alive) = jax.lax.scan(
            body, (params, opt_state), keys, length=steps
        )
        return FitResult(
            eqx.combine(params, static),
            opt_state,
            losses,
            alive if track else None,
            best_step=steps,
            steps_run=steps,
        )
    return _fit_validated(
        objective, validation, params, static, opt_state, optimiser, keys, steps, alive_of, track
    )


def _fit_validated(
    objective, validation, params, static, opt_state, optimiser, keys, steps, alive_of, track
) -> FitResult:
    def vloss(p):
        v = jnp.asarray(validation.loss(eqx.combine(p, static)))
        return jnp.where(jnp.isfinite(v), v, jnp.inf)

    r, patience = validation.max_increase, validation.patience
    v0 = vloss(params)
    nan = jnp.full((), jnp.nan, v0.dtype)
    zero = jnp.array(0, jnp.int32)
    # carry: current (params, state, V), best (params, state, V, step), updates since the best,
    # updates attempted
    carry0 = (params, opt_state, v0, params, opt_state, v0, zero, zero, zero)

    def run(carry, k):
        params, state, v_cur, bp, bs, v_best, best_step, since, step = carry
        value, grads = jax.value_and_grad(objective)(params, k)
        finite = jnp.isfinite(value) & ~any_nonfinite(grads)

        def update(_):
            updates, new_state = optimiser.update(grads, state, params)
            return eqx.apply_updates(params, updates), new_state

        # A non-finite gradient never reaches the optimiser (whose checks would raise).
        new_params, new_state = jax.lax.cond(finite, update, lambda _: (params, state), None)
        v_new = jnp.where(finite, vloss(new_params), jnp.inf)
        ok = jnp.isfinite(v_new)
        if r is not None:
            ok = ok & (v_new <= v_cur + r * jnp.abs(v_cur))
        params, state = _select(ok, (new_params, new_state), (params, state))
        v_cur = jnp.where(ok, v_new, v_cur)
        step = step + 1
        better = ok & (v_new < v_best)
        bp, bs = _select(better, (params, state), (bp, bs))
        v_best = jnp.where(better, v_new, v_best)
        best_step = jnp.where(better, step, best_step)
        since = jnp.where(better, 0, since + 1)
        carry = (params, state, v_cur, bp, bs, v_best, best_step, since, step)
        return carry, (value, v_new, ok, alive_of(state))

    def skip(carry, k):
        return carry, (nan, nan, jnp.array(False), alive_of(carry[1]))

    def body(carry, k):
        if patience is None:
            return run(carry, k)
        return jax.lax.cond(carry[7] >= patience, skip, run, carry, k)

    carry, (losses, vlosses, accepted, alive) = jax.lax.scan(body, carry0, keys, length=steps)
    _, _, _, bp, bs, _, best_step, _, steps_run = carry
    return FitResult(
        eqx.combine(bp, static),
        bs,
        losses,
        alive if track else None,
        vlosses,
        accepted,
        best_step,
        steps_run,
    )


def validation_split(
    labelled: Bool[ArrayLike, " n"],
    fraction: float,
    *,
    key: PRNGKeyArray,
    classes: Int[ArrayLike, " n"] | None = None,
) -> tuple[Bool[np.ndarray, " n"], Bool[np.ndarray, " n"]]:
    """Carve a validation set out of the labelled nodes: `labelled = train + validation`,
    disjoint, and no unlabelled (test) node in either.

    A random `round(fraction m)` of the `m` labelled nodes (of each class, with `classes`) go to
    validation, at least one and never all of them (each class keeps a training label). Use the
    training nodes in the loss and the validation nodes in a [`jaxstat.strata.Validation`][] loss.

    **Arguments:**

    - `labelled`: boolean mask of the labelled nodes, shape `(n,)`.
    - `fraction`: the share held out, in `(0, 1)`.
    - `key`: a PRNG key.
    - `classes`: the node labels, shape `(n,)` (only read at labelled nodes), to split each class
      separately (stratified); `None` splits all labelled nodes together.

    **Returns:** `(train, validation)`, two boolean numpy masks of shape `(n,)`.
    """
    labelled = np.asarray(labelled)
    if labelled.ndim != 1 or labelled.dtype != bool:
        raise TypeError(
            f"labelled must be a 1-D boolean mask, got dtype {labelled.dtype} and shape "
            f"{labelled.shape}"
        )
    if not (isinstance(fraction, (int, float)) and 0 < fraction < 1):
        raise ValueError(f"fraction must lie in (0, 1), got {fraction!r}")
    if classes is None:
        groups = [np.flatnonzero(labelled)]
    else:
        classes = np.asarray(classes)
        if classes.shape != labelled.shape:
            raise ValueError(
                f"classes must have the shape of labelled {labelled.shape}, got {classes.shape}"
            )
        groups = [np.flatnonzero(labelled & (classes == c)) for c in np.unique(classes[labelled])]
    validation = np.zeros_like(labelled)
    for group, k in zip(groups, jr.split(key, len(groups))):
        m = len(group)
        if m < 2:
            raise ValueError(
                f"cannot hold out a validation node from a group of {m} labelled node(s): each "
                "class needs at least two labels (or pass classes=None)"
            )
        take = min(max(round(fraction * m), 1), m - 1)
        validation[group[np.asarray(jr.permutation(k, m))[:take]]] = True
    return labelled & ~validation, validation
