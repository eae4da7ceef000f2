"""Result codes and the solution returned by `solve`."""

import equinox as eqx
from jaxtyping import Array, ArrayLike, Float, PyTree


class RESULTS(eqx.Enumeration):
    """Why a PDE solve stopped. `RESULTS[sol.result]` gives the message."""

    successful = ""
    cfl_violated = (
        "A time step exceeded the CFL stability limit "
        "`dt * (sum_k max|f'| / h_k + nu * c / h_k^2) <= max_cfl`. "
        "Use a smaller `FixedStep(dt)`, or let `CFLStep(cfl)` choose the steps (with "
        "`IMEXSSP2()` / `IMEXSSP3()` the viscous part drops out where it is solved implicitly, "
        "and the hyperbolic part is divided by the solver's `step_scale` there)."
    )
    nonfinite = (
        "The solution became non-finite (inf or nan). Check the initial condition and `nu` for "
        "non-finite values, or reduce the time step."
    )
    max_steps_reached = (
        "The maximum number of time steps was reached before the last save time. Increase "
        "`max_steps` (a CFL-limited explicit scheme needs about `t / (cfl h / max|p| )` steps, "
        "or `t / (cfl h^2 / (2 nu))` when viscosity dominates: then `solver=IMEXSSP3()` solves for "
        "the viscous term and needs only the first)."
    )
    solver_failed = "The time integrator failed (see the diffrax result for details)."
    invalid_ts = "`ts` must be finite and nondecreasing."
    invalid_nu = "`nu` must be finite and non-negative."
    invalid_step = "The time step `dt` of `FixedStep(dt)` must be positive and finite."


class Solution(eqx.Module):
    """The solution of a finite-volume PDE solve.

    **Attributes:**

    - `ts`: the save times, shape `(times,)`.
    - `ys`: the states at the save times, shape `(times, *state_shape)`; `ys[0]` is the initial
        condition.
    - `result`: a `RESULTS` item; `RESULTS[sol.result]` is a readable message.
    - `stats`: `num_steps` (time steps taken), `max_cfl` (the largest CFL number of a step,
        `dt * rate`, with `rate = sum_k max|f'| / h_k + viscous part`; on the implicit steps
        of an IMEX solver `sum_k max|f'| / h_k / step_scale`), `cell_updates`
        (steps times cells).
    """

    ts: Float[Array, " times"]
    ys: Array
    result: RESULTS
    stats: dict[str, PyTree[ArrayLike]]
