"""Graphons, homomorphism densities and projected gradient flows of edge weights.

Graphons `W: [0,1]^2 -> [0,1]` (symmetric): `StepGraphon` (the step function of a matrix) and
`FunctionGraphon`; W-random graphs; homomorphism densities `t(F, W)` and their derivative kernels
`DF(W)`; the scalar entropy; objectives built from them; the projected (curve of maximal slope)
gradient flow `dA/dt = P_{T_K(A)}(-n^2 grad_A F(W_A)) = P_{T_K(A)}(-DF(W_A))` integrated with
diffrax; invariant `L^2` and cut distances.
"""

from ._density import (
    homomorphism_density as homomorphism_density,
    homomorphism_kernel as homomorphism_kernel,
    rooted_density as rooted_density,
    scalar_entropy as scalar_entropy,
    scalar_entropy_kernel as scalar_entropy_kernel,
)
from ._discretise import (
    AbstractRule as AbstractRule,
    discretise as discretise,
    GaussLegendre as GaussLegendre,
    Midpoint as Midpoint,
)
from ._distance import (
    Bounds as Bounds,
    cut_distance as cut_distance,
    cut_norm as cut_norm,
    DistanceBounds as DistanceBounds,
    invariant_l2_distance as invariant_l2_distance,
    l2_distance as l2_distance,
)
from ._flow import (
    gradient_flow as gradient_flow,
    graphon_flow as graphon_flow,
    projected_gradient as projected_gradient,
    ProjectedSolver as ProjectedSolver,
    tangent_cone_projection as tangent_cone_projection,
)
from ._graphon import (
    AbstractGraphon as AbstractGraphon,
    FunctionGraphon as FunctionGraphon,
    StepGraphon as StepGraphon,
)
from ._objective import (
    AbstractObjective as AbstractObjective,
    Composition as Composition,
    CustomObjective as CustomObjective,
    derivative_kernel as derivative_kernel,
    HomomorphismDensity as HomomorphismDensity,
    LinearCombination as LinearCombination,
    Product as Product,
    ScalarEntropy as ScalarEntropy,
)
from ._pattern import Pattern as Pattern
from ._sample import (
    sample_graph as sample_graph,
    sample_latent as sample_latent,
    sample_weighted_graph as sample_weighted_graph,
)
