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

from ..graphs import Graph
from ._complexity import (
    _layers,
    _real_size,
    complex_operator,
    hermitian_dof,
    monotonicity,
    visible_size,
)
from ._resolvent import ResolventLayer


def _trainable(x) -> bool:
    return eqx.is_inexact_array(x)


def _coord(x) -> float:
    """Bound on `|Delta x_ij|` per unit of `t` for one entry of `x`: sqrt 2 if complex."""
    return math.sqrt(2.0) if jnp.iscomplexobj(x) else 1.0


def _fnorm(x) -> float:
    return float(jnp.linalg.norm(jnp.ravel(jnp.asarray(x))))


class _AffineBounds(eqx.Module):
    """Bounds of an affine map `u -> B u + b` (or a readout `W v + c`) over the box."""

    num_params: int
    norm_max: float  # sup |B|_2
    kappa_B: float  # |Delta B|_2 <= kappa_B t
    bias_max: float  # sup |b broadcast|
    kappa_b: float  # |Delta b broadcast| <= kappa_b t


def _affine(B, b, out_size: int, R: float) -> _AffineBounds:
    B, b = jnp.asarray(B), jnp.asarray(b)
    kB = math.sqrt(B.size) * _coord(B) if _trainable(B) else 0.0
    rep = out_size / max(b.size, 1)
    kb = math.sqrt(out_size) * _coord(b) if _trainable(b) else 0.0
    count = (_real_size(B) if _trainable(B) else 0) + (_real_size(b) if _trainable(b) else 0)
    return _AffineBounds(
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
    lip = None if graph.connection is None else graph.connection.transport_lipschitz
    if lip is not None:
        # |w' U' - w U| <= |w' - w| + w' |U' - U| <= (1 + (w + R) L) t on each edge.
        w = lip * (np.abs(np.asarray(graph.weights)) + R)
        row = row + np.bincount(s, w, minlength=n) + np.bincount(r, w, minlength=n)
        count += E * graph.connection.dof_per_edge
    return float(row.max(initial=0.0)), count


def _shift_sensitivity(model) -> tuple[float, int]:
    """`(kappa_z, P_z)` of a linear model's spectral parameter `z` (its `linear_part`): `|z' - z|
    <= kappa_z t` over the box, `kappa_z = sum_j |dz/dtheta_j|` over the model's real parameter
    coordinates (exact for `z` affine in them, as for every model here), and `P_z` the number of
    coordinates `z` depends on. A parameter that would make the model nonlinear once it moves
    (the Kerr `kappa`) is held fixed, as are those `z` does not depend on."""
    leaves, treedef = jax.tree_util.tree_flatten(model, is_leaf=_trainable)
    kappa, count = 0.0, 0
    for i, leaf in enumerate(leaves):
        if not _trainable(leaf):
            continue

        def z_parts(v, i=i):
            m = jax.tree_util.tree_unflatten(treedef, leaves[:i] + [v] + leaves[i + 1 :])
            z = m.linear_part[1]
            return jnp.stack([jnp.real(z), jnp.imag(z)])

        try:
            d = np.asarray(jax.jacfwd(z_parts)(leaf)).reshape(2, -1)
        except ValueError:  # the model is linear only at this parameter's current value
            continue
        speed = np.hypot(d[0], d[1])
        kappa += float(np.sum(speed))
        count += int(np.count_nonzero(speed))
    return kappa, count


def _operator(layer, R: float, dense: bool, exact: bool) -> tuple[float, float, int]:
    """`(kappa_M, m_min, P_operator_and_model)` of a layer over the box: the operator is
    `M = c (H - z)` (`A - z` for a resolvent layer), `|M' - M| <= |c| (kappa_H + kappa_z) t`; its
    modulus stays above `m_0 - R |c| kappa_z` for complex `z` (it is `|c| |Im z|`) and above
    `m_0 - R |c| (kappa_H + kappa_z)` for real `z` (it is `|c| (lambda_min(H) - z)`)."""
    if isinstance(layer, ResolventLayer):
        N, A, z = layer.size, layer.A, layer.z
        kH = 1.0 + (N - 1) * _coord(A)
        kz = _coord(z) if _trainable(z) else 0.0
        count = hermitian_dof(N, jnp.iscomplexobj(A)) + (_real_size(z) if _trainable(z) else 0)
        c, complex_z = 1.0, abs(float(jnp.imag(z))) > 0
    else:
        c, z = layer.model.linear_part
        kz, count_z = _shift_sensitivity(layer.model)
        g = layer.graph
        if dense:
            N, complex_ = visible_size(layer), complex_operator(g)
            kH = 1.0 + (N - 1) * (math.sqrt(2.0) if complex_ else 1.0)
            count = hermitian_dof(N, complex_)
        else:
            kH, count = _graph_kappa(g, R)
        count += count_z
        c, complex_z = abs(c), jnp.iscomplexobj(z)
    m0 = float(monotonicity(layer, exact=exact))
    kM = c * (kH + kz)
    m_min = m0 - R * c * kz if complex_z else m0 - R * kM
    return kM, m_min, count


def _source_bounds(layer, R: float, state_size: int) -> _AffineBounds:
    if isinstance(layer, ResolventLayer):
        return _affine(layer.B, layer.b, state_size, R)
    src = layer.source
    if src.matrix is None or src.bias is None:
        raise TypeError(f"no bound for the source {type(src).__name__}")
    return _affine(src.matrix, src.bias, state_size, R)


def _readout_bounds(readout, R: float, psi_bound: float, psi_sens: float, out_size: int):
    """`(output bound, output sensitivity, parameters)` of an affine readout."""
    if not readout.is_affine:
        raise TypeError(f"no bound for the readout {type(readout).__name__}")
    weights = readout.affine_weights
    if weights is None:
        # No parameters: rho is affine with rho(0) = 0 and Lipschitz constant `lipschitz`.
        lip = float(readout.lipschitz)
        return lip * psi_bound, lip * psi_sens, 0
    aff = _affine(*weights, out_size, R)
    bound = aff.norm_max * psi_bound + aff.bias_max
    sens = aff.kappa_B * psi_bound + aff.norm_max * psi_sens + aff.kappa_b
    return bound, sens, aff.num_params


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
    network,
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
    for i, layer in enumerate(_layers(network)):
        if isinstance(layer, ResolventLayer):
            state = jax.eval_shape(layer.state, u)
        else:
            s = jax.eval_shape(layer.source, u)
            state = jax.ShapeDtypeStruct(s.shape, jnp.result_type(s.dtype, jnp.complex64))
        out = jax.eval_shape(layer.readout, state)
        aff = _source_bounds(layer, R, math.prod(state.shape))
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
        U, S, pr = _readout_bounds(layer.readout, R, psi, dpsi, math.prod(out.shape))
        P += count + aff.num_params + pr
        u = out
    return S, U, P


def generalisation_bound(
    network,
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
    parameter coordinates) of `network`, from its parameter count and Lipschitz constants (the
    theorem, its assumptions and the construction of `L_Theta` are in the module docstring):

        E l - E_N l <= 2 min_eps [lambda eps + c sqrt(2 P log ceil(2 R L_Theta / eps) / N)]
                       + c sqrt(log(1/delta) / (2N)).

    **Arguments:**

    - `network`: a linear network or layer (driven-damped `kappa = 0`, `Quadratic` gradient model,
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
    import jax.random as jr
    import jaxstat
    import jaxstat.graphs as jg
    import jaxstat.stationary as js
    from jaxstat.equivalence import generalisation_bound

    graph, m = jg.random_graph(jr.key(0), 30, 90), 30
    net = jaxstat.supragraph.feature_network(
        graph, js.DrivenDampedModel(gamma=1.0), [1, 4], key=jr.key(1)
    )
    kw = dict(num_samples=10_000, input_shape=(m, 1), input_norm=1.0, radius=0.1)
    gb = generalisation_bound(net, **kw)
    gd = generalisation_bound(net, **kw, dense=True)
    gb.gap, gd.gap, gb.num_params, gd.num_params
    ```
    """
    if num_samples < 1 or radius <= 0 or loss_range <= 0 or not 0 < delta < 1:
        raise ValueError("need num_samples >= 1, radius > 0, loss_range > 0 and 0 < delta < 1")
    L, out, P = parameter_lipschitz(
        network, input_shape, input_norm, radius, dense=dense, exact_monotonicity=exact_monotonicity
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
