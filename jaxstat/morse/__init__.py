"""Critical points and Morse classification of network input-output maps (SPEC section H)."""

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
from ._solution import (
    Certificate as Certificate,
    CriticalPoints as CriticalPoints,
    RESULTS as RESULTS,
)
