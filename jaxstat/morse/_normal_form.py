"""Normal forms: a network with rank-deficient weights as a smaller full-rank network computing the
same function.

Starting from the chain form `s_j = sigma(M_j s_{j-1} + beta_j)`, `f = a^T s_K + c`:

1. Exact unit reductions, repeated until none applies: a unit whose outgoing column is zero is
   removed; a unit whose incoming row is zero is the constant `sigma(beta_i)`, folded into the next
   bias; two units with the same incoming row and bias are merged (their outgoing columns added);
   two with opposite rows and biases are merged through `sigma(-z) = s sigma(z) + t` when the
   activation has such a reflection (tanh: `s = -1, t = 0`; sigmoid: `s = -1, t = 1`).
2. Rank factorisation of each merged weight, `M_j = U_j V_j` with `U_j` (`k_j x r_j`) of full
   column rank and `V_j` (`r_j x k_{j-1}`) of full row rank (a thin SVD; an identity factor when
   `M_j` already has full rank): the linear state between two activated layers shrinks to
   `r_j = rank M_j`.

The result is a `ScalarMLP` of `SandwichLayer`s `h -> V_{j+1} sigma(U_j h + beta_j)`, the last one
reading out `a^T sigma(.) + c`, preceded by the projection `x -> V_1 x` (an `AffineLayer` with
orthonormal rows) when `M_1` has rank `r_1 < n_0`: then `f(x) = g(V_1 x)` with `g` a network on
`R^{r_1}`, and every critical point of `f` is degenerate. Every weight matrix of the result has full
rank, and the function is unchanged (up to rounding).
"""

import jax.numpy as jnp
import numpy as np

from ._classify import _as_model, _concrete
from ._network import (
    AffineLayer,
    PreActivationLayer,
    SandwichLayer,
    ScalarMLP,
)


def _prune(weights, biases, a, c, activation, tol):
    """Exact unit reductions (step 1); lists of numpy arrays, modified copies returned."""
    weights, biases = list(weights), list(biases)
    reflection = activation.reflection()
    changed = True
    while changed:
        changed = False
        for j in range(len(weights)):
            w, b = weights[j], biases[j]
            last = j == len(weights) - 1
            out = a[None, :] if last else weights[j + 1]
            out_bias = np.array([c]) if last else biases[j + 1]
            out, out_bias = out.copy(), out_bias.copy()
            k = w.shape[0]
            keep = np.ones(k, bool)
            scale_in = max(np.max(np.abs(w), initial=0.0), np.max(np.abs(b), initial=0.0))
            scale_out = np.max(np.abs(out), initial=0.0)
            for i in range(k):
                if np.all(np.abs(out[:, i]) <= tol * scale_out):
                    keep[i] = False  # dead unit: nothing reads it
                elif np.all(np.abs(w[i]) <= tol * scale_in):
                    keep[i] = False  # constant unit sigma(b_i)
                    out_bias = out_bias + out[:, i] * np.asarray(activation(b[i]))
            for i in range(k):
                if not keep[i]:
                    continue
                for i2 in range(i):
                    if not keep[i2]:
                        continue
                    row, row2 = np.append(w[i], b[i]), np.append(w[i2], b[i2])
                    if np.all(np.abs(row - row2) <= tol * scale_in):
                        out[:, i2] += out[:, i]
                        keep[i] = False
                        break
                    if reflection is not None and np.all(np.abs(row + row2) <= tol * scale_in):
                        s, t = reflection  # sigma(z_i) = sigma(-z_i2) = s sigma(z_i2) + t
                        out[:, i2] += s * out[:, i]
                        out_bias = out_bias + t * out[:, i]
                        keep[i] = False
                        break
            if np.all(keep):
                continue
            changed = True
            weights[j], biases[j] = w[keep], b[keep]
            if last:
                a, c = out[0, keep], out_bias[0]
            else:
                weights[j + 1], biases[j + 1] = out[:, keep], out_bias
    return weights, biases, a, c


def _factor(w, tol):
    """`w = u @ v` with `u` of full column rank and `v` of full row rank, inner size `rank w`."""
    k, k_in = w.shape
    uu, s, vt = np.linalg.svd(w, full_matrices=False)
    r = int(np.sum(s > tol * max(s[0] if s.size else 0.0, np.finfo(w.dtype).tiny)))
    if r == k_in:
        return w, np.eye(k_in, dtype=w.dtype)
    if r == k:
        return np.eye(k, dtype=w.dtype), w
    return uu[:, :r] * s[:r], vt[:r]


def normal_form(model, *, rtol: float | None = None) -> ScalarMLP:
    """An equivalent network with every weight of full rank and no redundant unit (see module doc).

    Host-side (decisions depend on the weights' values): call it on concrete weights, outside
    `jit`. The returned network computes the same function as `model` up to rounding. Its
    `classify` verdict can be sharper than that of `model`, whose verdict is about its architecture
    (a 2 -> 3 -> 1 network with two mirrored units is augmented, yet computes a 2 -> 2 -> 1 network
    without critical points).

    **Arguments:**

    - `model`: a `ScalarMLP` in any layer form, or an `eqx.nn.MLP` with scalar output.
    - `rtol`: relative tolerance for "zero" (singular values, rows, columns, duplicate units),
        default `sqrt(eps)` of the dtype.

    **Returns:** a `ScalarMLP` of `SandwichLayer`s, preceded by an `AffineLayer` projection
    (orthonormal rows) when the first weight has rank below the input size, or by a
    `PreActivationLayer` when the network applies `sigma` to its input first.

    ```python
    import jax.numpy as jnp
    from jaxstat.morse import AffineLayer, PostActivationLayer, ScalarMLP, Tanh, normal_form

    W1 = jnp.array([[1.0, 2.0], [2.0, 4.0], [1.0, 2.0]])     # rank 1, a duplicated row
    b1, w = jnp.array([0.0, 0.5, 0.0]), jnp.array([[1.0, -1.0, 2.0]])
    net = ScalarMLP([PostActivationLayer(W1, b1), AffineLayer(w)], Tanh())
    nf = normal_form(net)     # x -> V x (1 x 2), then 2 units: nf(x) == net(x)
    ```
    """
    model = _as_model(model)
    if not isinstance(model, ScalarMLP):
        raise TypeError(f"normal forms are defined for MLPs, got {type(model).__name__}")
    _concrete(model)
    chain = model._chain()
    act = model.activation
    weights = [np.asarray(w) for w in chain.weights]
    biases = [np.asarray(b) for b in chain.biases]
    a, c = np.asarray(chain.readout), np.asarray(chain.readout_bias)
    dtype = a.dtype
    n0 = chain.in_size
    tol = float(np.finfo(dtype).eps) ** 0.5 if rtol is None else float(rtol)

    weights, biases, a, c = _prune(weights, biases, a, c, act, tol)
    if any(w.shape[0] == 0 for w in weights) or (weights and a.size == 0):
        # Some layer lost every unit: f is the constant c (all contributions were folded into it).
        return ScalarMLP([AffineLayer(jnp.zeros((1, n0), dtype), jnp.array([c], dtype))], act)

    layers = []
    if not weights:  # f(x) = a^T x + c or a^T sigma(x) + c
        cls = PreActivationLayer if chain.input_activation else AffineLayer
        return ScalarMLP([cls(jnp.asarray(a[None, :]), jnp.array([c], dtype))], act)
    u_first, v_first = _factor(weights[0], tol)
    if chain.input_activation:
        layers.append(PreActivationLayer(jnp.asarray(v_first), jnp.zeros(v_first.shape[0], dtype)))
    elif v_first.shape[0] < n0:
        # f(x) = g(P x) with P the orthonormal rows of the SVD of M_1.
        uu, s, vt = np.linalg.svd(weights[0], full_matrices=False)
        r = v_first.shape[0]
        u_first = uu[:, :r] * s[:r]
        layers.append(AffineLayer(jnp.asarray(vt[:r]), jnp.zeros(r, dtype)))
    else:
        u_first = weights[0]  # full column rank: keep the original weight
    us, vs = [u_first], []
    for w in weights[1:]:
        u, v = _factor(w, tol)
        us.append(u)
        vs.append(v)
    vs.append(a[None, :])
    for j, (u, v) in enumerate(zip(us, vs)):
        last = j == len(us) - 1
        out_bias = np.array([c], dtype) if last else np.zeros(v.shape[0], dtype)
        layers.append(
            SandwichLayer(jnp.asarray(u), jnp.asarray(biases[j]), jnp.asarray(v), out_bias)
        )
    return ScalarMLP(layers, act)
