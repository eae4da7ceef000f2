"""Stationary networks as one global system on the supra-graph: the exact global solve, its adjoint,
and the penalized global relaxation `l(Psi) + mu/2 |F(Psi)|^2`.
"""

from ._adjoint import gradient as gradient
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
