r"""Symmetry-quotient observables of training, local entropy and Entropy-SGD.

The parameters `theta` of a network are redundant: a group `G` acts on them without changing the
function the network computes (`f(g . theta) = f(theta)` for every `g` in `G`). Observables of
training that are not invariant under `G` (raw weight norms, say) can move while nothing about the
model changes; their quotient counterparts, functions on the orbit space `Theta / G`, cannot.

Local entropy (Deep Relaxation) coarse-grains a loss `f`:

    F(theta; gamma) = -1/beta log int exp(-beta f(theta') - beta gamma/2 |theta - theta'|^2) dtheta',

and, up to an additive constant, `u(theta, t) = F(theta; 1/t)` solves the viscous Hamilton-Jacobi
equation `u_t + 1/2 |grad u|^2 = nu Lap u` with `nu = 1 / (2 beta)` and `u(., 0) = f`; its gradient
`grad F = gamma (theta - <theta'>)` obeys the viscous Burgers equation in `t`.
"""

from ._entropy import (
    AbstractLangevinSampler as AbstractLangevinSampler,
    hj_offset as hj_offset,
    Langevin as Langevin,
    local_entropy_gradient as local_entropy_gradient,
    local_entropy_value as local_entropy_value,
    LocalEntropyGradient as LocalEntropyGradient,
    LocalEntropyValue as LocalEntropyValue,
    MetropolisAdjustedLangevin as MetropolisAdjustedLangevin,
)
from ._entropy_sgd import entropy_sgd as entropy_sgd, EntropySGDState as EntropySGDState
from ._sharpness import sharpness as sharpness, Sharpness as Sharpness
