"""Learning a graph's edge weights on their stratified space.

**The space.** The edge weights `w = (w_e)` of a graph lie in the closed orthant `w_e >= 0`. It is
stratified by support patterns: the stratum of `w` is `S(w) = {e : w_e > 0}`, the edges alive;
its face `w_e = 0` is where edge `e` is absent. Training moves `w` within a stratum and across
faces: an edge *dies* when its weight reaches exactly 0 and is *born* when it leaves 0 again.

**The metric.** A Hessian potential `psi(w) = sum_e phi(w_e)` gives the metric
`G(w) = hess psi(w) = diag(phi''(w_e))`, and the natural gradient of a loss `L` is

    dw = -eta G(w)^{-1} grad_w L,      then  w' = max(w + dw, 0)   (face crossing).

The default is the shifted entropic potential

    psi_eps(w) = sum_e (w_e + eps) log(w_e + eps),    G(w) = diag(1 / (w_e + eps)),

so `dw_e = -eta (w_e + eps) dL/dw_e`: steps shrink near the face but, thanks to `eps > 0`, do not
vanish there, so an edge whose gradient stays positive reaches `w_e = 0` in finite time (dies) and
a dead edge whose gradient turns negative moves inward again (is born). Mirror descent takes the
step in the dual coordinates instead, `phi'(w') = phi'(w) - eta grad_w L`, i.e.
`w' = (w + eps) exp(-eta grad_w L) - eps`, clipped at 0 the same way. `Entropy` (`eps = 0`, the
exponentiated gradient, which never reaches a face) and `Euclidean` (`G = I`) are the other
potentials.

**Phases (the Kähler extension).** A graph with a `U(1)` connection has a phase `theta_e` on each
edge. Edge weight and phase form a complex coordinate `zeta_e = w_e + i theta_e` on the tube
domain over the orthant; the Kähler potential `K(zeta) = 4 psi(Re zeta)` has Levi form
`d^2 K / d zeta_e d conj(zeta_f) = delta_ef phi''(w_e)`, so the metric is
`phi''(w_e) (dw_e^2 + dtheta_e^2)` and a phase takes the same preconditioned step as its edge,
`dtheta = -eta G(w)^{-1} grad_theta L`, with no face (it is an angle).

**The pieces.** `natural_gradient` and `mirror_descent` are optax transformations (their state
records the stratum and every birth and death: `stratum(state)`); `partition` pairs one with any
optimiser for the other parameters of a model. `fit` compiles a training loop; given a
`Validation` loss (held-out labelled nodes, from `validation_split`) it keeps the parameters that
are best on validation, rejects an update whose validation loss jumps or whose gradient is not
finite (parameters and optimiser state return to those before it), and stops early.

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
