"""Result codes and solutions of the global system, its adjoint and its penalized relaxation."""

import warnings

import equinox as eqx
from jaxtyping import Array, Float, Int, PyTree

from ..stationary import RESULTS as _StationaryResults


# equinox builds a subclass's messages from optimistix's base enumeration, whose `successful` is
# the empty message: the word is given again here, and the warning about replacing it silenced
# (as in `jaxstat.stationary.RESULTS`).
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Enumeration has duplicate incompatible values")

    class RESULTS(_StationaryResults):  # pyright: ignore
        """Result codes of `jaxstat.supragraph` (those of `jaxstat.stationary`, plus this
        package's)."""

        successful = "successful"
        not_affine = (
            "A linear solver was asked for the global system, but the system is not affine: one "
            "linear solve left a residual above tolerance. Use a root finder (e.g. "
            "`optx.Newton`), or `solver=None` to let `jaxstat.supragraph.solve` choose."
        )
        nonfinite_gradient = "The loss or its gradient with respect to the states is not finite."


class Solution(eqx.Module):
    """The result of [`jaxstat.supragraph.solve`][]: the stationary state of the global system.

    **Attributes:**

    - `value`: the states `Psi* = (psi_1, ..., psi_L)`, one array per layer.
    - `result`: a [`jaxstat.supragraph.RESULTS`][] code.
    - `residual`: `max |F(Psi*)|` over all layers.
    - `layer_residuals`: `max |F_l(Psi*)|` per layer, shape `(L,)`.
    - `num_steps`: root-finder iterations (1 for a linear solve).
    """

    value: tuple[Array, ...]
    result: RESULTS
    residual: Float[Array, ""]
    layer_residuals: Float[Array, " L"]
    num_steps: Int[Array, ""]


class Gradient(eqx.Module):
    """The result of [`jaxstat.supragraph.gradient`][]: the loss at the stationary state and its
    gradients by the adjoint of the global system.

    **Attributes:**

    - `value`: the loss `l(Psi*)`.
    - `states`: `Psi*`.
    - `adjoint`: `lam* = (lam_1, ..., lam_L)` solving `J(Psi*)^H lam* = -grad l(Psi*)`
      (complex where the states are: `Re <lam, v>` pairs real and imaginary parts).
    - `grads`: `Re <lam*, dF/dtheta>`, shaped like the network (as `eqx.filter_grad`; `None`
      for non-differentiable leaves).
    - `input_grad`: `dl/dx = Re <lam*, dF/dx>`.
    - `args_grad`: the gradient with respect to the loss's own `args` (inexact arrays).
    - `result`: a [`jaxstat.supragraph.RESULTS`][] code (of the forward solve and the adjoint).
    - `adjoint_residual`: `max |J^H lam* + grad l|`, the residual of the adjoint equation.
    """

    value: Float[Array, ""]
    states: tuple[Array, ...]
    adjoint: tuple[Array, ...]
    grads: PyTree
    input_grad: Array
    args_grad: PyTree
    result: RESULTS
    adjoint_residual: Float[Array, ""]


class PenalizedSolution(eqx.Module):
    """The result of [`jaxstat.supragraph.penalized_solve`][]: a stationary point `Psi_mu` of
    `Phi_mu(Psi) = l(Psi) + mu/2 |F(Psi)|^2`, the penalized adjoint and the gradient read off it.

    **Attributes:**

    - `value`: `Psi_mu`.
    - `adjoint`: `lam_mu = mu F(Psi_mu)`; it solves `J(Psi_mu)^H lam_mu = -grad l(Psi_mu)` up to
      `stationarity`.
    - `grads`: `Re <lam_mu, dF/dtheta (Psi_mu)>`, shaped like the network (`-> Re <lam*, dF/dtheta>`
      as `mu -> infinity`).
    - `input_grad`: `Re <lam_mu, dF/dx (Psi_mu)>`.
    - `args_grad`: the gradient of `l(Psi_mu)` with respect to the loss's `args`.
    - `loss`: `l(Psi_mu)`.
    - `objective`: `Phi_mu(Psi_mu)`.
    - `residual`: `max |F(Psi_mu)|` (`O(1/mu)`).
    - `stationarity`: `max |grad Phi_mu(Psi_mu)| = max |J^H lam_mu + grad l|`.
    - `result`: a [`jaxstat.supragraph.RESULTS`][] code.
    - `num_steps`: optimiser iterations.
    """

    value: tuple[Array, ...]
    adjoint: tuple[Array, ...]
    grads: PyTree
    input_grad: Array
    args_grad: PyTree
    loss: Float[Array, ""]
    objective: Float[Array, ""]
    residual: Float[Array, ""]
    stationarity: Float[Array, ""]
    result: RESULTS
    num_steps: Int[Array, ""]
