"""Learning the graph on its stratified space: natural gradient and mirror descent on edge weights
(and phases) under Hessian metrics, with face crossing, as optax gradient transformations.

`dw = -eta (w + eps) grad L`, clipped at 0 (the shifted entropic metric `G = diag(1/(w + eps))`).

A worked example on real data is `notebooks/strata.ipynb` (semi-supervised digits). One lesson
from it: when the loss is a cross-entropy of `T psi*`, train the scale `T` with the graph; with a
fixed `T` the loss rewards confident graphs rather than correct ones.
"""

from ._coordinates import graph_labels as graph_labels
from ._fit import (
    fit as fit,
    FitResult as FitResult,
    Validation as Validation,
    validation_split as validation_split,
)
from ._potential import (
    AbstractHessianPotential as AbstractHessianPotential,
    Entropy as Entropy,
    Euclidean as Euclidean,
    ShiftedEntropy as ShiftedEntropy,
)
from ._transform import (
    mirror_descent as mirror_descent,
    mirror_step as mirror_step,
    natural_gradient as natural_gradient,
    partition as partition,
    project_to_orthant as project_to_orthant,
    scale_by_inverse_metric as scale_by_inverse_metric,
    stratum as stratum,
    StratumState as StratumState,
)
