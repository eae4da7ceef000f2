"""Stationary layers: the output is a stationary state of a dissipative Schrödinger-type dynamics
on a graph, solved implicitly and differentiated by the implicit adjoint.

A layer maps its input `x` to a source `s = B x + b` on the nodes of a graph with Hamiltonian
`H = L + diag(V)` (see `jaxstat.graphs`), and returns a readout of the stationary state `psi*`
(shape `(n, d)`, real or complex) of one of two models:

1. **Driven-damped (Kerr) model** (`DrivenDampedModel`), complex states:

       d psi/dt = -(gamma + i H) psi - i kappa g(|psi|^2) psi + s,     gamma > 0,
       stationary:  (gamma + i H) psi + i kappa g(|psi|^2) psi = s,

   `g(r) = r` (`Kerr`) or `g(r) = r / (1 + r)` (`Saturable`). With `kappa = 0` the layer is the
   resolvent `psi* = (gamma + i H)^{-1} s`, unique, `|psi*| <= |s| / gamma`; with `kappa != 0`
   several stationary states can coexist (optical bistability). One node with potential `V` and
   no edges has intensity `I = |psi|^2` solving `I (gamma^2 + (V + kappa g(I))^2) = |s|^2`.

2. **Gradient model** (`GradientModel`) with a local potential `Phi(psi) = sum_i phi(psi_i)`:

       E(psi) = 1/2 <psi, H psi> + Phi(psi) - Re <s, psi>,
       d psi/dt = -(gamma + i kappa) grad E(psi),   stationary:  H psi + grad Phi(psi) = s.

   Potentials: `Quadratic` `mu/2 |u|^2` (`psi* = (H + mu I)^{-1} s`), `ReLUPotential`
   `1/2 u^2 + indicator(u >= 0)` (with `H = 0` exactly `ReLU(s)`), `Quartic`
   `mu/2 |u|^2 + beta/4 |u|^4`, `DoubleWell` `beta/4 (|u|^2 - a^2)^2` (several branches).

**Solve and derivative.** `solve` finds `F(psi*) = 0` by Newton's method with matrix-free GMRES
inner solves (warm starts keep a branch); the backward pass is the implicit adjoint, one transposed
solve, so memory does not grow with the iterations. `flow` integrates the dynamics with diffrax.

**Stability.** A state is on a stable branch when the linearised dynamics (as a real map) has all
eigenvalues with negative real part; `solve` reports the spectral abscissa in `sol.stability`.
Its default, `AutoStability`, reads the Jacobian's structure off a few products and certifies
with Lanczos (at most 48 products): for the gradient model `A = -S` (up to a phase rotation), so
stability is `lambda_min(S) > 0`; for the driven-damped model `A = -gamma I - J M` with `M`
symmetric, and a definite `M` gives the abscissa `-gamma` exactly; otherwise the largest
eigenvalue of `(A + A^T) / 2` bounds the abscissa. Only when none decides does it fall back to
`DenseSpectrum` (small states) or `CayleyArnoldi` (matrix-free). A layer certifies only when asked
(`stability=` at construction: it solves at every forward pass).

Model parameters (`gamma`, `kappa`, `mu`, ...) are array leaves: trainable, and a new value does
not recompile.
"""

from .._krylov import GMRES as GMRES
from ._flow import flow as flow, SteadyState as SteadyState
from ._layer import (
    AbstractActivation as AbstractActivation,
    AbstractReadout as AbstractReadout,
    AbstractSource as AbstractSource,
    Activation as Activation,
    DirectSource as DirectSource,
    feature_layer as feature_layer,
    FeatureSource as FeatureSource,
    Identity as Identity,
    Intensity as Intensity,
    LinearReadout as LinearReadout,
    NodeSource as NodeSource,
    ReIm as ReIm,
    ReLU as ReLU,
    Softplus as Softplus,
    StationaryLayer as StationaryLayer,
    Tanh as Tanh,
)
from ._model import (
    AbstractModel as AbstractModel,
    AbstractNonlinearity as AbstractNonlinearity,
    DrivenDampedModel as DrivenDampedModel,
    GradientModel as GradientModel,
    Kerr as Kerr,
    Saturable as Saturable,
)
from ._potential import (
    AbstractPotential as AbstractPotential,
    AbstractRadialPotential as AbstractRadialPotential,
    DoubleWell as DoubleWell,
    Quadratic as Quadratic,
    Quartic as Quartic,
    ReLUPotential as ReLUPotential,
)
from ._solution import RESULTS as RESULTS, Solution as Solution, Stability as Stability
from ._solve import solve as solve
from ._stability import (
    AbstractStabilityMethod as AbstractStabilityMethod,
    AutoStability as AutoStability,
    CayleyArnoldi as CayleyArnoldi,
    DenseSpectrum as DenseSpectrum,
)
