"""Scalar-output networks `f: R^n -> R` in three layer forms.

Layer forms (any strictly monotone smooth `sigma`, see `_activation.py`):

- `PostActivationLayer`: `h -> sigma(W h + b)` (the classical MLP layer),
- `PreActivationLayer`: `h -> W sigma(h) + b`,
- `SandwichLayer`: `h -> W2 sigma(W1 h + b1) + b2` (the general form),
- `AffineLayer`: `h -> W h + b` (a readout, e.g. `w_L^T h` of the classical network).

Every such network is, after merging consecutive affine maps, a *chain*

    s_0 = x  (or sigma(x) when the network starts with an activation),
    s_j = sigma(M_j s_{j-1} + beta_j),   j = 1 .. K,
    f(x) = a^T s_K + c,

with hidden widths `k_j` (the rows of `M_j`). Its gradient is the back-propagated product
`grad f(x) = [D_0] M_1^T D_1 M_2^T D_2 ... M_K^T D_K a` with positive diagonal `D_j = diag
sigma'(M_j s_{j-1} + beta_j)`: the architecture theorems (`classify`) and the normal forms
(`normal_form`) are statements about the merged weights `M_j`, their ranks and the widths `k_j`.
"""

import abc
import functools
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
from jaxtyping import Array, Float, PRNGKeyArray

from .._random import draws
from ._activation import AbstractActivation, as_activation, Tanh
from ._screen import AbstractStartScreen, AllStarts


class AbstractScalarMap(eqx.Module):
    """A smooth scalar map `f: R^n -> R` (a network input-output map) with its derivatives.

    `gradient` and `hessian` default to reverse-over-forward automatic differentiation; a subclass
    may override them (the neural ODE differentiates its time-T map in forward mode).
    """

    @property
    @abc.abstractmethod
    def in_size(self) -> int:
        """The input dimension `n`."""

    @abc.abstractmethod
    def __call__(self, x: Float[Array, " n"]) -> Float[Array, ""]:
        """`f(x)`, a scalar."""

    def gradient(self, x: Float[Array, " n"]) -> Float[Array, " n"]:
        """`grad f(x)`."""
        return jax.grad(self)(x)

    def hessian(self, x: Float[Array, " n"]) -> Float[Array, "n n"]:
        """`hess f(x)` (symmetric)."""
        return jax.jacfwd(self.gradient)(x)

    def value_and_gradient(
        self, x: Float[Array, " n"]
    ) -> tuple[Float[Array, ""], Float[Array, " n"]]:
        """`(f(x), grad f(x))` together (a subclass may share work between them)."""
        return self(x), self.gradient(x)

    def value_gradient_hessian(
        self, x: Float[Array, " n"]
    ) -> tuple[Float[Array, ""], Float[Array, " n"], Float[Array, "n n"]]:
        """`(f(x), grad f(x), hess f(x))` together."""
        return self(x), self.gradient(x), self.hessian(x)

    @property
    def start_screen(self) -> AbstractStartScreen:
        """The start screen `find_critical_points` uses by default (`screen=None`): `AllStarts()`,
        Newton from every start, where a Newton step costs about as much as the gradient that a
        screen needs at every start (a subclass whose Newton steps are dearer may screen)."""
        return AllStarts()


def _check_input(x, n: int) -> None:
    if jnp.shape(x) != (n,):
        raise ValueError(f"expected an input of shape ({n},), got {jnp.shape(x)}")
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise TypeError(f"expected a real floating input, got dtype {jnp.result_type(x)}")


def _matrix(w, name: str):
    w = jnp.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"`{name}` must be a matrix, got shape {w.shape}")
    if not jnp.issubdtype(w.dtype, jnp.floating):
        raise TypeError(f"`{name}` must be a real floating array, got dtype {w.dtype}")
    return w


def _vector(b, n: int, name: str, dtype):
    if b is None:
        return jnp.zeros((n,), dtype)
    b = jnp.asarray(b, dtype)
    if b.shape != (n,):
        raise ValueError(f"`{name}` must have shape ({n},), got {b.shape}")
    return b


# Internal description of a network as a list of operations, merged into a chain.
class _Affine(eqx.Module):
    weight: Array
    bias: Array


class _Act(eqx.Module):
    pass


class AbstractLayer(eqx.Module):
    """One layer `R^{in_size} -> R^{out_size}` of a `ScalarMLP`; the activation is the network's."""

    @property
    @abc.abstractmethod
    def in_size(self) -> int: ...

    @property
    @abc.abstractmethod
    def out_size(self) -> int: ...

    @abc.abstractmethod
    def __call__(
        self, h: Float[Array, " i"], activation: AbstractActivation
    ) -> Float[Array, " o"]: ...

    @abc.abstractmethod
    def _ops(self) -> list: ...


class _WeightBiasLayer(AbstractLayer):
    """A layer with one weight matrix `W` (`out_size x in_size`) and one bias `b` (default 0)."""

    weight: Float[Array, "o i"]
    bias: Float[Array, " o"]

    def __init__(self, weight, bias=None):
        self.weight = _matrix(weight, "weight")
        self.bias = _vector(bias, self.weight.shape[0], "bias", self.weight.dtype)

    @property
    def in_size(self):
        return self.weight.shape[1]

    @property
    def out_size(self):
        return self.weight.shape[0]


class AffineLayer(_WeightBiasLayer):
    """`h -> W h + b` (no activation): the readout `w_L^T h + c` of a classical network."""

    def __call__(self, h, activation):
        return self.weight @ h + self.bias

    def _ops(self):
        return [_Affine(self.weight, self.bias)]


class PostActivationLayer(_WeightBiasLayer):
    """`h -> sigma(W h + b)`: the classical layer (activation after the affine map)."""

    def __call__(self, h, activation):
        return activation(self.weight @ h + self.bias)

    def _ops(self):
        return [_Affine(self.weight, self.bias), _Act()]


class PreActivationLayer(_WeightBiasLayer):
    """`h -> W sigma(h) + b` (activation before the affine map)."""

    def __call__(self, h, activation):
        return self.weight @ activation(h) + self.bias

    def _ops(self):
        return [_Act(), _Affine(self.weight, self.bias)]


class SandwichLayer(AbstractLayer):
    """`h -> W2 sigma(W1 h + b1) + b2`: the general layer form, with an inner width (the rows of
    `W1`) and an outer width (the rows of `W2`)."""

    weight_in: Float[Array, "k i"]
    bias_in: Float[Array, " k"]
    weight_out: Float[Array, "o k"]
    bias_out: Float[Array, " o"]

    def __init__(self, weight_in, bias_in, weight_out, bias_out=None):
        self.weight_in = _matrix(weight_in, "weight_in")
        self.bias_in = _vector(bias_in, self.weight_in.shape[0], "bias_in", self.weight_in.dtype)
        self.weight_out = _matrix(weight_out, "weight_out")
        self.bias_out = _vector(
            bias_out, self.weight_out.shape[0], "bias_out", self.weight_out.dtype
        )
        if self.weight_out.shape[1] != self.weight_in.shape[0]:
            raise ValueError(
                f"`weight_out` has {self.weight_out.shape[1]} columns but `weight_in` has "
                f"{self.weight_in.shape[0]} rows"
            )

    @property
    def in_size(self):
        return self.weight_in.shape[1]

    @property
    def out_size(self):
        return self.weight_out.shape[0]

    @property
    def inner_size(self) -> int:
        return self.weight_in.shape[0]

    def __call__(self, h, activation):
        return self.weight_out @ activation(self.weight_in @ h + self.bias_in) + self.bias_out

    def _ops(self):
        return [
            _Affine(self.weight_in, self.bias_in),
            _Act(),
            _Affine(self.weight_out, self.bias_out),
        ]


class _Chain(eqx.Module):
    """`s_0 = x or sigma(x)`, `s_j = sigma(M_j s_{j-1} + beta_j)`, `f = a^T s_K + c`."""

    input_activation: bool = eqx.field(static=True)
    weights: tuple[Array, ...]
    biases: tuple[Array, ...]
    readout: Array
    readout_bias: Array

    @property
    def in_size(self) -> int:
        return self.weights[0].shape[1] if self.weights else self.readout.shape[0]

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(w.shape[0] for w in self.weights)

    def __call__(self, x, activation):
        s = activation(x) if self.input_activation else x
        for w, b in zip(self.weights, self.biases):
            s = activation(w @ s + b)
        return self.readout @ s + self.readout_bias


def _merge(ops: list) -> _Chain:
    merged = []
    for op in ops:
        if merged and isinstance(op, _Affine) and isinstance(merged[-1], _Affine):
            prev = merged[-1]
            merged[-1] = _Affine(op.weight @ prev.weight, op.weight @ prev.bias + op.bias)
        elif merged and isinstance(op, _Act) and isinstance(merged[-1], _Act):
            raise ValueError(
                "two activations in a row (e.g. a `PostActivationLayer` followed by a "
                "`PreActivationLayer`) compose to `sigma(sigma(.))`, which is not one of the layer "
                "forms; use one layer form throughout or put an affine map in between."
            )
        else:
            merged.append(op)
    input_activation = isinstance(merged[0], _Act)
    if input_activation:
        merged = merged[1:]
    if merged and isinstance(merged[-1], _Affine):
        *merged, last = merged
        readout, readout_bias = last.weight[0], last.bias[0]
    else:
        dtype = merged[-1].weight.dtype if merged else jnp.zeros(()).dtype
        readout, readout_bias = jnp.ones((1,), dtype), jnp.zeros((), dtype)
    weights = tuple(op.weight for op in merged if isinstance(op, _Affine))
    biases = tuple(op.bias for op in merged if isinstance(op, _Affine))
    return _Chain(input_activation, weights, biases, readout, readout_bias)


class ScalarMLP(AbstractScalarMap):
    """A scalar network `f = l_L o ... o l_1`, `l_i` any of the layer forms, one activation `sigma`.

    The classical network,
    `f(x) = w_L^T sigma(W_{L-1} ... sigma(W_1 x + b_1) ...)`, is `PostActivationLayer`s followed by
    an `AffineLayer` readout; `random_mlp` builds each form.

    **Arguments:**

    - `layers`: a sequence of `AbstractLayer`s whose sizes chain, the last one of output size 1.
    - `activation`: an `AbstractActivation` (`Tanh()`, `Sigmoid()`, `Softplus()`) or a callable
        recognised by `as_activation` (`jnp.tanh`, `jax.nn.sigmoid`, `jax.nn.softplus`).

    **Returns:** calling the network on `x` of shape `(n,)` gives the scalar `f(x)`.

    ```python
    import jax.numpy as jnp
    from jaxstat.morse import AffineLayer, PostActivationLayer, ScalarMLP, Tanh

    W1, b1 = jnp.array([[1.0, -0.5], [0.3, 2.0], [-1.0, 1.0]]), jnp.array([0.1, -0.2, 0.3])
    w = jnp.array([1.0, -2.0, 0.5])
    net = ScalarMLP([PostActivationLayer(W1, b1), AffineLayer(w[None, :])], Tanh())
    net(jnp.zeros(2)), net.gradient(jnp.zeros(2)), net.hessian(jnp.zeros(2))
    ```
    """

    layers: tuple[AbstractLayer, ...]
    activation: AbstractActivation

    def __init__(self, layers: Sequence[AbstractLayer], activation=Tanh()):
        layers = tuple(layers)
        if not layers:
            raise ValueError("a ScalarMLP needs at least one layer")
        for layer in layers:
            if not isinstance(layer, AbstractLayer):
                raise TypeError(f"expected `AbstractLayer`s, got {type(layer).__name__}")
        for i, (a, b) in enumerate(zip(layers[:-1], layers[1:])):
            if a.out_size != b.in_size:
                raise ValueError(
                    f"layer {i} has output size {a.out_size} but layer {i + 1} expects {b.in_size}"
                )
        if layers[-1].out_size != 1:
            raise ValueError(f"the last layer must have output size 1, got {layers[-1].out_size}")
        self.layers = layers
        self.activation = as_activation(activation)

    @property
    def in_size(self) -> int:
        return self.layers[0].in_size

    @property
    def widths(self) -> tuple[int, ...]:
        """`(n_0, n_1, ..., 1)`: the input size and each layer's output size."""
        return (self.in_size, *(layer.out_size for layer in self.layers))

    def __call__(self, x: Float[Array, " n"]) -> Float[Array, ""]:
        _check_input(x, self.in_size)
        h = x
        for layer in self.layers:
            h = layer(h, self.activation)
        return h[0]

    def _chain(self) -> _Chain:
        return _merge([op for layer in self.layers for op in layer._ops()])


def from_eqx_mlp(mlp: eqx.nn.MLP) -> ScalarMLP:
    """The `ScalarMLP` computing the same function as an `eqx.nn.MLP` with scalar output.

    `eqx.nn.MLP` is `x -> L_D(sigma(... sigma(L_0 x)))`: a classical network, converted to
    `PostActivationLayer`s and an `AffineLayer` readout. Its activation must be tanh, sigmoid or
    softplus, its final activation the identity and its output size `"scalar"` or `1`.

    ```python
    import equinox as eqx
    import jax.numpy as jnp
    import jax.random as jr
    from jaxstat.morse import from_eqx_mlp

    mlp = eqx.nn.MLP(2, "scalar", 16, 2, activation=jnp.tanh, key=jr.key(0))
    net = from_eqx_mlp(mlp)   # net(x) == mlp(x)
    ```
    """
    if not isinstance(mlp, eqx.nn.MLP):
        raise TypeError(f"expected an `eqx.nn.MLP`, got {type(mlp).__name__}")
    if mlp.in_size == "scalar":
        raise ValueError("input size 'scalar' is not supported; build the MLP with in_size=1")
    if mlp.out_size not in ("scalar", 1):
        raise ValueError(f"the MLP must have scalar output, got out_size={mlp.out_size}")
    if any(eqx.is_array(leaf) for leaf in jtu.tree_leaves(mlp.activation)):
        raise ValueError("learnt (parametrised) activations are not supported")
    final = mlp.final_activation
    if mlp.out_size == 1 and any(eqx.is_array(x) for x in jtu.tree_leaves(final)):
        raise ValueError("learnt final activations are not supported")
    final_fn = final if mlp.out_size == "scalar" else (lambda v: v)
    with jax.ensure_compile_time_eval():  # constants: evaluated eagerly even under `jit`
        z = jnp.linspace(-3.0, 3.0, 13)
        identity = bool(jnp.allclose(jax.vmap(final_fn)(z), z))
    if not identity:
        raise ValueError("the MLP's final activation must be the identity")
    activation = as_activation(mlp.activation)
    if mlp.scan and mlp.depth > 0:
        first, hidden, last = mlp.layers
        linears = [first]
        linears += [jtu.tree_map(lambda a, i=i: a[i], hidden) for i in range(mlp.depth - 1)]
        linears.append(last)
    else:
        linears = list(mlp.layers)
    layers = []
    for i, lin in enumerate(linears):
        weight = lin.weight
        bias = lin.bias if lin.bias is not None else jnp.zeros(weight.shape[0], weight.dtype)
        cls = AffineLayer if i == len(linears) - 1 else PostActivationLayer
        layers.append(cls(weight, bias))
    return ScalarMLP(layers, activation)


def as_scalar_map(fn) -> AbstractScalarMap | None:
    """`fn` as an `AbstractScalarMap` if it is one or an `eqx.nn.MLP`, else `None`."""
    if isinstance(fn, AbstractScalarMap):
        return fn
    if isinstance(fn, eqx.nn.MLP):
        return from_eqx_mlp(fn)
    return None


@functools.partial(jax.jit, static_argnums=(1, 2, 6))
def _gaussian_dense(key, shapes, sandwich, weight_scale, bias_scale, fan_in, dtype):
    """The `(W, b)` of each dense map `(out, in)` in `shapes`: `W ~ N(0, weight_scale^2 / in)`,
    `b ~ N(0, bias_scale^2)`, in one compiled program with one random-bit generation.

    Keys: `split(key, L)`, one per layer; a `SandwichLayer`'s key split again, one per dense map;
    each map's key split into the keys of `W` and `b`. `fan_in` holds each map's `sqrt(in)`.
    (The scales and `fan_in` are arguments, not constants of the program: XLA would fold
    constant arithmetic and could rewrite a division by a square root, rounding the weights
    differently from the same draws made one by one.)"""
    keys = jr.split(key, len(shapes) // 2 if sandwich else len(shapes))
    if sandwich:
        keys = jax.vmap(jr.split)(keys).reshape(-1)
    keys = jax.vmap(jr.split)(keys).reshape(-1)
    values = draws(jr.normal, keys, [s for out, inp in shapes for s in ((out, inp), (out,))], dtype)
    return [
        (values[2 * i] * weight_scale / fan_in[i], values[2 * i + 1] * bias_scale)
        for i in range(len(shapes))
    ]


def random_mlp(
    key: PRNGKeyArray,
    widths: Sequence[int],
    *,
    layer: type[AbstractLayer] = PostActivationLayer,
    activation=Tanh(),
    inner_widths: Sequence[int] | None = None,
    weight_scale: float = 1.0,
    bias_scale: float = 1.0,
    dtype=None,
) -> ScalarMLP:
    """A random `ScalarMLP` with widths `(n_0, n_1, ..., n_{L-1}, 1)` in one layer form.

    Weights are `N(0, weight_scale^2 / fan_in)`, biases `N(0, bias_scale^2)`: Gaussian weights have
    full rank with probability one, the "almost every weight" of the theorems.

    **Arguments:**

    - `key`: a PRNG key.
    - `widths`: `(n_0, ..., 1)`, the input size, the hidden widths and the output size 1.
    - `layer`: the layer form: `PostActivationLayer` (classical; hidden layers `sigma(W h + b)`
        and an `AffineLayer` readout), `PreActivationLayer` or `SandwichLayer` (every layer of
        that form, the last one of output size 1).
    - `activation`: the activation.
    - `inner_widths`: for `SandwichLayer`, the inner width of each layer (default
        `max(in, out)` per layer).
    - `weight_scale`, `bias_scale`: the scales above. `dtype`: default float dtype if `None`.

    **Returns:** a `ScalarMLP`.

    ```python
    import jax.random as jr
    from jaxstat.morse import SandwichLayer, random_mlp

    net = random_mlp(jr.key(0), [2, 16, 16, 1])             # classical tanh network
    net = random_mlp(jr.key(0), [2, 8, 1], layer=SandwichLayer, inner_widths=[6, 4])
    ```
    """
    widths = [int(w) for w in widths]
    if len(widths) < 2 or min(widths) < 1:
        raise ValueError(f"`widths` must be at least two positive sizes, got {widths}")
    if widths[-1] != 1:
        raise ValueError(f"the output width must be 1, got {widths[-1]}")
    if layer not in (PostActivationLayer, PreActivationLayer, SandwichLayer):
        raise TypeError(
            "`layer` must be PostActivationLayer, PreActivationLayer or SandwichLayer, "
            f"got {layer!r}"
        )
    dtype = jnp.zeros(()).dtype if dtype is None else dtype
    pairs = [(out, inp) for inp, out in zip(widths[:-1], widths[1:])]
    if layer is SandwichLayer:
        if inner_widths is None:
            inner_widths = [max(inp, out) for out, inp in pairs]
        if len(inner_widths) != len(pairs):
            raise ValueError(f"need {len(pairs)} inner widths, got {len(inner_widths)}")
        shapes = [
            s
            for (out, inp), inner in zip(pairs, inner_widths)
            for s in ((inner, inp), (out, inner))
        ]
    else:
        shapes = pairs
    dtype = jnp.dtype(dtype)
    fan_in = jnp.sqrt(jnp.asarray([inp for _, inp in shapes], dtype))
    dense = _gaussian_dense(
        key, tuple(shapes), layer is SandwichLayer, weight_scale, bias_scale, fan_in, dtype
    )
    if layer is PostActivationLayer:
        layers = [PostActivationLayer(*wb) for wb in dense[:-1]] + [AffineLayer(*dense[-1])]
    elif layer is PreActivationLayer:
        layers = [PreActivationLayer(*wb) for wb in dense]
    else:
        layers = [SandwichLayer(*dense[i], *dense[i + 1]) for i in range(0, len(dense), 2)]
    return ScalarMLP(layers, activation)
