"""Sources and readouts that put sheaf layers and hidden-node layers in resolvent coordinates.

A resolvent layer acts on vectors `h` of `N` coordinates (and channels). A sheaf layer's state has
shape `(n, k, ...)` and a layer lifted with hidden nodes has `n_visible + n_hidden` nodes. These
small modules make a `jaxstat.stationary.StationaryLayer` read and write the same coordinates as
the resolvent layer it represents:

- [`jaxstat.equivalence.BlockSource`][]: `s = B x + b` with `B` of shape `(n k, m)`, reshaped to
  `(n, k, ...)`: a general source for fibre `k` (unlike `NodeSource`, which acts as `B (x) I_k`).
- [`jaxstat.equivalence.FlattenFiber`][]: `rho(psi) = rho'(psi.reshape(n k, ...))`.
- [`jaxstat.equivalence.Visible`][]: `rho(psi) = rho'(psi[:n_visible])`, the visible nodes.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Inexact

from ..stationary import AbstractReadout, AbstractSource


class BlockSource(AbstractSource):
    """`s = reshape(B x + b, (n, k, ...))`: node-and-fibre mixing source of a sheaf layer.

    **Arguments:**

    - `B`: shape `(n k, m)`, acts on the `m` leading entries of the input `(m, ...)`.
    - `b`: broadcast against `B x`, shape `(n k, ...)`.
    - `fiber`: `k`.
    """

    B: Inexact[Array, "nk m"]
    b: Inexact[Array, "nk ..."]
    fiber: int = eqx.field(static=True)

    def __init__(self, B, b, fiber: int):
        B, b = jnp.asarray(B), jnp.asarray(b)
        if B.ndim != 2 or B.shape[0] % fiber:
            raise ValueError(f"B must have shape (n * {fiber}, m), got {B.shape}")
        if b.ndim == 0 or b.shape[0] != B.shape[0]:
            raise ValueError(f"b must have shape ({B.shape[0]}, ...), got {b.shape}")
        self.B, self.b, self.fiber = B, b, int(fiber)

    def __call__(self, x):
        if x.ndim == 0 or x.shape[0] != self.B.shape[1]:
            raise ValueError(
                f"input has shape {x.shape}, B expects {self.B.shape[1]} leading entries"
            )
        s = jnp.tensordot(self.B, x, axes=(1, 0)) + self.b
        return s.reshape((s.shape[0] // self.fiber, self.fiber) + s.shape[1:])

    @property
    def matrix(self):
        return self.B

    @property
    def bias(self):
        return self.b

    def node_pattern(self, num_inputs):
        # Row `i k + a` of B belongs to node i: node i reads input j when its k x 1 block
        # B[i k : (i + 1) k, j] is non-zero; weight its Euclidean norm.
        B = np.abs(np.asarray(self.B))
        blocks = np.sqrt(np.sum(B.reshape(-1, self.fiber, B.shape[1]) ** 2, axis=1))
        rows, cols = np.nonzero(blocks)
        return rows, cols, blocks[rows, cols]


class _AbstractWrapper(AbstractReadout):
    """A readout that reshapes or restricts the state (an isometry onto its image) before an
    inner readout (the field `inner` of each final class; not declared here, so that the final
    classes keep their own field order): affine, Lipschitz and parametrised as the inner one."""

    @property
    def is_affine(self) -> bool:
        return self.inner.is_affine

    @property
    def lipschitz(self):
        return self.inner.lipschitz

    @property
    def affine_weights(self):
        return self.inner.affine_weights


class FlattenFiber(_AbstractWrapper):
    """`rho(psi) = inner(psi.reshape(n k, ...))` for sheaf states `psi` of shape `(n, k, ...)`."""

    inner: AbstractReadout

    def __call__(self, psi):
        if psi.ndim < 2:
            raise ValueError(f"sheaf states have shape (n, k, ...), got {psi.shape}")
        return self.inner(psi.reshape((-1,) + psi.shape[2:]))


class Visible(_AbstractWrapper):
    """`rho(psi) = inner(psi[:num_visible])`: the readout of the visible nodes only (hidden nodes
    are numbered after the visible ones, as [`jaxstat.equivalence.hidden_node_lift`][] does)."""

    num_visible: int = eqx.field(static=True)
    inner: AbstractReadout

    def __call__(self, psi):
        return self.inner(psi[: self.num_visible])

    @property
    def is_node_local(self) -> bool:
        # Node i of the output is node i of the state.
        return self.inner.is_node_local


@functools.singledispatch
def flat_readout(readout: AbstractReadout, num_nodes: int, fiber: int):
    """`(readout of the flat states, number of visible flat coordinates)` of a layer's readout:
    the resolvent layer's readout acts on the first `v` coordinates of `psi.reshape(n k, ...)`.
    A sheaf layer (`fiber > 1`) needs a `FlattenFiber` readout; `Visible` restricts to the
    visible nodes; any other readout reads every node of a scalar layer as it is."""
    if fiber > 1:
        raise TypeError(
            "a sheaf layer (fibre > 1) is a resolvent layer in the n k coordinates only "
            "with a FlattenFiber readout (and a BlockSource); got "
            f"{type(readout).__name__}"
        )
    return readout, num_nodes


@flat_readout.register
def _(readout: FlattenFiber, num_nodes, fiber):
    return (readout.inner, num_nodes * fiber) if fiber > 1 else (readout, num_nodes)


@flat_readout.register
def _(readout: Visible, num_nodes, fiber):
    if not 0 < readout.num_visible <= num_nodes:
        raise ValueError(f"Visible({readout.num_visible}) on a graph of {num_nodes} nodes")
    return flat_readout(readout.inner, readout.num_visible, fiber)


def visible_nodes(readout: AbstractReadout, num_nodes: int) -> int:
    """The number of nodes a layer's readout reads (`Visible` hides the others)."""
    return readout.num_visible if isinstance(readout, Visible) else num_nodes
