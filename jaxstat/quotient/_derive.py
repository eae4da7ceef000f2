r"""The symmetry group of a model, derived from the model itself.

`symmetry(model)` is a `functools.singledispatch` function: it knows `eqx.nn.MLP`,
`eqx.nn.Sequential` chains of `Linear` / `Conv` / elementwise activations / `LayerNorm`,
`eqx.nn.MultiheadAttention`, and any other `eqx.Module` whose fields are such modules (a transformer
block, say): every symmetry of a child is a symmetry of a parent that uses the child only by calling
it, so an unregistered module gets the product of its children's symmetries. A module declares its
own symmetry (for example one coupling two of its children) in either of two ways:

    class Block(eqx.Module):
        ...
        def symmetry(self):                       # honoured by `symmetry(block)`
            return ProductSymmetry((...))

    @jaxstat.quotient.symmetry.register          # or register a rule for the type
    def _(model: Block):
        return ...

Activations are recognised from a small table of properties (`register_activation` extends it):
positively homogeneous (`sigma(s z) = s sigma(z)` for `s > 0`: ReLU, leaky ReLU, identity) gives
positive per-unit scalings, odd (`sigma(-z) = -sigma(z)`: tanh, sin, soft sign, hard tanh) gives
sign flips; any elementwise activation gives unit permutations. An `eqx.nn.MLP` applies its
activation elementwise, so an unknown one falls back to permutations only (with a warning); in a
`Sequential`, an unknown `Lambda` may not be elementwise, so it ends the units before it (with a
warning).

Inside `Sequential`, pooling layers act channel by channel and are positively homogeneous, and
`Lambda(jnp.ravel)` flattens channel-major, so that the units of the convolution before it become
blocks of consecutive inputs of the next `Linear`. A `LayerNorm` with `eps = 0` over the whole
output of the layer before it makes that layer's weights and bias scale invariant
(`NormalisationScaling`); with `eps > 0` the invariance is only approximate and is left out. Units
pass through a `LayerNorm` over their full output (its elementwise weight and bias move with them;
positive scalings then act on the LayerNorm's weight).
"""

import functools
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp

from ._symmetry._attention import AttentionSymmetry
from ._symmetry._base import AbstractSymmetry, ProductSymmetry
from ._symmetry._neuron import (
    AbstractScaling,
    NeuronSymmetry,
    NoScaling,
    PositiveScaling,
    SignFlip,
    Site,
    Units,
)
from ._symmetry._normalisation import NormalisationScaling
from ._symmetry._subtree import OnSubtree


# ---------------------------------------------------------------------------------------------
# Activations

_ACTIVATIONS: dict = {
    jax.nn.relu: PositiveScaling(),
    jax.nn.leaky_relu: PositiveScaling(),
    jax.nn.identity: PositiveScaling(),
    jnp.tanh: SignFlip(),
    jax.nn.hard_tanh: SignFlip(),
    jax.nn.soft_sign: SignFlip(),
    jnp.sin: SignFlip(),
    jnp.arcsinh: SignFlip(),
}


def register_activation(fn, scaling: AbstractScaling) -> None:
    """Declare the scalings an elementwise activation `fn` admits: `PositiveScaling()` when
    `fn(s z) = s fn(z)` for `s > 0`, `SignFlip()` when `fn(-z) = -fn(z)`, `NoScaling()` for
    permutations only (which also silences the warning for an unknown activation)."""
    if not isinstance(scaling, AbstractScaling):
        raise TypeError(f"`scaling` must be an AbstractScaling, got {type(scaling).__name__}")
    _ACTIVATIONS[fn] = scaling


def activation_scaling(fn) -> AbstractScaling | None:
    """The scalings of a known elementwise activation, or `None` when it is unknown.
    `functools.partial` of a known activation (e.g. `leaky_relu` with a slope) keeps its property,
    `eqx.nn.Lambda` and `eqx.nn.Identity` are unwrapped."""
    if isinstance(fn, eqx.nn.Lambda):
        fn = fn.fn
    if isinstance(fn, eqx.nn.Identity):
        return PositiveScaling()
    if isinstance(fn, functools.partial) and not fn.args:
        fn = fn.func
    try:
        return _ACTIVATIONS.get(fn)
    except TypeError:  # unhashable
        return None


def _combine(first: AbstractScaling | None, second: AbstractScaling) -> AbstractScaling:
    """The scalings of a composition of two elementwise maps: the property must hold for both."""
    if first is None:
        return second
    return first if type(first) is type(second) else NoScaling()


# ---------------------------------------------------------------------------------------------
# The dispatcher


def _children(model):
    """`(where, child)` for every field of a module that is a module or a sequence of them."""
    out = []
    for name in getattr(model, "__dataclass_fields__", {}):
        value = getattr(model, name, None)
        if isinstance(value, eqx.Module):
            out.append((lambda m, name=name: getattr(m, name), value))
        elif isinstance(value, (tuple, list)):
            for i, item in enumerate(value):
                if isinstance(item, eqx.Module):
                    out.append((lambda m, name=name, i=i: getattr(m, name)[i], item))
    return out


def _product(parts):
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else ProductSymmetry(tuple(parts))


@functools.singledispatch
def symmetry(model) -> AbstractSymmetry | None:
    r"""The parameter symmetry group of `model`, or `None` when none is known.

    **Arguments:** `model`: an equinox module (or anything a rule is registered for).

    **Returns:** an `AbstractSymmetry` whose methods take the model itself as the parameters.

    ```python
    import equinox as eqx
    import jax
    from jaxstat.quotient import symmetry

    mlp = eqx.nn.MLP(4, 2, 16, 2, activation=jax.nn.relu, key=jax.random.key(0))
    group = symmetry(mlp)    # permutations x positive scalings of 2 x 16 units
    group.canonicalize(mlp)  # the balanced, sorted representative: the same function
    ```
    """
    declared = getattr(model, "symmetry", None)
    if callable(declared):
        out = declared()
        if out is not None and not isinstance(out, AbstractSymmetry):
            raise TypeError(
                f"{type(model).__name__}.symmetry() must return an AbstractSymmetry or None, got "
                f"{type(out).__name__}"
            )
        return out
    if isinstance(model, eqx.Module):
        parts = []
        for where, child in _children(model):
            inner = symmetry(child)
            if inner is not None:
                parts.append(OnSubtree(where, inner))
        return _product(parts)
    return None


@symmetry.register
def _(model: eqx.nn.MLP):
    if model.scan:
        raise ValueError(
            "symmetry(eqx.nn.MLP(..., scan=True)) is not supported: build the MLP with scan=False"
        )
    if model.depth == 0:
        return None
    scaling = activation_scaling(model.activation)
    if scaling is None:
        warnings.warn(
            f"the activation {model.activation!r} is not known to be positively homogeneous or "
            "odd: its units get permutation symmetry only (declare it with "
            "`jaxstat.quotient.register_activation`)",
            stacklevel=2,
        )
        scaling = NoScaling()
    units = []
    for i in range(model.depth):
        sites = [Site(lambda m, i=i: m.layers[i].weight, 0, 1)]
        if model.layers[i].bias is not None:
            sites.append(Site(lambda m, i=i: m.layers[i].bias, 0, 1))
        sites.append(Site(lambda m, i=i: m.layers[i + 1].weight, 1, -1))
        units.append(Units(tuple(sites), scaling, name=f"P_{i}"))
    return NeuronSymmetry(tuple(units))


@symmetry.register
def _(model: eqx.nn.MultiheadAttention):
    return AttentionSymmetry()


@symmetry.register
def _(model: eqx.nn.Sequential):
    return _chain(model, lambda m: m.layers, model.layers)


# ---------------------------------------------------------------------------------------------
# Chains of layers


class _Open(eqx.Module):
    """Units produced by the last affine layer, waiting for the layer that consumes them."""

    sites: tuple  # of Site
    size: int
    scaling: AbstractScaling | None  # None: no activation seen yet (identity)
    raw: bool  # no activation or normalisation since the affine layer
    fixed: bool  # no scaling possible any more
    flat: bool = False  # flattened channel-major: unit i is a block of consecutive entries


# Reshapes that flatten `(C, ...)` channel-major: channel `i` becomes a block of consecutive
# entries.
_FLATTEN = {jnp.ravel}


def _site(where_layer, attr, axis, power):
    return Site(lambda m: getattr(where_layer(m), attr), axis, power)


def _chain(model, where_layers, layers):
    units, extra, pending = [], [], None
    for i, layer in enumerate(layers):
        where = lambda m, i=i: where_layers(m)[i]  # noqa: E731
        if isinstance(layer, (eqx.nn.Linear, eqx.nn.Conv)) and not (
            isinstance(layer, eqx.nn.Conv) and layer.groups != 1
        ):
            closes = pending is not None and layer.weight.ndim >= 2
            if closes and pending.flat:
                closes = (
                    isinstance(layer, eqx.nn.Linear) and layer.weight.shape[1] % pending.size == 0
                )
            elif closes:
                closes = layer.weight.shape[1] == pending.size
            if closes:
                scaling = NoScaling() if pending.fixed else (pending.scaling or PositiveScaling())
                block = layer.weight.shape[1] // pending.size
                out_site = Site(lambda m, where=where: where(m).weight, 1, -1, block)
                units.append(Units(pending.sites + (out_site,), scaling, name=f"P_{len(units)}"))
            if layer.weight.ndim < 2:
                pending = None
                continue
            sites = (_site(where, "weight", 0, 1),)
            if layer.bias is not None:
                sites += (_site(where, "bias", 0, 1),)
            pending = _Open(sites, layer.weight.shape[0], None, True, False)
        elif isinstance(layer, eqx.nn.LayerNorm):
            pending = _through_norm(layer, where, pending, extra)
        elif isinstance(layer, eqx.nn.Lambda) and layer.fn in _FLATTEN:
            if pending is not None:
                pending = _Open(
                    pending.sites, pending.size, pending.scaling, False, pending.fixed, True
                )
        elif isinstance(layer, (eqx.nn.Pool, eqx.nn.AdaptivePool)):
            # pooling acts channel by channel and is positively homogeneous (max, mean)
            if pending is not None and not pending.flat:
                scaling = _combine(pending.scaling, PositiveScaling())
                pending = _Open(pending.sites, pending.size, scaling, False, pending.fixed)
        elif isinstance(layer, (eqx.nn.Lambda, eqx.nn.Identity)) or not isinstance(
            layer, eqx.Module
        ):
            if pending is None:
                continue
            scaling = activation_scaling(layer)
            if scaling is None:
                warnings.warn(
                    f"layer {i} ({layer!r}) is not a known elementwise activation: the units "
                    "before it get no symmetry (declare it with "
                    "`jaxstat.quotient.register_activation`)",
                    stacklevel=3,
                )
                pending = None
                continue
            pending = _Open(
                pending.sites,
                pending.size,
                _combine(pending.scaling, scaling),
                False,
                pending.fixed,
                pending.flat,
            )
        elif isinstance(layer, eqx.nn.Dropout):
            continue
        else:
            inner = symmetry(layer)
            if inner is not None:
                extra.append(OnSubtree(where, inner))
            pending = None
    # Continuous factors first: the neurons' canonical form (sorted by slice norms, which include
    # the layers before a normalisation) must see those layers already normalised.
    norms = [e for e in extra if isinstance(e, NormalisationScaling)]
    others = [e for e in extra if not isinstance(e, NormalisationScaling)]
    return _product(norms + ([NeuronSymmetry(tuple(units))] if units else []) + others)


def _through_norm(layer, where, pending, extra):
    if pending is None:
        return None
    if pending.raw and layer.eps == 0:
        arrays = tuple(s.where for s in pending.sites)
        extra.insert(0, NormalisationScaling(lambda m, arrays=arrays: tuple(a(m) for a in arrays)))
    shape = tuple(layer.shape) if isinstance(layer.shape, tuple) else (layer.shape,)
    if shape[0] != pending.size:  # the normalisation does not cover the unit axis
        return None
    permuted = tuple(Site(s.where, s.axis, 0, s.block) for s in pending.sites)
    if layer.use_weight:
        sites = permuted + (_site(where, "weight", 0, 1),)
        if layer.use_bias:
            sites += (_site(where, "bias", 0, 1),)
        return _Open(sites, pending.size, None, False, False)
    if layer.use_bias:
        permuted += (_site(where, "bias", 0, 0),)
    return _Open(permuted, pending.size, None, False, True)
