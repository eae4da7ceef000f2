"""Result codes and the solution of a stationary solve."""

from __future__ import annotations

import warnings

import equinox as eqx
import optimistix as optx
from jaxtyping import Array, Bool, Float, Inexact, Int


# optimistix (like lineax) gives `successful` the empty message, so the item printed as
# `RESULTS<>` and `RESULTS[sol.result]` read `''`. Redefining it here gives it a word; equinox
# warns that the base's message is replaced, which is exactly the intent, so that one warning is
# silenced. Subclasses (`jaxstat.supragraph.RESULTS`) inherit the word.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Enumeration has duplicate incompatible values")

    class RESULTS(optx.RESULTS):  # pyright: ignore
        """Result codes of `jaxstat.stationary.solve` (optimistix's, plus those of this package).

        `RESULTS[sol.result]` is the message of a code (`"successful"` on success).
        """

        successful = "successful"

        nonfinite_source = (
            "The source, the initial state or a parameter of the graph or model is not finite "
            "(NaN or inf)."
        )
        nonfinite_state = "The stationary solve produced a non-finite state."
        invalid_parameter = (
            "A parameter of the graph or model is out of range (a negative edge weight, "
            "`gamma <= 0`, ...): `graph.check()` and `model.check()` name it."
        )
        unstable = (
            "The stationary state found is unstable: the linearised dynamics has an eigenvalue "
            "with positive real part (see `solution.stability.abscissa`). Start from another "
            "guess to reach a stable branch, or pass `throw=False` to inspect unstable states."
        )


class Stability(eqx.Module):
    """Stability certificate of a stationary state `psi*` of `d psi/dt = f(psi)`.

    `abscissa` estimates the spectral abscissa `max Re lambda` of the Jacobian of `f` at `psi*`
    (as a real-linear map): negative on a stable branch, positive on an unstable one.
    `ritz_residual` is the residual `|A v - lambda v| / |v|` of the eigenpair behind it (0 for the
    dense method); `stable` is `abscissa < -tol` (the method's `tol`). `computed` is `False` when
    no certificate was asked for (`stability=None` in `solve` or a `StationaryLayer`):
    then `abscissa` and `ritz_residual` are NaN and `stable` is `False`.
    """

    abscissa: Float[Array, ""]
    ritz_residual: Float[Array, ""]
    stable: Bool[Array, ""]
    computed: bool = eqx.field(static=True, default=True)


class Solution(eqx.Module):
    """The result of [`jaxstat.stationary.solve`][].

    **Attributes:**

    - `value`: the stationary state `psi*`, shape `(n, ...)` (complex for complex models).
    - `result`: a [`jaxstat.stationary.RESULTS`][] code.
    - `residual`: `max |F(psi*)|`, the residual of the stationarity equation.
    - `num_steps`: Newton (or other root-finder) iterations.
    - `stability`: the [`jaxstat.stationary.Stability`][] certificate of the branch (`solve`'s
      default `AutoStability()`; `stability.computed` is `False` when none was asked for).
    """

    value: Inexact[Array, "n ..."]
    result: RESULTS
    residual: Float[Array, ""]
    num_steps: Int[Array, ""]
    stability: Stability
