"""The stationary solve `F(psi*; s, H) = 0` and its implicit adjoint."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array, ArrayLike, Inexact

from .._checks import is_concrete
from .._implicit import ImplicitAdjoint
from .._krylov import GMRES
from .._numerics import any_nonfinite, default_tolerance, inner_forcing
from .._sharding import auto_axes_inside
from ..graphs import Graph, SparseHamiltonian
from ._model import AbstractModel
from ._solution import RESULTS, Solution
from ._stability import AbstractStabilityMethod, AutoStability, not_computed


def default_solver(dtype) -> optx.Newton:
    """Newton's method with matrix-free GMRES inner solves, tolerances set by the dtype.

    `solve` hands the root finder `F / max(1, max|s|)`: the tolerance on the residual is relative
    to the source's scale (rounding in `F = H psi + ... - s` grows with `|s|`, so an absolute
    float32 tolerance is unreachable for large sources). The root and its gradients are unchanged.

    GMRES (`jaxstat.GMRES`, see its docstring for why not lineax's Krylov solvers) because the
    Jacobian of a complex or ReLU model is not symmetric; it stops at `|r| <= eta |F|`.
    """
    tol = default_tolerance(dtype)
    inner = GMRES(rtol=inner_forcing(dtype)[0], atol=0.0)
    return optx.Newton(rtol=tol, atol=tol, linear_solver=inner)


def default_adjoint(dtype) -> ImplicitAdjoint:
    """The implicit adjoint: one transposed matrix-free GMRES solve per backward pass (see
    `jaxstat._implicit`: its failure check keeps a gradient split over devices split)."""
    return ImplicitAdjoint(linear_solver=GMRES(rtol=inner_forcing(dtype)[1], atol=0.0))


def pack(psi):
    """Complex states as `(Re, Im)` pairs, so root finders and ODE solvers see real maps."""
    return (jnp.real(psi), jnp.imag(psi)) if jnp.iscomplexobj(psi) else psi


def unpack(y):
    return y[0] + 1j * y[1] if isinstance(y, tuple) else y


def node_shape(H: SparseHamiltonian, source) -> tuple[int, ...]:
    n, k = H.num_nodes, H.fiber
    shape = jnp.shape(source)
    lead = (n,) if k == 1 else (n, k)
    if shape[: len(lead)] != lead:
        want = f"({n}, ...)" if k == 1 else f"({n}, {k}, ...)"
        raise ValueError(f"the source must have shape {want} (nodes first), got {shape}")
    return shape


def check_values(checks: list[tuple[Array, str]], token):
    """Raise each `(bad, message)` of `checks`: a `ValueError` now when `bad` is concrete,
    `eqx.error_if` on `token` when traced (inside `jit`; skipped when `token` is `None`).
    Returns `token`."""
    for bad, message in checks:
        if is_concrete(bad):
            if bool(bad):
                raise ValueError(message)
        elif token is not None:
            token = eqx.error_if(token, bad, message)
    return token


# Runs on meshes with explicit axes too (see `jaxstat._sharding`).
@auto_axes_inside
def solve(
    model: AbstractModel,
    graph: Graph | SparseHamiltonian,
    source: Inexact[ArrayLike, "n ..."],
    psi0: Inexact[ArrayLike, "n ..."] | None = None,
    *,
    solver: optx.AbstractRootFinder | optx.AbstractLeastSquaresSolver | None = None,
    adjoint: optx.AbstractAdjoint | None = None,
    stability: AbstractStabilityMethod | None = AutoStability(),
    max_steps: int = 256,
    throw: bool = True,
) -> Solution:
    """The stationary state `psi*` with `F(psi*; s, H) = 0` (see `AbstractModel`), differentiably.

    Forward: an optimistix root find (default Newton with matrix-free GMRES inner solves) from
    `psi0` (default 0), so a warm start selects a branch. Backward: the implicit adjoint, one
    transposed matrix-free solve `J^T lambda = g`; nothing is stored per iteration. Gradients flow
    to the source, the graph's weights, connection and potential, and the model's parameters.

    **Arguments:**

    - `model`: a `DrivenDampedModel`, `GradientModel` or your own `AbstractModel`.
    - `graph`: the `Graph` (or its assembled `SparseHamiltonian`, to reuse one assembly).
    - `source`: `s`, node-first shape `(n, ...)` (`(n, k, ...)` for a connection with fibre `k`).
    - `psi0`: initial guess / warm start, same shape as `source`.
    - `solver`: an optimistix root finder or least-squares solver (e.g.
      `optx.LevenbergMarquardt` for a globalised solve).
    - `adjoint`: an optimistix adjoint (default `ImplicitAdjoint` with GMRES).
    - `stability`: how to certify the branch: an `AbstractStabilityMethod` (default
      `AutoStability()`: Lanczos on a symmetric operator read off the Jacobian's structure, a
      few dozen matrix-free products, exact for gradient models and for the driven-damped model
      on a definite branch; the dense spectrum or `CayleyArnoldi` only where it cannot decide),
      or `None` to skip it (then `solution.stability.computed` is `False`).
    - `max_steps`: maximum root-finder iterations.
    - `throw`: raise on failure (non-convergence, non-finite input or state, unstable state);
      with `False`, inspect `solution.result`.

    **Returns:** a [`jaxstat.stationary.Solution`][].

    **Raises:** `ValueError` (or, inside `jit`, an `eqx.error_if` error) when the graph's
    weights are negative or a model parameter is out of range (`model.check()`, e.g.
    `gamma <= 0`): checked at every call, since an optimiser step can change them after
    construction. Inside `jit` with `throw=False`, such values give the result
    `RESULTS.invalid_parameter` instead (no `eqx.error_if`: the program then has no host
    callback, and JAX's persistent compilation cache can store it). Non-finite weights,
    connection, potential, source or model parameters give the result
    `RESULTS.nonfinite_source` (raised with `throw=True`).

    **Example:**

    ```python
    import jax.numpy as jnp
    import jax.random as jr
    import jaxstat.graphs as jg
    from jaxstat.stationary import DrivenDampedModel, solve

    graph = jg.knn_graph(jr.normal(jr.key(0), (200, 2)), k=6)
    source = jr.normal(jr.key(1), (200,)).astype(jnp.complex64)
    model = DrivenDampedModel(gamma=0.5, kappa=1.0)
    sol = solve(model, graph, source)
    sol.value, sol.stability.abscissa
    ```
    """
    # Values that can change after construction are checked here, before compiling: concrete
    # ones give a `ValueError` naming them; traced ones are checked inside `_solve`. When every
    # check ran here, `_solve` compiles without them: a program without `eqx.error_if`'s host
    # callback, which JAX's persistent compilation cache can store.
    checks = model.check() + (graph.check() if isinstance(graph, Graph) else [])
    check_values(checks, None)
    return _solve(
        model,
        graph,
        source,
        psi0,
        solver=solver,
        adjoint=adjoint,
        stability=stability,
        max_steps=max_steps,
        throw=throw,
        checked=all(is_concrete(bad) for bad, _ in checks),
    )


@eqx.filter_jit
def _solve(
    model: AbstractModel,
    graph: Graph | SparseHamiltonian,
    source: Inexact[ArrayLike, "n ..."],
    psi0: Inexact[ArrayLike, "n ..."] | None = None,
    *,
    solver: optx.AbstractRootFinder | optx.AbstractLeastSquaresSolver | None = None,
    adjoint: optx.AbstractAdjoint | None = None,
    stability: AbstractStabilityMethod | None = AutoStability(),
    max_steps: int = 256,
    throw: bool = True,
    checked: bool = False,
) -> Solution:
    """`solve` after its eager checks (see `solve`); `checked=True` (static) when those checks
    saw concrete values, so that none is repeated in the program."""
    H = graph.assemble() if isinstance(graph, Graph) else graph
    source = jnp.asarray(source)
    shape = node_shape(H, source)
    dtype = model.state_dtype(H, source)
    if psi0 is None:
        psi0 = jnp.zeros(shape, dtype)
    else:
        psi0 = jnp.asarray(psi0)
        if psi0.shape != shape:
            raise ValueError(f"psi0 must have the shape of the source {shape}, got {psi0.shape}")
        psi0 = psi0.astype(jnp.result_type(dtype, psi0))
        dtype = psi0.dtype
    real_dtype = jnp.finfo(dtype).dtype
    solver = default_solver(real_dtype) if solver is None else solver
    adjoint = default_adjoint(real_dtype) if adjoint is None else adjoint

    # The checks guard a scalar added to the source, not the source itself: `eqx.error_if` calls
    # back to Python on one device, and XLA's partitioner replicates whatever it guards (for a
    # graph split over devices, the source and every state computed from it).
    invalid = jnp.array(False)
    if not checked:
        checks = model.check() + (graph.check() if isinstance(graph, Graph) else [])
        if throw:
            token = jnp.zeros((), real_dtype)
            for bad, message in checks:
                token = eqx.error_if(token, bad, message)
            source = source + token.astype(source.dtype)
        else:
            # Reported in the result code, without `eqx.error_if`'s host callback: a program
            # that has one cannot be stored by JAX's persistent compilation cache.
            for bad, _ in checks:
                invalid = invalid | bad
    bad_input = any_nonfinite((model, H, source, psi0))

    def residual(y, args):
        model, H, source, scale = args
        return pack((model.residual(unpack(y), source, H) / scale).astype(dtype))

    # The residual in units of the source (see `default_solver`); constant for differentiation.
    scale = jax.lax.stop_gradient(jnp.maximum(1, jnp.max(jnp.abs(source), initial=0)))
    args = (model, H, source, scale.astype(real_dtype))
    sol = optx.root_find(
        residual, solver, pack(psi0), args, max_steps=max_steps, adjoint=adjoint, throw=False
    )
    psi = unpack(sol.value)
    res = jnp.max(jnp.abs(model.residual(jax.lax.stop_gradient(psi), source, H)))

    if stability is None:
        cert = not_computed(real_dtype)
    else:
        frozen = jax.lax.stop_gradient((model, H, source, psi))

        def vector_field(psi):
            m, h, s, _ = frozen
            return m.vector_field(psi, s, h).astype(dtype)

        cert = stability(vector_field, frozen[3])

    result = RESULTS.promote(sol.result)
    result = RESULTS.where(jnp.any(~jnp.isfinite(jnp.abs(psi))), RESULTS.nonfinite_state, result)
    if stability is not None:
        unstable = (result == RESULTS.successful) & ~cert.stable
        result = RESULTS.where(unstable, RESULTS.unstable, result)
    result = RESULTS.where(bad_input, RESULTS.nonfinite_source, result)
    result = RESULTS.where(invalid, RESULTS.invalid_parameter, result)
    if throw:
        # A scalar guard again (see the input checks above): the state stays split.
        psi = psi + result.error_if(jnp.zeros((), real_dtype), result != RESULTS.successful)
    return Solution(
        value=psi, result=result, residual=res, num_steps=sol.stats["num_steps"], stability=cert
    )
