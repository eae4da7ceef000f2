"""Equivalence of architectures and complexity from sparse geometry.

Resolvent feed-forward networks `h_l = (A_l - z_l)^{-1} (B_l rho(h_{l-1}) + b_l)` with dense
Hermitian `A_l`, graph-stationary networks, supra-graph stationary systems and sheaf networks with
a unitary connection represent the same functions under strong monotonicity; this package converts
between them exactly (admissible lifts, hidden-node lifts, Kron reduction) and computes the
complexity figures (edges, degrees, spectral and Lipschitz bounds, a generalisation bound) that
the sparse geometry controls.

**Admissible lift.** Any Hermitian `H` is a graph Hamiltonian `L_{w,theta} + diag(V)` with

    w_ij = |H_ij|,   exp(i theta_ij) = -H_ij / |H_ij|,   V_i = H_ii - sum_j w_ij,

the edges being the nonzero off-diagonal entries (for `d x d` blocks, a unitary block per edge from
the polar decomposition `-H_ij = U_ij w_ij`).

**Hidden-node lift.** A dense operator `A` on visible nodes is the Kron reduction (Schur
complement) `H_vv - H_vh H_hh^{-1} H_hv` of a sparse graph Hamiltonian on visible + hidden nodes.

**Strong monotonicity.** A linear driven-damped layer `(gamma + i H) psi = s` is the resolvent
`psi = -i (H - i gamma)^{-1} s` (`z = i gamma`, `|psi| <= |s| / gamma`); a gradient layer
`(H + mu) psi = s` is the resolvent at the real point `z = -mu` below the spectrum. Under these
hypotheses the four architectures compute the same functions, and the Lipschitz constant of a
network is bounded by `prod_l |B_l| Lip(rho_l) / m_l`, `m_l` the monotonicity constant of layer `l`.
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
