"""A generalisation bound from the sparse geometry: parameter count and Lipschitz constants.

**Theorem** (covering-number bound for a Lipschitz-parametrised class). Let `Theta` be the box
`{theta : |theta - theta_0|_inf <= R}` (intersected with any constraint set, e.g. `w >= 0`) of the
`P` real coordinates of a network `f_theta`, let inputs satisfy `|x| <= X`, and suppose

    |f_theta(x) - f_theta'(x)| <= L_Theta |theta - theta'|_inf   (theta, theta' in Theta, |x| <= X).

Let the loss `l(f(x), y)` take values in `[0, c]` and be `lambda`-Lipschitz in `f`. Then for `N`
i.i.d. samples, with probability at least `1 - delta`, for every `theta` in `Theta`,

    E l(f_theta) <= E_N l(f_theta) + 2 Rad + c sqrt(log(1/delta) / (2N)),
    Rad <= min_eps  lambda eps + c sqrt(2 P log ceil(2 R L_Theta / eps) / N).

*Proof.* A grid of spacing `2 eps / L_Theta` per coordinate has `ceil(R L_Theta / eps)^P` points
within `eps / L_Theta` of every point of `Theta`; moving each to a point of `Theta` within that
distance (if any) gives an internal cover at `2 eps / L_Theta`, hence a `2 eps` cover of `F` in
the supremum norm with `ceil(R L_Theta / eps)^P` elements; at `eps / 2` this is the count above.
On a sample, replacing `f` by its cover element moves the loss by at most `lambda eps`, and
Massart's lemma bounds the finite class (values in `[0, c]`) by `c sqrt(2 log K / N)`: this bounds
the empirical, hence the expected, Rademacher complexity of the loss class. The deviation bound
is the standard one for `[0, c]`-valued classes (Mohri, Rostamizadeh, Talwalkar, *Foundations of
Machine Learning*, Thm 3.3, scaled by `c`). The minimum over `eps` is over a fixed grid and
needs no union bound: the Rademacher estimate is deterministic. The box (its centre `theta_0` and
`R`) must not depend on the sample: centre it at the initialisation, with `R` bounding how far
training moves the parameters, not at parameters trained on the same sample.

**The constant `L_Theta`** is built layer by layer from the Lipschitz bounds. For layer `l` with
input bound `|u| <= U`, input sensitivity `|u' - u| <= S t` (`t = |theta' - theta|_inf`), source
`s = B u + b`, operator `M` (`gamma + i H`, `H + mu`, or `A - z`) with `|M^{-1}| <= 1 / m` over the
box, and `psi = M^{-1} s`:

    |s| <= B_max U + |b|_max =: S_max,          |psi| <= S_max / m =: Psi,
    |psi' - psi| = |M'^{-1} (s' - s) - M'^{-1} (M' - M) psi| <= (|s' - s| + |M' - M| Psi) / m,
    |s' - s| <= (kappa_B U + B_max S + kappa_b) t,     |M' - M|_2 <= kappa_M t,

with `kappa_B = c sqrt(#B)` (`c = sqrt 2` for complex entries), `B_max = |B_0|_2 + R kappa_B`,
and `kappa_M` from Gershgorin on `M' - M`: for a graph,
`kappa_H = max_i (2 d_i + [V trainable] + [phases] sum_{e ~ i} (|w_e| + R))` (`d_i` incident edges:
`|w' e^{i theta'} - w e^{i theta}| <= |w' - w| + w' |theta' - theta|`), plus 1 for a trainable
`gamma` (`mu`); for a dense Hermitian `A` of size `N`, `kappa_A = 1 + (N - 1) c`, plus `c` for a
trainable `z`. The modulus over the box is `m_0 - R (coefficient of its own parameters)` and must
stay positive. Readouts: `Identity`, `ReIm` (isometries), `LinearReadout` (`W`, `c` trainable).
The max degree enters `kappa_H` (`~ 2 d_max`) where the dense operator has `kappa_A ~ N`, and the
parameter count `P` is `O(E)` against `O(N^2)`: that is the comparison `dense=True` makes.

Connection blocks (`BlockConnection`) are held fixed (not counted in `P`); non-array leaves
(Python floats) are fixed hyperparameters.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..graphs import Graph, PhaseConnection
from ..stationary import (
    DrivenDampedModel,
    FeatureSource,
    GradientModel,
    Identity,
    LinearReadout,
    NodeSource,
    Quadratic,
    ReIm,
)
from ._adapters import BlockSource, FlattenFiber, Visible
from ._complexity import (
    _complex_operator,
    _layers,
    _real_size,
    _visible_size,
    hermitian_dof,
    monotonicity,
)
from ._resolvent import hermitian_part, ResolventLayer


def _trainable(x) -> bool:
    return eqx.is_inexact_array(x)


def _coord(x) -> float:
    """Bound on `|Delta x_ij|` per unit of `t` for one entry of `x`: sqrt 2 if complex."""
    return math.sqrt(2.0) if jnp.iscomplexobj(x) else 1.0


def _fnorm(x) -> float:
    return float(jnp.linalg.norm(jnp.ravel(jnp.asarray(x))))


class _Affine(eqx.Module):
    """Bounds of an affine map `u -> B u + b` (or a readout `W v + c`) over the box."""

    num_params: int
    norm_max: float  # sup |B|_2
    kappa_B: float  # |Delta B|_2 <= kappa_B t
    bias_max: float  # sup |b broadcast|
    kappa_b: float  # |Delta b broadcast| <= kappa_b t


def _affine(B, b, out_size: int, R: float) -> _Affine:
    B, b = jnp.asarray(B), jnp.asarray(b)
    kB = math.sqrt(B.size) * _coord(B) if _trainable(B) else 0.0
    rep = out_size / max(b.size, 1)
    kb = math.sqrt(out_size) * _coord(b) if _trainable(b) else 0.0
    count = (_real_size(B) if _trainable(B) else 0) + (_real_size(b) if _trainable(b) else 0)
    return _Affine(
        num_params=count,
        norm_max=float(jnp.linalg.norm(B, 2)) + R * kB,
        kappa_B=kB,
        bias_max=math.sqrt(rep) * _fnorm(b) + R * kb,
        kappa_b=kb,
    )


def _graph_kappa(graph: Graph, R: float) -> tuple[float, int]:
    """`(kappa_H, P_graph)`: `|H' - H|_2 <= kappa_H t` over the box, and the coordinates."""
    n, E = graph.num_nodes, graph.num_edges
    s, r = np.asarray(graph.senders), np.asarray(graph.receivers)
    d = np.bincount(s, minlength=n) + np.bincount(r, minlength=n)
    row = 2.0 * d
    count = E
    if graph.potential is not None and _trainable(graph.potential):
        row = row + 1.0
        count += n
    if isinstance(graph.connection, PhaseConnection):
        w = np.abs(np.asarray(graph.weights)) + R
        row = row + np.bincount(s, w, minlength=n) + np.bincount(r, w, minlength=n)
        count += E
    return float(row.max(initial=0.0)), count


def _operator(layer, R: float, dense: bool, exact: bool) -> tuple[float, float, int]:
    """`(kappa_M, m_min, P_operator_and_model)` of a layer over the box."""
    if isinstance(layer, ResolventLayer):
        N, A, z = layer.size, layer.A, layer.z
        kA = 1.0 + (N - 1) * _coord(A)
        kz = _coord(z) if _trainable(z) else 0.0
        count = hermitian_dof(N, jnp.iscomplexobj(A)) + (_real_size(z) if _trainable(z) else 0)
        im = abs(float(jnp.imag(z)))
        if im > 0:
            m_min = im - R * kz
        else:
            lam = float(jnp.linalg.eigvalsh(hermitian_part(A))[0])
            m_min = lam - float(jnp.real(z)) - R * (kA + kz)
        return kA + kz, m_min, count
    model, g = layer.model, layer.graph
    if dense:
        N, complex_ = _visible_size(layer), _complex_operator(g)
        kH = 1.0 + (N - 1) * (math.sqrt(2.0) if complex_ else 1.0)
        count = hermitian_dof(N, complex_)
    else:
        kH, count = _graph_kappa(g, R)
    m0 = float(monotonicity(layer, exact=exact))
    if isinstance(model, DrivenDampedModel):
        kg = 1.0 if _trainable(model.gamma) else 0.0
        return kH + kg, m0 - R * kg, count + int(kg)
    if isinstance(model, GradientModel) and isinstance(model.potential, Quadratic):
        km = 1.0 if _trainable(model.potential.mu) else 0.0
        return kH + km, m0 - R * (kH + km), count + int(km)
    raise ValueError(
        "the generalisation bound covers linear layers: DrivenDampedModel(kappa=0), "
        f"GradientModel(Quadratic(mu)) and ResolventLayer; got {type(model).__name__}"
    )


def _source(layer, R: float, state_size: int) -> _Affine:
    if isinstance(layer, ResolventLayer):
        return _affine(layer.B, layer.b, state_size, R)
    src = layer.source
    if isinstance(src, NodeSource | BlockSource):
        return _affine(src.B, src.b, state_size, R)
    if isinstance(src, FeatureSource):
        return _affine(src.W, src.b, state_size, R)
    raise TypeError(f"no bound for the source {type(src).__name__}")


def _readout(readout, R: float, psi_bound: float, psi_sens: float, out_size: int):
    """`(output bound, output sensitivity, parameters)` of a readout."""
    if isinstance(readout, FlattenFiber | Visible):
        return _readout(readout.inner, R, psi_bound, psi_sens, out_size)
    if isinstance(readout, Identity | ReIm):
        return psi_bound, psi_sens, 0
    if isinstance(readout, LinearReadout):
        aff = _affine(readout.W, readout.c, out_size, R)
        bound = aff.norm_max * psi_bound + aff.bias_max
        sens = aff.kappa_B * psi_bound + aff.norm_max * psi_sens + aff.kappa_b
        return bound, sens, aff.num_params
    raise TypeError(f"no bound for the readout {type(readout).__name__}")


class GeneralisationBound(eqx.Module):
    """The bound of [`jaxstat.equivalence.generalisation_bound`][].

    **Attributes:** `gap` (the bound on `E l - E_N l`), `rademacher` (the bound on the Rademacher
    complexity of the loss class), `confidence` (`c sqrt(log(1/delta) / 2N)`), `num_params` (`P`),
    `param_lipschitz` (`L_Theta`), `output_bound` (`sup |f_theta(x)|`), `epsilon` (the minimising
    cover scale).
    """

    gap: float
    rademacher: float
    confidence: float
    num_params: int
    param_lipschitz: float
    output_bound: float
    epsilon: float


def parameter_lipschitz(
    obj,
    input_shape,
    input_norm: float,
    radius: float,
    *,
    dense: bool = False,
    exact_monotonicity: bool = False,
    input_dtype=None,
) -> tuple[float, float, int]:
    """`(L_Theta, sup |f|, P)` for the box of radius `radius` around the current parameters and
    inputs of shape `input_shape` with `|x| <= input_norm` (module docstring). Eager.

    **Raises:** `ValueError` if a layer's modulus does not stay positive over the box.
    """
    R = float(radius)
    U, S, P = float(input_norm), 0.0, 0
    dtype = input_dtype or jnp.result_type(float)
    u = jax.ShapeDtypeStruct(tuple(input_shape), dtype)
    for i, layer in enumerate(_layers(obj)):
        if isinstance(layer, ResolventLayer):
            state = jax.eval_shape(layer.state, u)
        else:
            s = jax.eval_shape(layer.source, u)
            state = jax.ShapeDtypeStruct(s.shape, jnp.result_type(s.dtype, jnp.complex64))
        out = jax.eval_shape(layer.readout, state)
        aff = _source(layer, R, math.prod(state.shape))
        kM, m_min, count = _operator(layer, R, dense, exact_monotonicity)
        if not m_min > 0:
            raise ValueError(
                f"layer {i}: the monotonicity modulus can reach {m_min:.4g} <= 0 in the box of "
                f"radius {R}; take a smaller radius"
            )
        s_max = aff.norm_max * U + aff.bias_max
        psi = s_max / m_min
        ds = aff.kappa_B * U + aff.norm_max * S + aff.kappa_b
        dpsi = (ds + kM * psi) / m_min
        U, S, pr = _readout(layer.readout, R, psi, dpsi, math.prod(out.shape))
        P += count + aff.num_params + pr
        u = out
    return S, U, P


def generalisation_bound(
    obj,
    *,
    num_samples: int,
    input_shape,
    input_norm: float,
    radius: float,
    loss_lipschitz: float = 1.0,
    loss_range: float = 1.0,
    delta: float = 0.05,
    dense: bool = False,
    exact_monotonicity: bool = False,
) -> GeneralisationBound:
    """A generalisation bound for the class of networks within `radius` (sup norm over all real
    parameter coordinates) of `obj`, from its parameter count and Lipschitz constants (the
    theorem, its assumptions and the construction of `L_Theta` are in the module docstring):

        E l - E_N l <= 2 min_eps [lambda eps + c sqrt(2 P log ceil(2 R L_Theta / eps) / N)]
                       + c sqrt(log(1/delta) / (2N)).

    **Arguments:**

    - `obj`: a linear network or layer (driven-damped `kappa = 0`, `Quadratic` gradient model,
      resolvent), sources `NodeSource`/`BlockSource`/`FeatureSource`, readouts `Identity`,
      `ReIm`, `LinearReadout` (possibly wrapped in `FlattenFiber`/`Visible`).
    - `num_samples`: `N`.
    - `input_shape`: shape of one input `x` (channels set the size of broadcast biases).
    - `input_norm`: `X`, a bound on `|x|` (Frobenius).
    - `radius`: `R`, the half-width of the parameter box.
    - `loss_lipschitz`, `loss_range`: `lambda` and `c` of the loss.
    - `delta`: the confidence level.
    - `dense`: the same figures for the equivalent dense resolvent network (the graph operator
      replaced by a dense Hermitian `A`, everything else equal): the comparison with the dense
      count.
    - `exact_monotonicity`: see [`jaxstat.equivalence.monotonicity`][].

    **Returns:** a [`jaxstat.equivalence.GeneralisationBound`][].

    **Example:**

    ```python
    gb = generalisation_bound(net, num_samples=10_000, input_shape=(m, 1), input_norm=1.0,
                              radius=0.1)
    gd = generalisation_bound(net, ..., dense=True)
    gb.gap, gd.gap, gb.num_params, gd.num_params
    ```
    """
    if num_samples < 1 or radius <= 0 or loss_range <= 0 or not 0 < delta < 1:
        raise ValueError("need num_samples >= 1, radius > 0, loss_range > 0 and 0 < delta < 1")
    L, out, P = parameter_lipschitz(
        obj, input_shape, input_norm, radius, dense=dense, exact_monotonicity=exact_monotonicity
    )
    N, c, lam, R = num_samples, float(loss_range), float(loss_lipschitz), float(radius)
    top = max(2 * R * L, 1e-300)
    eps = np.geomspace(top * 1e-12, top, 2001)
    rad = lam * eps + c * np.sqrt(2 * P * np.log(np.ceil(2 * R * L / eps)) / N)
    j = int(np.argmin(rad))
    conf = c * math.sqrt(math.log(1 / delta) / (2 * N))
    return GeneralisationBound(
        gap=float(2 * rad[j] + conf),
        rademacher=float(rad[j]),
        confidence=conf,
        num_params=P,
        param_lipschitz=L,
        output_bound=out,
        epsilon=float(eps[j]),
    )
