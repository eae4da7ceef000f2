r"""Symmetry-quotient observables of training, local entropy and Entropy-SGD.

The parameters `theta` of a network are redundant: a group `G` acts on them without changing the
function the network computes (`f(g . theta) = f(theta)` for every `g` in `G`). Observables of
training that are not invariant under `G` (raw weight norms, say) can move while nothing about the
model changes; their quotient counterparts, functions on the orbit space `Theta / G`, cannot.

Local entropy (Deep Relaxation) coarse-grains a loss `f`:

    F(theta; gamma) = -1/beta log int exp(-beta f(theta') - beta gamma/2 |theta - theta'|^2)
                                  dtheta',

and, up to an additive constant, `u(theta, t) = F(theta; 1/t)` solves the viscous Hamilton-Jacobi
equation `u_t + 1/2 |grad u|^2 = nu Lap u` with `nu = 1 / (2 beta)` and `u(., 0) = f`; its gradient
`grad F = gamma (theta - <theta'>)` obeys the viscous Burgers equation in `t`.

Symmetry groups implemented (each an `AbstractSymmetry` Module, derived from a model by `symmetry`):
per-unit permutations of MLP neurons and CNN channels, with positive rescalings
`(w_in_i, w_out_i) -> (s_i w_in_i, w_out_i / s_i)` for positively homogeneous activations (ReLU,
leaky ReLU, identity) or sign flips `s_i = +-1` for odd ones (tanh), also for the units of
mean-field networks `f(x) = 1/N sum_i a_i sigma(w_i . x)` (`NeuronSymmetry`); the scale invariance
`theta_S -> c theta_S`,
`c > 0`, of the weights before a normalisation (`NormalisationScaling`); for multi-head attention,
`(W_Q, W_K) -> (W_Q A, W_K A^{-T})` with `A in GL(d_k)` and `(W_V, W_O) -> (W_V B, B^{-1} W_O)` with
`B in GL(d_v)` per head, and head permutations (`AttentionSymmetry`); products of these
(`ProductSymmetry`) and symmetries of submodules (`OnSubtree`).

The training monitor (`Monitor`, a dict of `AbstractObservable` strategies, pure and usable inside a
jitted step and `lax.scan`) returns raw norms per parameter array beside their quotient
counterparts (`min_g |g . theta|`, the spectra of the per-head invariants `W_Q W_K^T`, `W_O W_V`),
the Noether charges and their drift since the previous call, the split of a gradient or update
into orbit and horizontal parts, the sharpness (Lanczos, warm-started) and a cheap local-entropy
probe; `Every(observable, k)` sets a cadence. Forecasting a training-phase transition
(`forecast_shock`, `forecast_series`): a coarse-grained observable is fitted, on a window of the
past, by the integral along an inviscid Burgers characteristic, `q(t) = c - A log(t* - t)`
(`dw/dt = -w^2`, `w = 1 / (t - t*)`, `dq/dt = -A w`), profiled over the shock time `t*`, with a
profile-likelihood interval and no forecast when a straight line explains the window as well;
`threshold_crossing` is the raw-norm threshold baseline.
"""

from ._align import (
    align as align,
    canonicalize as canonicalize,
    interpolate as interpolate,
    loss_barrier as loss_barrier,
    quotient_distance as quotient_distance,
)
from ._derive import (
    activation_scaling as activation_scaling,
    register_activation as register_activation,
    symmetry as symmetry,
)
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
from ._forecast import (
    Forecast as Forecast,
    forecast_series as forecast_series,
    forecast_shock as forecast_shock,
    threshold_crossing as threshold_crossing,
)
from ._monitor import (
    AbstractObservable as AbstractObservable,
    Charges as Charges,
    Every as Every,
    GradientSplit as GradientSplit,
    invariant_summary as invariant_summary,
    InvariantSpectra as InvariantSpectra,
    LocalEntropyEstimate as LocalEntropyEstimate,
    Monitor as Monitor,
    QuotientNorm as QuotientNorm,
    RawNorms as RawNorms,
    SharpnessEstimate as SharpnessEstimate,
    TrainingState as TrainingState,
)
from ._recorder import read_record as read_record, Recorder as Recorder
from ._sharpness import Sharpness as Sharpness, sharpness as sharpness
from ._spec import (
    permutation_spec as permutation_spec,
    permutation_spec_from_axes_to_perm as permutation_spec_from_axes_to_perm,
    PermutationSpec as PermutationSpec,
    symmetry_from_spec as symmetry_from_spec,
)
from ._symmetry._attention import AttentionSymmetry as AttentionSymmetry
from ._symmetry._base import (
    AbstractSymmetry as AbstractSymmetry,
    ProductSymmetry as ProductSymmetry,
    sqnorm as sqnorm,
)
from ._symmetry._neuron import (
    AbstractScaling as AbstractScaling,
    NeuronSymmetry as NeuronSymmetry,
    NoScaling as NoScaling,
    PositiveScaling as PositiveScaling,
    SignFlip as SignFlip,
    Site as Site,
    Units as Units,
)
from ._symmetry._normalisation import NormalisationScaling as NormalisationScaling
from ._symmetry._subtree import OnSubtree as OnSubtree
