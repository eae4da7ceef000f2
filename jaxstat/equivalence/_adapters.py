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

import equinox as eqx
import jax.numpy as jnp
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


class FlattenFiber(AbstractReadout):
    """`rho(psi) = inner(psi.reshape(n k, ...))` for sheaf states `psi` of shape `(n, k, ...)`."""

    inner: AbstractReadout

    def __call__(self, psi):
        if psi.ndim < 2:
            raise ValueError(f"sheaf states have shape (n, k, ...), got {psi.shape}")
        return self.inner(psi.reshape((-1,) + psi.shape[2:]))


class Visible(AbstractReadout):
    """`rho(psi) = inner(psi[:num_visible])`: the readout of the visible nodes only (hidden nodes
    are numbered after the visible ones, as [`jaxstat.equivalence.hidden_node_lift`][] does)."""

    num_visible: int = eqx.field(static=True)
    inner: AbstractReadout

    def __call__(self, psi):
        return self.inner(psi[: self.num_visible])
