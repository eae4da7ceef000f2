"""Natural gradient and mirror descent on the stratified space of edge weights, as optax
gradient transformations that let edges die (reach exactly 0) and be born again.

Edge weights live in the closed orthant `w >= 0`; a stratum is a support pattern
`{e : w_e > 0}`. With a Hessian potential `psi(w) = sum_e phi(w_e)` (see `_potential.py`), the
metric `G(w) = diag(phi''(w_e))` acts on the weights and, on the tube domain
`zeta_e = w_e + i theta_e`, on the connection phases:

    natural gradient:  dw = -eta G(w)^{-1} grad_w L,        dtheta = -eta G(w)^{-1} grad_theta L,
    mirror step:       phi'(w') = phi'(w) - eta grad_w L,    (same dtheta),

then `w' = max(w + dw, 0)`. For the shifted entropy `phi(w) = (w + eps) log(w + eps)`,
`G^{-1} = diag(w + eps)`: `dw = -eta (w + eps) grad_w L` and
`w' = (w + eps) exp(-eta grad_w L) - eps`.
An edge whose gradient stays positive reaches 0 in finite time (dies); a dead edge moves inward
again as soon as its gradient is negative (is born): face crossing. Each step records the stratum
change in a `StratumState`.

The pieces compose with optax: `scale_by_inverse_metric` (precondition), any optax transformation
(momentum, schedules), `mirror_step` (dual -> primal displacement), `project_to_orthant` (last:
clip and record). `natural_gradient` and `mirror_descent` are the usual chains, and `partition`
pairs one with any optimiser for the other parameters of a model.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import optax

from .._checks import is_concrete
from ._coordinates import graph_labels, map_coordinates
from ._potential import AbstractHessianPotential, ShiftedEntropy


NO_PARAMS_MSG = "this transformation needs the parameters: call `update(updates, state, params)`"


class StratumState(NamedTuple):
    """The stratum of the edge weights and its changes, kept by
    [`jaxstat.strata.project_to_orthant`][].

    Each field is a pytree shaped like the parameters, with an array at every edge-weight leaf
    (e.g. `state.support.layer.graph.weights`) and `None` elsewhere.

    **Attributes:**

    - `support`: `w_e > 0` after the last update (the current stratum).
    - `born`, `died`: edges that left / reached the face `w_e = 0` in the last update.
    - `births`, `deaths`: how many times each edge was born / died since `init` (int32).

    The totals `num_alive`, `num_born`, `num_died`, `num_births`, `num_deaths` sum them over all
    edges; `summary()` formats them.
    """

    support: Any
    born: Any
    died: Any
    births: Any
    deaths: Any

    def _total(self, tree) -> jax.Array:
        leaves = jtu.tree_leaves(tree)
        return sum((jnp.sum(x, dtype=jnp.int32) for x in leaves), jnp.array(0, jnp.int32))

    @property
    def num_edges(self) -> int:
        """The number of edge weights tracked."""
        return sum(x.size for x in jtu.tree_leaves(self.support))

    @property
    def num_alive(self) -> jax.Array:
        """`|{e : w_e > 0}|`."""
        return self._total(self.support)

    @property
    def num_born(self) -> jax.Array:
        """Edges born in the last update."""
        return self._total(self.born)

    @property
    def num_died(self) -> jax.Array:
        """Edges that died in the last update."""
        return self._total(self.died)

    @property
    def num_births(self) -> jax.Array:
        """Births since `init`."""
        return self._total(self.births)

    @property
    def num_deaths(self) -> jax.Array:
        """Deaths since `init`."""
        return self._total(self.deaths)

    def summary(self) -> str:
        """One line: alive edges, last update's births and deaths, and the totals."""
        return (
            f"{int(self.num_alive)}/{self.num_edges} edges alive; last step +{int(self.num_born)} "
            f"-{int(self.num_died)}; since init +{int(self.num_births)} -{int(self.num_deaths)}"
        )


def _none(*_):
    return None


def _weights_only(fn):
    return lambda kind, w, p, *xs: fn(p, *xs) if kind == "weight" else None


def _check_finite(u, where: str):
    return eqx.error_if(
        u,
        ~jnp.all(jnp.isfinite(u)),
        f"non-finite update of the {where} (a NaN or inf gradient?): the step would leave the "
        "closed orthant",
    )


def scale_by_inverse_metric(
    potential: AbstractHessianPotential | None = None,
) -> optax.GradientTransformation:
    """Precondition by the inverse Hessian metric: `u_e <- G(w)^{-1}_ee u_e` on weights and phases.

    With `potential = ShiftedEntropy(eps)`: `u_e <- (w_e + eps) u_e`, the same factor for the phase
    `theta_e` of that edge (the Kähler-Hessian metric of the tube domain `w + i theta`).
    Follow it with `optax.scale_by_learning_rate` (and any momentum) and end the chain with
    [`jaxstat.strata.project_to_orthant`][].

    **Arguments:**

    - `potential`: an `AbstractHessianPotential`, default `ShiftedEntropy(1e-2)`.

    **Returns:** an `optax.GradientTransformation` (needs `params` in `update`).
    """
    potential = ShiftedEntropy() if potential is None else potential
    _check_potential(potential)

    def scale(kind, w, p, u):
        return (potential.inverse_metric(w) * u).astype(u.dtype)

    return _coordinatewise(scale)


def _second(p, u):
    return u


def _coordinatewise(fn) -> optax.GradientTransformation:
    """A stateless transformation applying `fn(kind, w, p, u)` to every graph coordinate (see
    `map_coordinates`); other leaves pass through. Needs `params` in `update`."""

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError(NO_PARAMS_MSG)
        return map_coordinates(fn, _second, params, updates), state

    return optax.GradientTransformation(init_fn, update_fn)


def mirror_step(potential: AbstractHessianPotential | None = None) -> optax.GradientTransformation:
    """Turn a displacement `v` of the mirror coordinates `phi'(w)` into the primal displacement.

    Weights: `u = w' - w` with `phi'(w') = phi'(w) + v`; for `ShiftedEntropy(eps)`,
    `u = (w + eps) expm1(v)` (no cancellation), for `Entropy()`, `u = w expm1(v)`. Phases:
    `u = G(w)^{-1} v`. Use after `optax.scale_by_learning_rate(lr)` (so `v = -lr grad`) and before
    [`jaxstat.strata.project_to_orthant`][]; [`jaxstat.strata.mirror_descent`][] is that chain.

    **Arguments:**

    - `potential`: an `AbstractHessianPotential`, default `ShiftedEntropy(1e-2)`.

    **Returns:** an `optax.GradientTransformation` (needs `params` in `update`).
    """
    potential = ShiftedEntropy() if potential is None else potential
    _check_potential(potential)

    def step(kind, w, p, v):
        if kind == "weight":
            return potential.mirror_displacement(p, -v).astype(v.dtype)
        return (potential.inverse_metric(w) * v).astype(v.dtype)

    return _coordinatewise(step)


def project_to_orthant() -> optax.GradientTransformation:
    """Clip the step at the faces, `w' = max(w + u, 0)` exactly, and record the stratum changes.

    The last transformation of a strata chain: an edge whose step would cross `w_e = 0` lands
    exactly on 0 (dies); an edge at 0 with a positive step leaves the face (is born). Phases pass
    unchanged. The state is a [`jaxstat.strata.StratumState`][]; read it with
    [`jaxstat.strata.stratum`][]. A non-finite update raises (inside `jit` too, through
    `eqx.error_if`); negative initial weights raise a `ValueError` at `init`.

    **Returns:** an `optax.GradientTransformation` (needs `params` in `update`).
    """

    def init_fn(params):
        def check(p):
            if is_concrete(p) and bool(jnp.any(p < 0)):
                raise ValueError(
                    "edge weights must be non-negative at init (strata transformations take every "
                    "floating array outside a Graph for edge weights: select the graph's weights "
                    "with jaxstat.strata.partition)"
                )
            return p > 0

        support = map_coordinates(_weights_only(check), _none, params)
        false = jtu.tree_map(jnp.zeros_like, support)
        zero = jtu.tree_map(lambda s: jnp.zeros(s.shape, jnp.int32), support)
        return StratumState(support, false, false, zero, zero)

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError(NO_PARAMS_MSG)

        def clip(kind, w, p, u):
            u = _check_finite(u, "edge weights" if kind == "weight" else "connection phases")
            return jnp.maximum(u, -p) if kind == "weight" else u

        updates = map_coordinates(clip, _second, params, updates)
        before = map_coordinates(_weights_only(lambda p, u: p > 0), _none, params, updates)
        after = map_coordinates(_weights_only(lambda p, u: (p + u) > 0), _none, params, updates)
        born = jtu.tree_map(lambda a, b: a & ~b, after, before)
        died = jtu.tree_map(lambda a, b: b & ~a, after, before)
        births = jtu.tree_map(lambda n, x: n + x.astype(jnp.int32), state.births, born)
        deaths = jtu.tree_map(lambda n, x: n + x.astype(jnp.int32), state.deaths, died)
        return updates, StratumState(after, born, died, births, deaths)

    return optax.GradientTransformation(init_fn, update_fn)


def natural_gradient(
    learning_rate: optax.ScalarOrSchedule,
    potential: AbstractHessianPotential | None = None,
    *,
    momentum: float | None = None,
    nesterov: bool = False,
) -> optax.GradientTransformation:
    """Natural-gradient descent on edge weights and phases, clipped at the faces.

    `w' = max(w - eta G(w)^{-1} grad_w L, 0)`, `theta' = theta - eta G(w)^{-1} grad_theta L`; with
    `ShiftedEntropy(eps)`, `G(w)^{-1} = diag(w + eps)`. The chain `scale_by_inverse_metric ->
    [optax.trace] -> optax.scale_by_learning_rate -> project_to_orthant`.

    **Arguments:**

    - `learning_rate`: `eta`, a float or an optax schedule.
    - `potential`: an `AbstractHessianPotential`, default `ShiftedEntropy(1e-2)`.
    - `momentum`, `nesterov`: heavy-ball momentum on the preconditioned gradient (as `optax.sgd`).

    **Returns:** an `optax.GradientTransformation`; its state holds a `StratumState` (read it with
    [`jaxstat.strata.stratum`][]).

    **Example:**

    ```python
    import equinox as eqx
    import jax.random as jr
    import jaxstat.graphs as jg
    import optax
    from jaxstat.strata import ShiftedEntropy, natural_gradient, stratum

    graph = jg.knn_graph(jr.normal(jr.key(0), (50, 2)), k=4)
    grads = eqx.tree_at(lambda g: g.weights, graph, jr.normal(jr.key(1), graph.weights.shape))
    tx = natural_gradient(0.1, ShiftedEntropy(1e-2))
    state = tx.init(graph)                    # a Graph (or an array of weights)
    updates, state = tx.update(grads, state, graph)
    graph = optax.apply_updates(graph, updates)
    stratum(state).summary()
    ```
    """
    parts = [scale_by_inverse_metric(potential)]
    if momentum is not None:
        parts.append(optax.trace(decay=momentum, nesterov=nesterov))
    parts += [optax.scale_by_learning_rate(learning_rate), project_to_orthant()]
    return optax.chain(*parts)


def mirror_descent(
    learning_rate: optax.ScalarOrSchedule,
    potential: AbstractHessianPotential | None = None,
) -> optax.GradientTransformation:
    """Mirror descent on edge weights (natural gradient on phases), clipped at the faces.

    `phi'(w') = phi'(w) - eta grad_w L`, then `w' = max(w', 0)`: with `ShiftedEntropy(eps)`,
    `w' = max((w + eps) exp(-eta grad_w L) - eps, 0)`; with `Entropy()` the exponentiated gradient
    `w' = w exp(-eta grad_w L)`, which never reaches 0. A constant gradient is integrated exactly:
    the iterates lie on the natural-gradient flow at times `k eta`.

    **Arguments:**

    - `learning_rate`: `eta`, a float or an optax schedule.
    - `potential`: an `AbstractHessianPotential`, default `ShiftedEntropy(1e-2)`.

    **Returns:** an `optax.GradientTransformation`; its state holds a `StratumState`.
    """
    return optax.chain(
        optax.scale_by_learning_rate(learning_rate), mirror_step(potential), project_to_orthant()
    )


def partition(
    graph: optax.GradientTransformation,
    rest: optax.GradientTransformation,
) -> optax.GradientTransformation:
    """One optimiser for a whole model: `graph` on the edge weights and phases of its graphs,
    `rest` on everything else (`B`, `b`, readouts, potentials, model parameters).

    `optax.partition({"graph": graph, "rest": rest}, graph_labels)`.

    **Arguments:**

    - `graph`: a strata transformation, e.g. `natural_gradient(0.1)`.
    - `rest`: any optax transformation, e.g. `optax.adam(1e-2)`.

    **Returns:** an `optax.GradientTransformation` for `eqx.filter(model, eqx.is_inexact_array)`.

    **Example:**

    ```python
    import equinox as eqx
    import jax.numpy as jnp
    import jax.random as jr
    import jaxstat.graphs as jg
    import jaxstat.stationary as js
    import optax
    from jaxstat.strata import natural_gradient, partition

    points = jr.normal(jr.key(0), (100, 2))
    graph = jg.knn_graph(points, k=5)
    model = js.feature_layer(graph, js.GradientModel(js.Quadratic(1.0)), 2, 1, key=jr.key(1))
    x, y = points, jnp.sin(points[:, :1])
    grads = eqx.filter_grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
    tx = partition(natural_gradient(0.05), optax.adam(1e-2))
    params = eqx.filter(model, eqx.is_inexact_array)
    state = tx.init(params)
    updates, state = tx.update(grads, state, params)
    model = eqx.apply_updates(model, updates)
    ```
    """
    return optax.partition({"graph": graph, "rest": rest}, graph_labels)


def stratum(opt_state) -> StratumState:
    """The [`jaxstat.strata.StratumState`][] inside an optimiser state (of `natural_gradient`,
    `mirror_descent`, `partition`, or any chain ending with `project_to_orthant`).

    Raises `ValueError` if the state holds none, or several (pass the inner state then).
    """
    found = [
        x
        for x in jtu.tree_leaves(opt_state, is_leaf=lambda x: isinstance(x, StratumState))
        if isinstance(x, StratumState)
    ]
    if len(found) != 1:
        raise ValueError(
            f"the optimiser state holds {len(found)} StratumStates, expected exactly one "
            "(use project_to_orthant() as the last step of a strata chain; with several, pass the "
            "inner state you mean)"
        )
    return found[0]


def _check_potential(potential) -> None:
    if not isinstance(potential, AbstractHessianPotential):
        raise TypeError(
            f"potential must be an AbstractHessianPotential (ShiftedEntropy, Entropy, Euclidean), "
            f"got {type(potential).__name__}"
        )
