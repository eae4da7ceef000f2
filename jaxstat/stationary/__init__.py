"""Stationary layers: the output is a stationary state of a dissipative Schrödinger-type dynamics
on a graph, solved implicitly and differentiated by the implicit adjoint.
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
    CayleyArnoldi as CayleyArnoldi,
    DenseSpectrum as DenseSpectrum,
)
