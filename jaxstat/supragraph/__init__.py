"""Stationary networks as one global system on the supra-graph: the exact global solve, its adjoint,
and the penalized global relaxation `l(Psi) + mu/2 |F(Psi)|^2`.
"""

from ._network import (
    feature_network as feature_network,
    pack_states as pack_states,
    States as States,
    StationaryNetwork as StationaryNetwork,
    unpack_states as unpack_states,
)
from ._solution import (
    Gradient as Gradient,
    PenalizedSolution as PenalizedSolution,
    RESULTS as RESULTS,
    Solution as Solution,
)
from ._solve import solve as solve
