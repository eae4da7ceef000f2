"""Integration of a model's dynamics `d psi/dt = f(psi)` with diffrax."""

from __future__ import annotations

import diffrax as dfx
import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, ArrayLike, Inexact

from ..graphs import Graph, SparseHamiltonian
from ._model import AbstractModel
from ._solve import default_tolerance, node_shape, pack, state_dtype, unpack


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
    until_steady: bool | float = False,
    max_steps: int | None = 100_000,
    throw: bool = True,
) -> dfx.Solution:
    """Integrate the model's dynamics `d psi/dt = f(psi; s, H)` from `psi0` with diffrax.

    On a stable branch the trajectory converges to the stationary state that
    [`jaxstat.stationary.solve`][] returns (same basin). Complex states are integrated as
    `(Re, Im)` pairs; the returned `ys` are complex again.

    **Arguments:**

    - `model`, `graph`, `source`: as in `solve`.
    - `psi0`: the initial state.
    - `t1`: final time (may be `jnp.inf` with `until_steady=True`).
    - `solver`: a diffrax solver (default `Tsit5`); `stepsize_controller` (default PID with
      tolerances set by the dtype); `saveat` (default: the final state).
    - `until_steady`: stop at a steady state, once `|f| <= tol (1 + |psi|)` (RMS norms), with
      `tol` the value passed or, for `True`, `sqrt(rtol) / 10` of the integration tolerance
      (adaptive integration leaves a noise floor in `f` near its own tolerance).

    **Returns:** the `diffrax.Solution`.
    """
    H = graph.assemble() if isinstance(graph, Graph) else graph
    source = jnp.asarray(source)
    shape = node_shape(H, source)
    psi0 = jnp.asarray(psi0)
    if psi0.shape != shape:
        raise ValueError(f"psi0 must have the shape of the source {shape}, got {psi0.shape}")
    dtype = jnp.result_type(state_dtype(model, H, source), psi0)
    tol = default_tolerance(jnp.finfo(dtype).dtype)
    solver = dfx.Tsit5() if solver is None else solver
    if stepsize_controller is None:
        stepsize_controller = dfx.PIDController(rtol=tol, atol=tol)
    saveat = dfx.SaveAt(t1=True) if saveat is None else saveat

    def vector_field(t, y, args):
        model, H, source = _unpack_tree(args)
        return pack(model.vector_field(unpack(y), source, H).astype(dtype))

    event = None
    if until_steady is not False:
        steady = tol**0.5 / 10 if until_steady is True else float(until_steady)
        event = dfx.Event(dfx.steady_state_event(rtol=steady, atol=steady))
    sol = dfx.diffeqsolve(
        dfx.ODETerm(vector_field),
        solver,
        t0,
        t1,
        dt0,
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
