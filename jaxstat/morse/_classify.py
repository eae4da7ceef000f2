"""The architecture theorems (see `jaxstat.morse`) as a classifier, and certified gradient bounds.

MLPs, in the chain form of `_network.py` (`s_j = sigma(M_j s_{j-1} + beta_j)`, `f = a^T s_K + c`,
hidden widths `k_j`, merged weights `M_j` of rank `r_j`, the readout `a` counted as map `K + 1` of
width 1). The back-propagated gradient `grad f = [D_0] M_1^T D_1 ... M_K^T D_K a` (`D_j > 0`
diagonal) can only vanish through a map whose transpose has a kernel, `r_j < k_j`: call such a
map *widening* (the width grows, or the weight is rank deficient). Let `p` be the first.

1. No widening map (`n_0 >= k_1 >= ... >= k_K`, all weights of full rank, `a != 0`): every `M_j^T`
   is injective and `grad f` never vanishes: **no critical points**.
2. `r_p < n_0` (a bottleneck before the first widening: a layer narrower than the input, or a rank
   deficient weight): up to layer `p - 1` the network is a submersion, `grad f(x) = 0` exactly when
   the gradient with respect to `s_{p-1}` vanishes, and there `hess f = (M_p J)^T hess T (M_p J)`
   has rank `<= r_p < n_0`: **every critical point is degenerate** (critical sets have dimension
   `>= n_0 - r_p`).
3. `r_p = n_0` and no later bottleneck: critical points can exist and **for almost every weight all
   of them are non-degenerate** (Morse).
4. `r_p = n_0` but a later map `j > p` with `r_j < n_0` is followed (at or after `j`) by a widening:
   **neither theorem applies**. Critical points of the first kind are generically non-degenerate;
   those whose back-propagated gradient vanishes at `j` are degenerate (`hess f` of rank `<= r_j`),
   and each kind occurs on a set of weights of positive measure.

Neural ODEs `f(x) = a^T phi_T(W x + b) + c`, `W` of shape `m x n` and rank `r`:
`grad f = W^T D phi_T^T a` with `D phi_T` invertible, and `hess f = W^T H W` for a symmetric `H`.

1. `r = m <= n` (non-augmented, full rank), `a != 0`: **no critical points**.
2. `r < n`: `hess f` has rank `<= r < n` everywhere: **every critical point is degenerate**.
3. `r = n < m` (augmented, full rank): critical points can exist; **non-degenerate for generic**
   vector fields and affine maps.
"""

import dataclasses
import enum

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._checks import is_concrete
from ._network import _Chain, as_scalar_map, ScalarMLP
from ._node import MLPField, NeuralODE


class Verdict(enum.Enum):
    """Which theorem applies to an architecture."""

    NO_CRITICAL_POINTS = "no critical points"
    ALL_DEGENERATE = "every critical point is degenerate"
    GENERICALLY_MORSE = "Morse for almost every weight"
    UNDECIDED = "no theorem applies: degenerate and non-degenerate critical points both possible"


@dataclasses.dataclass(frozen=True)
class Classification:
    """The classifier's statement about one architecture.

    - `verdict`: a `Verdict`.
    - `statement`: the theorem that applies and why, in words (also `str(classification)`).
    - `model`: `"mlp"` or `"neural_ode"`.
    - `in_size`: `n_0`; `widths`: the hidden widths `k_1 .. k_K` (MLP; the readout width 1 last)
        or `(m,)` (neural ODE); `ranks`: the ranks of the merged weights `M_1 .. M_K, a` or `(r,)`.
    - `widening`: the first widening map `p` (1-based; `None` if none).
    - `bottleneck`: the map `j` whose rank `r_j < n_0` makes critical points degenerate (`None`).
    """

    verdict: Verdict
    statement: str
    model: str
    in_size: int
    widths: tuple[int, ...]
    ranks: tuple[int, ...]
    widening: int | None = None
    bottleneck: int | None = None

    def __str__(self) -> str:
        return self.statement


def _rank(w, rtol: float | None) -> int:
    w = np.asarray(w)
    if not np.all(np.isfinite(w)):
        raise ValueError(
            "the network's weights are not finite (NaN or infinite entries): ranks, and so the "
            "verdict, are undefined"
        )
    if w.size == 0:
        return 0
    s = np.linalg.svd(w, compute_uv=False)
    if rtol is None:
        rtol = float(np.finfo(w.dtype).eps) ** 0.5
    return int(np.sum(s > rtol * max(s[0], np.finfo(w.dtype).tiny)))


def classify_mlp_architecture(in_size: int, widths, ranks=None) -> Classification:
    """Classify an MLP from its input size, hidden widths and weight ranks (theorems 1-4 above).

    **Arguments:**

    - `in_size`: `n_0`.
    - `widths`: the widths `k_1, ..., k_K` of the activated layers, optionally followed by the
        output width `1` (appended if missing).
    - `ranks`: the ranks `r_j` of the merged weights `M_j` (and of the readout, `1` unless it is
        zero); default full rank `min(k_j, k_{j-1})`.

    A network that applies `sigma` to `x` first (pre-activation form) has the same verdict:
    `sigma` is a diffeomorphism onto its image with `sigma' > 0`, so it changes neither the zeros
    of `grad f` nor the rank of `hess f` there.

    **Returns:** a `Classification`.

    ```python
    from jaxstat.morse import classify_mlp_architecture

    classify_mlp_architecture(3, [3, 2])         # no critical points
    classify_mlp_architecture(2, [1, 5])         # bottleneck: every critical point degenerate
    classify_mlp_architecture(2, [8, 8])         # Morse for almost every weight
    ```
    """
    n0 = int(in_size)
    widths = [int(k) for k in widths]
    if n0 < 1 or any(k < 0 for k in widths):
        raise ValueError(f"sizes must be positive, got in_size={n0}, widths={widths}")
    if not widths or widths[-1] != 1:
        widths = [*widths, 1]
    fan_in = [n0, *widths[:-1]]
    if ranks is None:
        ranks = [min(k, kin) for k, kin in zip(widths, fan_in)]
    ranks = [int(r) for r in ranks]
    if len(ranks) == len(widths) - 1:
        ranks = [*ranks, 1]
    if len(ranks) != len(widths):
        raise ValueError(f"got {len(ranks)} ranks for {len(widths)} maps")
    for j, (r, k, kin) in enumerate(zip(ranks, widths, fan_in), start=1):
        if not 0 <= r <= min(k, kin):
            raise ValueError(f"map {j} is {k} x {kin}; its rank cannot be {r}")
    arch = " -> ".join(str(w) for w in [n0, *widths])
    common = dict(model="mlp", in_size=n0, widths=tuple(widths), ranks=tuple(ranks))
    K1 = len(widths)

    widening = [j for j in range(K1) if ranks[j] < widths[j]]
    if not widening:
        return Classification(
            Verdict.NO_CRITICAL_POINTS,
            f"No critical points (non-augmented network {arch}): the widths never increase and "
            "every weight has full rank, so each transposed weight M_j^T is injective; with "
            "sigma' > 0 every D_j = diag sigma' is invertible and "
            "grad f = M_1^T D_1 ... M_K^T D_K a is a chain of injective maps applied to a != 0: "
            "it never vanishes.",
            **common,
        )
    p = widening[0]

    def where(j):
        return "the readout a" if j == K1 - 1 else f"weight M_{j + 1} ({widths[j]} x {fan_in[j]})"

    if 0 in ranks:
        z = ranks.index(0)
        return Classification(
            Verdict.ALL_DEGENERATE,
            f"Every critical point is degenerate ({arch}): {where(z)} is zero, so f is constant "
            "and every point is a critical point with hess f = 0.",
            widening=p + 1,
            bottleneck=z + 1,
            **common,
        )
    if ranks[p] < n0:
        if fan_in[p] < n0:
            why = (
                f"the network narrows to width {fan_in[p]} < n_0 = {n0} before it widens at "
                f"{where(p)} (a bottleneck)"
            )
        else:
            why = f"{where(p)} is rank deficient (rank {ranks[p]} < n_0 = {n0})"
        return Classification(
            Verdict.ALL_DEGENERATE,
            f"Every critical point is degenerate ({arch}): {why}. Up to that map the network is a "
            "submersion, so grad f vanishes exactly where the gradient with respect to its input "
            f"does, and there hess f = (M J)^T hess T (M J) has rank <= {ranks[p]} < {n0}; the "
            f"critical set is a union of manifolds of dimension >= {n0 - ranks[p]}.",
            widening=p + 1,
            bottleneck=p + 1,
            **common,
        )
    later = [j for j in range(p + 1, K1) if ranks[j] < n0 and any(i >= j for i in widening)]
    if later:
        j = later[0]
        i = min(i for i in widening if i >= j)
        return Classification(
            Verdict.UNDECIDED,
            f"No theorem applies ({arch}): the first widening ({where(p)}) keeps rank n_0 = {n0}, "
            f"so critical points exist and are generically non-degenerate, but {where(j)} has rank "
            f"{ranks[j]} < {n0} and is followed by the widening {where(i)}: critical points at "
            "which the back-propagated gradient vanishes there are degenerate (hess f of rank "
            f"<= {ranks[j]}). Both kinds occur on sets of weights of positive measure.",
            widening=p + 1,
            bottleneck=j + 1,
            **common,
        )
    return Classification(
        Verdict.GENERICALLY_MORSE,
        f"Morse for almost every weight (augmented network {arch} without bottleneck): "
        f"{where(p)} widens while keeping rank n_0 = {n0} and no later layer narrows below n_0 "
        "before a widening, so critical points can exist and, for all weights outside a set of "
        "Lebesgue measure zero, every critical point is non-degenerate.",
        widening=p + 1,
        **common,
    )


def classify_node_architecture(
    in_size: int, phase_size: int, rank: int | None = None, *, readout_zero: bool = False
) -> Classification:
    """Classify a neural ODE `f(x) = a^T phi_T(W x + b) + c` from `n`, `m` and `rank W`.

    **Arguments:**

    - `in_size`: `n`. `phase_size`: `m`. `rank`: the rank of `W` (default `min(m, n)`).
    - `readout_zero`: whether `a = 0` (then `f` is constant).

    **Returns:** a `Classification`.

    ```python
    from jaxstat.morse import classify_node_architecture

    classify_node_architecture(2, 2)    # no critical points
    classify_node_architecture(2, 3)    # generically Morse
    ```
    """
    n, m = int(in_size), int(phase_size)
    if n < 1 or m < 1:
        raise ValueError(f"sizes must be positive, got n={n}, m={m}")
    r = min(m, n) if rank is None else int(rank)
    if not 0 <= r <= min(m, n):
        raise ValueError(f"W is {m} x {n}; its rank cannot be {r}")
    common = dict(model="neural_ode", in_size=n, widths=(m,), ranks=(r,))
    if readout_zero:
        return Classification(
            Verdict.ALL_DEGENERATE,
            "Every critical point is degenerate: the readout a is zero, so f is constant.",
            **common,
        )
    if r == m:
        return Classification(
            Verdict.NO_CRITICAL_POINTS,
            f"No critical points (non-augmented neural ODE, phase dimension m = {m} <= n = {n}, "
            "W of full rank m): W^T is injective, D phi_T is invertible (a flow map is a "
            "diffeomorphism) and a != 0, so grad f = W^T D phi_T^T a never vanishes.",
            **common,
        )
    if r < n:
        return Classification(
            Verdict.ALL_DEGENERATE,
            f"Every critical point is degenerate (W of rank {r} < n = {n}): f(x) = g(W x + b) with "
            f"g = a^T phi_T, so hess f = W^T hess g W has rank <= {r} < {n} at every point.",
            bottleneck=1,
            **common,
        )
    return Classification(
        Verdict.GENERICALLY_MORSE,
        f"Critical points can exist and are non-degenerate for generic vector fields and affine "
        f"maps (augmented neural ODE, m = {m} > n = {n}, W of full rank n).",
        **common,
    )


def _as_model(model):
    smap = as_scalar_map(model)
    if smap is None:
        raise TypeError(
            f"expected a ScalarMLP, an eqx.nn.MLP or a NeuralODE, got {type(model).__name__}"
        )
    return smap


def _concrete(tree) -> None:
    if not is_concrete(tree):
        raise TypeError(
            "`classify` and `normal_form` inspect concrete weights (ranks are decided on the "
            "host); call them outside `jit`/`vmap`."
        )


def classify(model, *, rtol: float | None = None) -> Classification:
    """Which architecture theorem (see `jaxstat.morse`) applies to a network, and why.

    Ranks are numerical: a singular value counts as zero below `rtol * s_max` (default
    `sqrt(eps)` of the weights' dtype; a weight that close to singular behaves like a singular one
    at working precision). Host-side: call it on concrete weights, outside `jit`.

    **Arguments:**

    - `model`: a `ScalarMLP` (any layer form), an `eqx.nn.MLP` with scalar output, or a
        `NeuralODE`.
    - `rtol`: the relative rank tolerance.

    **Returns:** a `Classification`; `str(...)` is the statement.

    ```python
    import jax.random as jr
    from jaxstat.morse import classify, random_mlp

    print(classify(random_mlp(jr.key(0), [2, 16, 16, 1])))   # Morse for almost every weight ...
    ```
    """
    model = _as_model(model)
    _concrete(model)
    if isinstance(model, NeuralODE):
        return classify_node_architecture(
            model.in_size,
            model.phase_size,
            _rank(model.weight, rtol),
            readout_zero=_rank(model.readout[None, :], rtol) == 0,
        )
    if isinstance(model, ScalarMLP):
        chain = model._chain()
        ranks = [_rank(w, rtol) for w in chain.weights] + [_rank(chain.readout[None, :], rtol)]
        return classify_mlp_architecture(chain.in_size, [*chain.widths, 1], ranks)
    raise TypeError(f"cannot classify a {type(model).__name__}")


def _smallest_singular_of_transpose(w):
    # The smallest singular value of M^T: R^k -> R^{k_in}, zero when M^T has a kernel (k > k_in).
    k, k_in = w.shape
    if k > k_in:
        return jnp.zeros((), w.dtype)
    return jnp.linalg.svd(w, compute_uv=False)[-1]


def _mlp_bound(chain: _Chain, activation, lower, upper):
    lo, hi = lower, upper
    factor = jnp.ones((), lower.dtype)
    if chain.input_activation:
        factor = jnp.min(activation.derivative_lower_bound(lo, hi))
        lo, hi = activation(lo), activation(hi)
    d = None
    for j, (w, b) in enumerate(zip(chain.weights, chain.biases)):
        centre, radius = (lo + hi) / 2, (hi - lo) / 2
        z_mid, z_rad = w @ centre + b, jnp.abs(w) @ radius
        d = activation.derivative_lower_bound(z_mid - z_rad, z_mid + z_rad)
        factor = factor * _smallest_singular_of_transpose(w)
        if j < len(chain.weights) - 1:
            factor = factor * jnp.min(d)
        lo, hi = activation(z_mid - z_rad), activation(z_mid + z_rad)
    a = chain.readout
    last = jnp.linalg.norm(a) if d is None else jnp.linalg.norm(d * a)
    return factor * last


def _field_lipschitz(field) -> float:
    if isinstance(field, MLPField):
        return field.lipschitz()
    raise ValueError(
        "pass `lipschitz`, a Lipschitz constant of the vector field in y (known automatically only "
        "for an MLPField)"
    )


def gradient_lower_bound(
    model,
    lower: Float[ArrayLike, " n"],
    upper: Float[ArrayLike, " n"],
    *,
    lipschitz: float | None = None,
) -> Float[Array, ""]:
    """A certified lower bound on `|grad f(x)|_2` over the box `lower <= x <= upper`: the
    quantitative form of the no-critical-points theorems (zero when they do not apply).

    MLP (chain form): `|grad f(x)| >= |d_K * a| prod_j s_min(M_j^T) prod_{j<K} min d_j`, where
    `s_min(M^T)` is the smallest singular value of `M^T` (zero when the layer widens) and `d_j`
    lower bounds `sigma'` over the pre-activations of layer `j`, found by interval arithmetic from
    the box (`sigma'` is positive and its minimum over an interval is known in closed form).

    Neural ODE: `|grad f(x)| >= s_min(W^T) |a| exp(-L T)`, `L` a Lipschitz constant of the vector
    field in `y` (Gronwall: `|D phi_T^{-1}| <= exp(L T)`), for the exact flow.

    **Arguments:**

    - `model`: a `ScalarMLP`, `eqx.nn.MLP` or `NeuralODE`.
    - `lower`, `upper`: the box.
    - `lipschitz`: for a neural ODE, `L` (computed for an `MLPField` if not given).

    **Returns:** the bound, a scalar (jit-compatible for MLPs).

    ```python
    import jax.numpy as jnp
    import jax.random as jr
    from jaxstat.morse import gradient_lower_bound, random_mlp

    net = random_mlp(jr.key(0), [3, 3, 2, 1])
    gradient_lower_bound(net, -jnp.ones(3), jnp.ones(3))   # > 0: no critical point in the box
    ```
    """
    model = _as_model(model)
    lower, upper = jnp.asarray(lower), jnp.asarray(upper)
    n = model.in_size
    if lower.shape != (n,) or upper.shape != (n,):
        raise ValueError(f"`lower` and `upper` must have shape ({n},)")
    if isinstance(model, NeuralODE):
        lip = _field_lipschitz(model.field) if lipschitz is None else float(lipschitz)
        return (
            _smallest_singular_of_transpose(model.weight)
            * jnp.linalg.norm(model.readout)
            * jnp.exp(-lip * model.t1)
        )
    if isinstance(model, ScalarMLP):
        return _mlp_bound(model._chain(), model.activation, lower, upper)
    raise TypeError(f"cannot bound the gradient of a {type(model).__name__}")
