"""Equivalence of architectures and complexity from sparse geometry (SPEC E).

Resolvent feed-forward networks `h_l = (A_l - z_l)^{-1} (B_l rho(h_{l-1}) + b_l)` with dense
Hermitian `A_l`, graph-stationary networks, supra-graph stationary systems and sheaf networks with
a unitary connection represent the same functions under strong monotonicity; this package converts
between them exactly (admissible lifts, hidden-node lifts, Kron reduction) and computes the
complexity figures (edges, degrees, spectral and Lipschitz bounds, a generalisation bound) that
the sparse geometry controls.
"""

from ._adapters import BlockSource as BlockSource, FlattenFiber as FlattenFiber, Visible as Visible
from ._complexity import (
    Complexity as Complexity,
    complexity as complexity,
    count_parameters as count_parameters,
    graph_parameters as graph_parameters,
    hermitian_dof as hermitian_dof,
    layer_lipschitz as layer_lipschitz,
    LayerComplexity as LayerComplexity,
    lipschitz_bound as lipschitz_bound,
    max_degree as max_degree,
    monotonicity as monotonicity,
    readout_lipschitz as readout_lipschitz,
    source_norm as source_norm,
    spectral_bound as spectral_bound,
)
from ._convert import (
    AbstractLift as AbstractLift,
    AdmissibleLift as AdmissibleLift,
    dense_hamiltonian as dense_hamiltonian,
    HiddenNodeLift as HiddenNodeLift,
    scalar_layer_to_sheaf as scalar_layer_to_sheaf,
    sheaf_layer_to_scalar as sheaf_layer_to_scalar,
    to_resolvent as to_resolvent,
    to_stationary as to_stationary,
)
from ._generalisation import (
    generalisation_bound as generalisation_bound,
    GeneralisationBound as GeneralisationBound,
    parameter_lipschitz as parameter_lipschitz,
)
from ._hidden import hidden_node_lift as hidden_node_lift, low_rank_lift as low_rank_lift
from ._lift import (
    check_hermitian as check_hermitian,
    hermitian_lift as hermitian_lift,
    scalar_to_sheaf as scalar_to_sheaf,
    sheaf_to_scalar as sheaf_to_scalar,
)
from ._resolvent import ResolventLayer as ResolventLayer, ResolventNetwork as ResolventNetwork
