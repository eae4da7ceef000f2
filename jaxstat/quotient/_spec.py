r"""Permutation specs in git-re-basin's format, for plain parameter pytrees.

A spec names the permutations of a model's units and says which axis of which parameter each acts
on: `axes_to_perm[param] = (perm_or_None for each axis of param)`, and its inverse
`perm_to_axes[perm] = [(param, axis), ...]`. Parameter names are paths in the pytree: dictionary
keys joined by `/` (git-re-basin's flattened Flax names, `"Dense_0/kernel"`), attributes as `.name`
and sequence entries as `[i]` (an equinox MLP's `"layers[0].weight"`).
"""

import functools
from collections.abc import Mapping
from typing import NamedTuple

import jax.tree_util as jtu

from ._symmetry._base import AbstractSymmetry, ProductSymmetry
from ._symmetry._neuron import AbstractScaling, NeuronSymmetry, NoScaling, Site, Units
from ._symmetry._subtree import OnSubtree


class PermutationSpec(NamedTuple):
    """git-re-basin's permutation spec: `perm_to_axes` and `axes_to_perm` (each the inverse of the
    other)."""

    perm_to_axes: dict
    axes_to_perm: dict


def permutation_spec_from_axes_to_perm(axes_to_perm: Mapping) -> PermutationSpec:
    """Complete `axes_to_perm` (`{param: (perm_or_None per axis)}`) with its inverse (each list of
    `(param, axis)` sorted, so that equal specs compare equal)."""
    perm_to_axes: dict = {}
    for param, perms in axes_to_perm.items():
        for axis, perm in enumerate(perms):
            if perm is not None:
                perm_to_axes.setdefault(perm, []).append((param, axis))
    perm_to_axes = {perm: sorted(axes) for perm, axes in perm_to_axes.items()}
    return PermutationSpec(perm_to_axes, dict(axes_to_perm))


def _name(path) -> str:
    out = ""
    for key in path:
        if isinstance(key, jtu.DictKey):
            out += ("/" if out else "") + str(key.key)
        elif isinstance(key, jtu.GetAttrKey):
            out += ("." if out else "") + key.name
        elif isinstance(key, jtu.SequenceKey):
            out += f"[{key.idx}]"
        else:
            out += str(key)
    return out


def _leaves_by_name(params) -> dict:
    return {_name(path): (path, x) for path, x in jtu.tree_flatten_with_path(params)[0]}


def _getter(path):
    def where(params):
        return functools.reduce(lambda node, key: _get(node, key), path, params)

    return where


def _get(node, key):
    if isinstance(key, jtu.DictKey):
        return node[key.key]
    if isinstance(key, jtu.GetAttrKey):
        return getattr(node, key.name)
    if isinstance(key, jtu.SequenceKey):
        return node[key.idx]
    raise TypeError(f"cannot follow the pytree key {key!r}")


def symmetry_from_spec(
    spec: PermutationSpec,
    params,
    scalings: Mapping[str, AbstractScaling] | None = None,
    powers: Mapping[str, Mapping[str, int]] | None = None,
) -> NeuronSymmetry:
    r"""The `NeuronSymmetry` of a permutation spec: one layer of units per permutation, acting on
    the `(param, axis)` pairs of `spec.perm_to_axes` (in the order the permutations are listed).

    **Arguments:** `spec`: a `PermutationSpec`; `params`: the parameters (to resolve names);
    `scalings`: optional per-permutation scalings (`PositiveScaling()`, `SignFlip()`; default
    `NoScaling()`); `powers`: for a scaled permutation, the power of each parameter
    (`{perm: {param: +1 or -1}}`: `+1` incoming, `-1` outgoing).
    """
    leaves = _leaves_by_name(params)
    scalings = scalings or {}
    powers = powers or {}
    units = []
    for perm, axes in spec.perm_to_axes.items():
        sites = []
        for param, axis in axes:
            if param not in leaves:
                raise ValueError(
                    f"the spec names a parameter {param!r} the pytree does not have; its "
                    f"parameters are {sorted(leaves)}"
                )
            path, _ = leaves[param]
            sites.append(Site(_getter(path), axis, powers.get(perm, {}).get(param, 0)))
        scaling = scalings.get(perm, NoScaling())
        if scaling.continuous and not {s.power for s in sites} >= {1, -1}:
            raise ValueError(
                f"the scaled permutation {perm!r} needs `powers` giving +1 (incoming) and -1 "
                "(outgoing) parameters"
            )
        units.append(Units(tuple(sites), scaling, name=perm))
    return NeuronSymmetry(tuple(units))


def _neuron_parts(group: AbstractSymmetry, outer=lambda p: p):
    """`(where_prefix, NeuronSymmetry)` for every neuron factor of a (product of) symmetries."""
    if isinstance(group, NeuronSymmetry):
        return [(outer, group)]
    if isinstance(group, ProductSymmetry):
        return [part for f in group.factors for part in _neuron_parts(f, outer)]
    if isinstance(group, OnSubtree):
        return _neuron_parts(group.inner, lambda p, w=group.where: w(outer(p)))
    return []


def permutation_spec(group: AbstractSymmetry, params) -> PermutationSpec:
    r"""The permutation spec of the unit permutations in `group` (its `NeuronSymmetry` factors), in
    git-re-basin's format, naming every array leaf of `params` (with `None` axes where no
    permutation acts). Permutations are named by their `Units.name`, or `P_k` in order."""
    labelled = jtu.tree_map_with_path(lambda path, _: _name(path), params)
    axes_to_perm = {
        name: [None] * getattr(x, "ndim", 0)
        for name, (_, x) in _leaves_by_name(params).items()
        if hasattr(x, "ndim")
    }
    count = 0
    for outer, neurons in _neuron_parts(group):
        for units in neurons.units:
            perm = units.name if units.name is not None else f"P_{count}"
            count += 1
            for site in units.sites:
                name = site.where(outer(labelled))
                if axes_to_perm[name][site.axis] is not None:
                    raise ValueError(f"two permutations act on axis {site.axis} of {name!r}")
                axes_to_perm[name][site.axis] = perm
    return permutation_spec_from_axes_to_perm({k: tuple(v) for k, v in axes_to_perm.items()})
