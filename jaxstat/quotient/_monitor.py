r"""A training monitor: raw and quotient observables of the training state, jittable and scannable.

A `Monitor` holds named observables (strategy Modules). Called on the training state it returns a
dict of small arrays and a new monitor state that the caller threads through the training loop
(inside `jax.jit` and `lax.scan`):

    state = monitor.init(params)
    observables, state = monitor(state, params, grads, opt_state, loss, key)

Observables (each an `AbstractObservable`):

- `RawNorms()`: `|theta_l|` per parameter array and `|theta|`: they move along orbits of the
  symmetry group `G` although the network's function does not;
- `QuotientNorm(group)`: `min_{g in G} |g . theta|` (`group.orbit_min_norm`), constant on orbits,
  beside the raw `|theta|`;
- `InvariantSpectra(group, top)`: summaries of the invariants, per factor of the group: for
  attention the top singular values of `W_Q,h W_K,h^T` and `W_O,h W_V,h` per head (the bias
  column included), otherwise the Frobenius norm of each invariant array;
- `Charges(group)`: the Noether charges `C(theta)` of the group's continuous part and their drift
  `|C(theta_now) - C(theta_prev)|` since the previous call (gradient flow of an invariant loss
  conserves `C`; weight decay, Adam's preconditioning and finite steps break it);
- `GradientSplit(group, solver)`: the orbit (vertical) and horizontal parts of `grads`,
  `grads = V c + h`, `c = argmin |V c - grads|`, `V` the orbit directions (`group.horizontal`; by
  default the matrix-free `lx.LSMR`); pass the optimiser's update as `grads` to see how much of a
  step only moves along orbits;
- `SharpnessEstimate(num_iterations)`: the top Hessian eigenvalue of `loss` by Lanczos
  (`sharpness`), warm-started from the previous call's Ritz vector;
- `LocalEntropyEstimate(gamma, beta, step_size, ...)`: `|grad F|`, `F` the local entropy at scope
  `gamma`, from a few Langevin steps (`local_entropy_gradient`), and `f(<theta'>) - f(theta)`.

`Every(observable, k)` evaluates an observable on every `k`-th call only (`lax.cond`, so the
other calls cost nothing) and repeats its last value in between.
"""

import abc
import functools

import equinox as eqx
import jax.lax as lax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
import lineax as lx
from jaxtyping import Array, PRNGKeyArray, PyTree

from ._entropy import local_entropy_gradient
from ._sharpness import sharpness
from ._symmetry._attention import AttentionSymmetry
from ._symmetry._base import _inexact, AbstractSymmetry, ProductSymmetry, sqnorm
from ._symmetry._subtree import OnSubtree


def _path_name(path) -> str:
    return jtu.keystr(path, simple=True, separator=".") or "value"


def _norms(tree) -> dict[str, Array]:
    """`{path: |leaf|}` over the inexact array leaves of a pytree."""
    leaves = jtu.tree_flatten_with_path(_inexact(tree))[0]
    return {_path_name(p): jnp.sqrt(jnp.sum(jnp.abs(x) ** 2)) for p, x in leaves}


class TrainingState(eqx.Module):
    """What an observable sees: `params` (a pytree or model), `grads` (shaped like `params`),
    `opt_state`, `loss` (a function of `params` returning the scalar loss on the current batch)
    and a PRNG `key`."""

    params: PyTree
    grads: PyTree
    opt_state: PyTree
    loss: object
    key: PRNGKeyArray


class AbstractObservable(eqx.Module):
    """An observable of the training state: `init(params) -> state` and
    `__call__(training_state, state) -> (dict of arrays, state)`."""

    def init(self, params) -> PyTree:
        """The observable's state before the first call (default: none)."""
        return None

    @abc.abstractmethod
    def __call__(self, ts: TrainingState, state) -> tuple[dict[str, Array], PyTree]:
        """The observables and the new state."""


class RawNorms(AbstractObservable):
    r"""`|theta_l|` for every parameter array `theta_l` (named by its path) and
    `total = |theta|`."""

    def __call__(self, ts, state):
        out = _norms(ts.params)
        out["total"] = jnp.sqrt(sqnorm(ts.params))
        return out, state


class QuotientNorm(AbstractObservable):
    r"""`quotient = sqrt(min_{g in G} |g . theta|^2)` (`group.orbit_min_norm`) and
    `raw = |theta|`."""

    group: AbstractSymmetry

    def __call__(self, ts, state):
        quotient = jnp.sqrt(jnp.maximum(self.group.orbit_min_norm(ts.params), 0))
        return {"quotient": quotient, "raw": jnp.sqrt(sqnorm(ts.params))}, state


@functools.singledispatch
def invariant_summary(group: AbstractSymmetry, params, top: int) -> dict[str, Array]:
    r"""Small summaries of `group.invariants(params)`: by default the Frobenius norm of each
    invariant array. `ProductSymmetry` and `OnSubtree` summarise their factors (names prefixed by
    the factor's index); `AttentionSymmetry` gives the `top` singular values per head of
    `W_Q,h W_K,h^T` and `W_O,h W_V,h` (bias column included), heads in the group's sorted order.
    Register a rule for a new symmetry with `invariant_summary.register`."""
    return _norms(group.invariants(params))


@invariant_summary.register
def _(group: ProductSymmetry, params, top):
    out = {}
    for i, factor in enumerate(group.factors):
        for name, value in invariant_summary(factor, params, top).items():
            out[f"{i}.{name}"] = value
    return out


@invariant_summary.register
def _(group: OnSubtree, params, top):
    return invariant_summary(group.inner, group.where(params), top)


@invariant_summary.register
def _(group: AttentionSymmetry, params, top):
    qk, ov = group.invariants(params)
    k = min(top, qk.shape[-1], qk.shape[-2])
    kv = min(top, ov.shape[-1], ov.shape[-2])
    return {
        "qk_singular_values": jnp.linalg.svd(qk, compute_uv=False)[..., :k],
        "ov_singular_values": jnp.linalg.svd(ov, compute_uv=False)[..., :kv],
    }


class InvariantSpectra(AbstractObservable):
    """Summaries of the invariants of `group` (see `invariant_summary`): `top` singular values
    per attention head, Frobenius norms otherwise."""

    group: AbstractSymmetry
    top: int = eqx.field(static=True, default=4)

    def __check_init__(self):
        if not isinstance(self.top, int) or self.top < 1:
            raise ValueError(f"`top` must be a positive int, got {self.top!r}.")

    def __call__(self, ts, state):
        return invariant_summary(self.group, ts.params, self.top), state


class Charges(AbstractObservable):
    r"""The Noether charges `C(theta)` of `group`: `norm.<i>` = `|C_i|` per charge array and
    `drift.<i>` = `|C_i(theta) - C_i(theta_prev)|`, `theta_prev` the parameters at the previous
    call (at `init` for the first call). The state holds the previous charges."""

    group: AbstractSymmetry

    def init(self, params):
        return _inexact(self.group.charges(params))

    def __call__(self, ts, state):
        now = _inexact(self.group.charges(ts.params))
        out = {f"norm.{k}": v for k, v in _norms(now).items()}
        drift = jtu.tree_map(lambda a, b: a - b, now, state)
        out |= {f"drift.{k}": v for k, v in _norms(drift).items()}
        return out, now


class GradientSplit(AbstractObservable):
    r"""`total = |grads|`, `vertical = |V c|`, `horizontal = |grads - V c|` with
    `c = argmin_c |V c - grads|`, `V` the orbit directions of `group` at `params`
    (`group.horizontal` with `solver`; `lx.LSMR` keeps `V` matrix-free, `lx.SVD()` is exact), and
    `converged` (1.0 when the least squares solve converged; else the split is the solver's last
    iterate: a monitor does not stop the training run it watches)."""

    group: AbstractSymmetry
    solver: lx.AbstractLinearSolver = lx.LSMR(rtol=1e-4, atol=1e-4, max_steps=64)

    def __call__(self, ts, state):
        grads = _inexact(ts.grads)
        h, result = self.group.horizontal_result(ts.params, grads, self.solver, throw=False)
        total = jnp.sqrt(sqnorm(grads))
        horizontal = jnp.sqrt(sqnorm(h))
        vertical = jnp.sqrt(sqnorm(jtu.tree_map(lambda a, b: a - b, grads, h)))
        converged = (result == lx.RESULTS.successful).astype(total.dtype)
        return {
            "total": total,
            "vertical": vertical,
            "horizontal": horizontal,
            "converged": converged,
        }, state


def _split_params(params):
    arrays, static = eqx.partition(params, eqx.is_inexact_array)
    return arrays, static


class SharpnessEstimate(AbstractObservable):
    r"""`value`: the top eigenvalue of the Hessian of `loss` at `params` by `num_iterations`
    Lanczos steps (`sharpness`), started from the previous call's Ritz vector (the state);
    `residual = |H v - value v|`."""

    num_iterations: int = eqx.field(static=True, default=5)

    def __check_init__(self):
        if not isinstance(self.num_iterations, int) or self.num_iterations < 1:
            raise ValueError(
                f"`num_iterations` must be a positive int, got {self.num_iterations!r}."
            )

    def init(self, params):
        arrays, _ = _split_params(params)
        leaves, treedef = jtu.tree_flatten(arrays)
        keys = jr.split(jr.key(0), max(len(leaves), 1))
        noise = [jr.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)]
        return jtu.tree_unflatten(treedef, noise)

    def __call__(self, ts, state):
        arrays, static = _split_params(ts.params)
        out = sharpness(
            lambda p: ts.loss(eqx.combine(p, static)),
            arrays,
            num_iterations=self.num_iterations,
            init=state,
        )
        return {"value": out.value, "residual": out.residual}, out.vector


class LocalEntropyEstimate(AbstractObservable):
    r"""A cheap local-entropy probe at scope `gamma`:
    `grad_norm = |grad F| = gamma |theta - <theta'>|`
    and `loss_shift = f(<theta'>) - f(theta)` from `num_chains` Langevin chains of `num_steps`
    steps after `burn_in` (`local_entropy_gradient`), and `stderr`, the Monte Carlo standard
    error of `|grad F|` (the norm of the per-component standard errors). Flat regions give a small
    `grad_norm`; its cost is `num_chains (num_steps + burn_in)` gradient evaluations."""

    gamma: float
    beta: float
    step_size: float
    num_steps: int = eqx.field(static=True, default=5)
    burn_in: int = eqx.field(static=True, default=0)
    num_chains: int = eqx.field(static=True, default=2)

    def __call__(self, ts, state):
        arrays, static = _split_params(ts.params)

        def loss(p):
            return ts.loss(eqx.combine(p, static))

        est = local_entropy_gradient(
            loss,
            arrays,
            gamma=self.gamma,
            beta=self.beta,
            key=ts.key,
            step_size=self.step_size,
            num_steps=self.num_steps,
            burn_in=self.burn_in,
            num_chains=self.num_chains,
        )
        return {
            "grad_norm": jnp.sqrt(sqnorm(est.grad)),
            "stderr": jnp.sqrt(sqnorm(est.grad_stderr)),
            "loss_shift": loss(est.mean) - loss(arrays),
        }, state


class Every(AbstractObservable):
    r"""`observable` evaluated on calls `0, k, 2k, ...` only; other calls return its last value
    (`lax.cond`: the skipped calls cost a branch). The state is `(count, inner state, last)`."""

    observable: AbstractObservable
    k: int = eqx.field(static=True)

    def __check_init__(self):
        if not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"`k` must be a positive int, got {self.k!r}.")

    def init(self, params):
        inner = self.observable.init(params)
        dummy = TrainingState(params, params, None, lambda p: jnp.zeros(()), jr.key(0))
        shapes = eqx.filter_eval_shape(lambda: self.observable(dummy, inner)[0])
        last = jtu.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        return jnp.zeros((), jnp.int32), inner, last

    def __call__(self, ts, state):
        count, inner, last = state
        dynamic, static = eqx.partition((ts, inner), eqx.is_array)

        def evaluate(dynamic, last):
            ts, inner = eqx.combine(dynamic, static)
            out, inner = self.observable(ts, inner)
            return out, eqx.filter(inner, eqx.is_array)

        def skip(dynamic, last):
            _, inner = eqx.combine(dynamic, static)
            return last, eqx.filter(inner, eqx.is_array)

        out, inner_arrays = lax.cond(count % self.k == 0, evaluate, skip, dynamic, last)
        inner = eqx.combine(inner_arrays, eqx.filter(inner, eqx.is_array, inverse=True))
        return out, (count + 1, inner, out)


class Monitor(eqx.Module):
    r"""A named collection of observables of the training state.

    **Arguments:** `observables`: a dict `{name: AbstractObservable}`.

    **Methods:** `init(params)` gives the monitor state; `monitor(state, params, grads, opt_state,
    loss, key)` returns `({name: {observable: array}}, state)`. Pure: use it inside the jitted
    training step and `lax.scan`, and record the output with `Recorder`.

    **Example:**

    ```python
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import jax.random as jr
    import jaxstat
    import optax
    from jaxstat.quotient import Charges, Every, Monitor, QuotientNorm, RawNorms, SharpnessEstimate

    model = eqx.nn.MLP(2, 1, 8, 1, activation=jax.nn.relu, key=jr.key(0))
    batch = (jr.normal(jr.key(1), (32, 2)), jr.normal(jr.key(2), (32, 1)))

    def loss(model, batch):
        x, y = batch
        return jnp.mean((jax.vmap(model)(x) - y) ** 2)

    grads = eqx.filter_grad(loss)(model, batch)
    opt_state = optax.adam(1e-3).init(eqx.filter(model, eqx.is_inexact_array))
    key = jr.key(3)
    group = jaxstat.quotient.symmetry(model)
    monitor = Monitor({"raw": RawNorms(), "quotient": QuotientNorm(group),
                       "charges": Charges(group), "sharpness": Every(SharpnessEstimate(), 10)})
    state = monitor.init(model)
    obs, state = monitor(state, model, grads, opt_state, lambda m: loss(m, batch), key)
    ```
    """

    observables: dict[str, AbstractObservable]

    def __check_init__(self):
        if not isinstance(self.observables, dict) or not self.observables:
            raise ValueError("`observables` must be a non-empty dict of observables.")
        for name, obs in self.observables.items():
            if not isinstance(obs, AbstractObservable):
                raise TypeError(
                    f"observable {name!r} must be an AbstractObservable, got {type(obs).__name__}."
                )

    def init(self, params) -> dict[str, PyTree]:
        return {name: obs.init(params) for name, obs in self.observables.items()}

    def __call__(
        self, state, params, grads, opt_state, loss, key: PRNGKeyArray
    ) -> tuple[dict[str, dict[str, Array]], dict[str, PyTree]]:
        keys = jr.split(key, len(self.observables))
        out, new = {}, {}
        for (name, obs), k in zip(self.observables.items(), keys):
            ts = TrainingState(params, grads, opt_state, loss, k)
            out[name], new[name] = obs(ts, state[name])
        return out, new
