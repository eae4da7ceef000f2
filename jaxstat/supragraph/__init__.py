"""Stationary networks as one global system on the supra-graph: the exact global solve, its adjoint,
and the penalized global relaxation `l(Psi) + mu/2 |F(Psi)|^2`.

A network of stationary layers, `s_l = B_l rho(psi_{l-1}) + b_l` with `psi_0 = x` and layer `l`'s
state solving its residual `F_l(psi_l; s_l) = 0`, is one global system on the stacked states
`Psi = (psi_1, ..., psi_L)`:

    F(Psi) = (F_1(psi_1; B_1 x + b_1), F_2(psi_2; B_2 rho(psi_1) + b_2), ..., F_L(...)) = 0.

Its sparsity pattern is the supra-graph: the intra-layer edges of each graph and inter-layer edges
from the nonzeros of each `B_l`. The Jacobian `J = dF/dPsi` is block lower-triangular, so the global
solve equals the layer-by-layer pass; the default strategy, `BlockTriangular`, solves `F = 0` by
block forward substitution (one block Gauss-Seidel sweep) and the adjoint system by block back
substitution (`J_ll^H lam_l = -grad_l l - J_{l+1,l}^H lam_{l+1}`). Reverse mode is the adjoint
of the global system: one transposed solve `J(Psi*)^H lam* = -grad loss(Psi*)`, then parameter
gradients `Re <lam*, dF/dtheta>`, equal to backpropagation through the layers.

The penalized relaxation of a loss `l` finds stationary points `Psi_mu` of
`Phi_mu(Psi) = l(Psi) + mu/2 |F(Psi)|^2`; with `lam_mu = mu F(Psi_mu)`,
`J(Psi_mu)^H lam_mu = -grad l(Psi_mu)`, and as `mu -> infinity`, `Psi_mu -> Psi*`, `lam_mu -> lam*`
and the gradient read off the penalized state converges to backpropagation's, all at rate `O(1/mu)`.
"""

from ._adjoint import gradient as gradient
from ._blocks import BlockTriangular as BlockTriangular
from ._network import (
    feature_network as feature_network,
    pack_states as pack_states,
    States as States,
    StationaryNetwork as StationaryNetwork,
    unpack_states as unpack_states,
)
from ._penalty import (
    default_penalized_solver as default_penalized_solver,
    penalized_solve as penalized_solve,
    penalty_objective as penalty_objective,
)
from ._solution import (
    Gradient as Gradient,
    PenalizedSolution as PenalizedSolution,
    RESULTS as RESULTS,
    Solution as Solution,
)
from ._solve import (
    default_linear_solver as default_linear_solver,
    default_root_finder as default_root_finder,
    solve as solve,
)
from ._supragraph import SupraGraph as SupraGraph, supragraph as supragraph
