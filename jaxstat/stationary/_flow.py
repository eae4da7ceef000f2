"""Integration of a model's dynamics `d psi/dt = f(psi)` with diffrax."""

from __future__ import annotations

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, ArrayLike, Inexact

from .._numerics import default_tolerance
from ..graphs import Graph, SparseHamiltonian
from ._model import AbstractModel
from ._solve import node_shape, pack, unpack


# Largest step, in units of 1 / (the model's fastest linear rate): see `flow`.
_STABLE_STEP = 2.0


class SteadyState(eqx.Module):
    """Stop [`jaxstat.stationary.flow`][] at a steady state: once

        max_i |f(psi)_i| <= rtol * max(1, max_i |s_i|),

    the same test, relative to the source's scale, as `solve`'s stopping rule on `F` (the
    rounding in `f = s - ...` grows with `|s|`). Near a stable state `psi*` the distance is
    `|psi - psi*| <~ |f| / (slowest decay rate)`.

    **Arguments:**

    - `rtol`: the tolerance; default `1e-4` in single precision, `1e-10` in double (as `solve`).
    """

    rtol: float | None = None

    def tolerance(self, dtype) -> float:
        return default_tolerance(dtype) if self.rtol is None else float(self.rtol)


@eqx.filter_jit
def flow(
    model: AbstractModel,
    graph: Graph | SparseHamiltonian,
    source: Inexact[ArrayLike, "n ..."],
    psi0: Inexact[ArrayLike, "n ..."],
    t1: float,
    *,
    t0: float = 0.0,
    dt0: float | None = None,
    solver: dfx.AbstractSolver | None = None,
    stepsize_controller: dfx.AbstractStepSizeController | None = None,
    saveat: dfx.SaveAt | None = None,
    until_steady: SteadyState | None = None,
    max_steps: int | None = 100_000,
    throw: bool = True,
) -> dfx.Solution:
    """Integrate the model's dynamics `d psi/dt = f(psi; s, H)` from `psi0` with diffrax.

    On a stable branch the trajectory converges to the stationary state that
    [`jaxstat.stationary.solve`][] returns (same basin). Complex states are integrated as
    `(Re, Im)` pairs; the returned `ys` are complex again.

    Why the default step control: the dynamics is stiff, its linear part has rates up to
    `r = model.linear_rate(|H|)` (e.g. `gamma + |H|` for the driven-damped model), while the
    state moves on the slow scale `1 / gamma`. An adaptive explicit solver then lets its step grow
    to the edge of its stability region, where the fast modes neither grow nor decay and settle at
    an amplitude set by the error controller, about 1e3 times its tolerance (measured: 0.9% to
    10% error at `t = 80` in single precision on a karate-club and a kNN graph, and no steady
    state ever reached). The default controller therefore also caps the step at `h <= 2 / r`,
    with `|H|` bounded by Gershgorin's theorem (`SparseHamiltonian.gershgorin_bound`, at most
    twice the spectral radius). Tsit5's stability function satisfies `|R(z)| < 1` on the negative
    real axis down to `z ~ -3.5`, so every dissipative mode (the gradient model's) is damped each
    step; near the imaginary axis it grows only by `|R(iy)| - 1 ~ 1.3e-4 y^6` (`y <= 1.5`), so an
    oscillatory mode `-(gamma + i lambda)` of the driven-damped model is damped as long as
    `h gamma` exceeds that (on the karate graph `h gamma ~ 1e-2` against `~ 2e-4`; a very weakly
    damped model, `gamma / |H| <~ 1e-4`, needs a smaller cap or an implicit solver). Measured
    with the cap: the state at `t = 80` matches `solve` to 1e-7 in single precision, at the cost
    of about `r t1 / 2` steps (about 2x the uncapped run on these graphs); a cap twice larger
    failed on the karate graph. Pass your own `stepsize_controller` (and, e.g., an implicit
    solver) to change this.

    **Arguments:**

    - `model`, `graph`, `source`: as in `solve`.
    - `psi0`: the initial state.
    - `t1`: final time (may be `jnp.inf` with `until_steady`).
    - `solver`: a diffrax solver (default `Tsit5`); `stepsize_controller` (default: PID with
      `rtol = atol = ` `1e-4` in single and `1e-10` in double precision, step capped as above);
      `saveat` (default: the final state).
    - `until_steady`: a [`jaxstat.stationary.SteadyState`][]: stop once the state is steady.

    **Returns:** the `diffrax.Solution`.

    **Example:**

    ```python
    import jax.numpy as jnp
    import jax.random as jr
    import jaxstat.graphs as jg
    from jaxstat.stationary import GradientModel, Quartic, SteadyState, flow

    graph = jg.knn_graph(jr.normal(jr.key(0), (50, 2)), k=4)
    model = GradientModel(Quartic(mu=1.0, beta=0.5))
    source = jr.normal(jr.key(1), (50,))
    sol = flow(model, graph, source, jnp.zeros_like(source), jnp.inf, until_steady=SteadyState())
    sol.ys[-1]  # the stationary state (as `solve(model, graph, source).value`)
    ```
    """
    H = graph.assemble() if isinstance(graph, Graph) else graph
    source = jnp.asarray(source)
    shape = node_shape(H, source)
    psi0 = jnp.asarray(psi0)
    if psi0.shape != shape:
        raise ValueError(f"psi0 must have the shape of the source {shape}, got {psi0.shape}")
    if until_steady is not None and not isinstance(until_steady, SteadyState):
        raise TypeError(
            "until_steady must be None or a jaxstat.stationary.SteadyState, e.g. "
            f"until_steady=SteadyState(rtol=1e-6); got {until_steady!r}"
        )
    dtype = jnp.result_type(model.state_dtype(H, source), psi0)
    real_dtype = jnp.finfo(dtype).dtype
    tol = default_tolerance(real_dtype)
    solver = dfx.Tsit5() if solver is None else solver
    if stepsize_controller is None:
        rate = jax.lax.stop_gradient(model.linear_rate(H.gershgorin_bound()))
        dtmax = (_STABLE_STEP / jnp.maximum(rate, jnp.finfo(real_dtype).tiny)).astype(real_dtype)
        stepsize_controller = dfx.PIDController(rtol=tol, atol=tol, dtmax=dtmax)
    saveat = dfx.SaveAt(t1=True) if saveat is None else saveat

    def vector_field(t, y, args):
        model, H, source = _unpack_tree(args)
        return pack(model.vector_field(unpack(y), source, H).astype(dtype))

    event = None
    if until_steady is not None:
        scale = jnp.maximum(1, jnp.max(jnp.abs(source), initial=0)).astype(real_dtype)
        steady = until_steady.tolerance(real_dtype) * jax.lax.stop_gradient(scale)

        def is_steady(t, y, args, *, terms, solver, **kwargs):
            f = unpack(solver.func(terms, t, y, args))
            return jnp.max(jnp.abs(f), initial=0) <= steady

        event = dfx.Event(is_steady)
    # Times in the state's precision (diffrax promotes the state to the dtype of the times, so
    # Python floats under x64 would silently integrate a single-precision state in double).
    times = [None if t is None else jnp.asarray(t, real_dtype) for t in (t0, t1, dt0)]
    sol = dfx.diffeqsolve(
        dfx.ODETerm(vector_field),
        solver,
        *times,
        pack(psi0.astype(dtype)),
        args=_pack_tree((model, H, source)),
        saveat=saveat,
        stepsize_controller=stepsize_controller,
        event=event,
        max_steps=max_steps,
        throw=throw,
    )
    ys = None if sol.ys is None else unpack(sol.ys)
    return eqx.tree_at(lambda s: s.ys, sol, ys, is_leaf=lambda x: x is None)


class _Complex(eqx.Module):
    """A complex array carried as two real ones (diffrax is not complex-safe)."""

    re: Array
    im: Array


def _pack_tree(tree):
    return jtu.tree_map(
        lambda x: (
            _Complex(jnp.real(x), jnp.imag(x)) if eqx.is_array(x) and jnp.iscomplexobj(x) else x
        ),
        tree,
    )


def _unpack_tree(tree):
    return jtu.tree_map(
        lambda x: x.re + 1j * x.im if isinstance(x, _Complex) else x,
        tree,
        is_leaf=lambda x: isinstance(x, _Complex),
    )
