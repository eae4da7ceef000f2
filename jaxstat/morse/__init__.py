"""Critical points and Morse classification of network input-output maps.

Scalar networks `f(x) = w_L^T sigma(W_{L-1} ... sigma(W_1 x + b_1) ...)` with a strictly monotone
smooth activation (tanh, sigmoid, softplus), widths `n_0` (input), `n_1, ..., n_{L-1}`:

- widths that never increase with full-rank weights: `grad f` never vanishes;
- a bottleneck (a hidden layer narrower than the input followed by a wider one, or a rank-deficient
  weight): every critical point is degenerate;
- no bottleneck: for almost every weight all critical points are non-degenerate (Morse).

Neural ODEs `f(x) = a^T phi_T(W x + b) + c`, `phi_T` the time-`T` flow on `R^m`: no critical
points if `m <= n` with `W` of full rank (`|grad f| >= s_min(W^T) |a| e^{-Lip T}`); critical points
only if `m > n`, non-degenerate generically. `find_critical_points` runs Newton on `grad f` from
many starts,
deduplicates, classifies (Hessian spectrum, Morse index, degeneracy) and, in 2-D, checks
completeness by Poincare-Hopf: the sum of `(-1)^index` over the points in a box equals the winding
number of `grad f` along its boundary.
"""

from ._activation import (
    AbstractActivation as AbstractActivation,
    as_activation as as_activation,
    Sigmoid as Sigmoid,
    Softplus as Softplus,
    Tanh as Tanh,
)
from ._classify import (
    Classification as Classification,
    classify as classify,
    classify_mlp_architecture as classify_mlp_architecture,
    classify_node_architecture as classify_node_architecture,
    gradient_lower_bound as gradient_lower_bound,
    Verdict as Verdict,
)
from ._critical import (
    certify_critical_point as certify_critical_point,
    DoublingStarts as DoublingStarts,
    Fallback as Fallback,
    find_all_critical_points as find_all_critical_points,
    find_critical_points as find_critical_points,
    uniform_starts as uniform_starts,
)
from ._embedding import (
    IntegratorField as IntegratorField,
    universal_embedding as universal_embedding,
)
from ._network import (
    AbstractLayer as AbstractLayer,
    AbstractScalarMap as AbstractScalarMap,
    AffineLayer as AffineLayer,
    from_eqx_mlp as from_eqx_mlp,
    PostActivationLayer as PostActivationLayer,
    PreActivationLayer as PreActivationLayer,
    random_mlp as random_mlp,
    SandwichLayer as SandwichLayer,
    ScalarMLP as ScalarMLP,
)
from ._node import MLPField as MLPField, NeuralODE as NeuralODE, random_node as random_node
from ._normal_form import normal_form as normal_form
from ._screen import (
    AbstractStartScreen as AbstractStartScreen,
    AllStarts as AllStarts,
    NeighbourMinima as NeighbourMinima,
)
from ._solution import (
    Certificate as Certificate,
    CriticalPoints as CriticalPoints,
    RESULTS as RESULTS,
)
