"""Resolvent feed-forward networks with dense Hermitian operators.

A resolvent layer maps an input `x` (shape `(m, ...)`, trailing axes are channels acted on
identically) to

    h = (A - z I)^{-1} (B x + b),       output rho(h),

with `A` a dense Hermitian `N x N` matrix and `z` a complex number; a network is a stack,
`h_l = (A_l - z_l)^{-1} (B_l rho_{l-1}(h_{l-1}) + b_l)`, `h_0 = x`. The layer is *strongly
monotone* (the hypothesis of the equivalence theorems) when `Im z != 0`, where
`|Im <h, (A - z) h>| = |Im z| |h|^2` gives `|(A - z)^{-1}| <= 1 / |Im z|`, or when `z` is real and
below the spectrum, `A - z >= (lambda_min(A) - z) I > 0`.
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
from jaxtyping import Array, ArrayLike, Inexact

from .._checks import is_concrete
from ..stationary import AbstractReadout, Identity
from ._lift import check_hermitian


def dense_solve(M: Inexact[Array, "N N"], Y: Inexact[Array, "N ..."]) -> Inexact[Array, "N ..."]:
    """`M^{-1} Y` for a dense square `M` and node-first `Y`: one LU factorisation (lineax),
    reused for every trailing column."""
    dtype = jnp.result_type(M, Y)
    op = lx.MatrixLinearOperator(M.astype(dtype))
    flat = Y.astype(dtype).reshape(M.shape[0], -1)
    solver = lx.LU()
    state = solver.init(op, {})
    cols = jax.vmap(lambda c: lx.linear_solve(op, c, solver, state=state).value, 1, 1)(flat)
    return cols.reshape(Y.shape)


def hermitian_part(A: Array) -> Array:
    """`(A + A^H) / 2`: equals `A` exactly for an exactly Hermitian `A`, and projects gradients
    (and rounding) onto Hermitian matrices, so training keeps `A` Hermitian."""
    return (A + jnp.conj(A.T)) / 2


class ResolventLayer(eqx.Module):
    """A resolvent layer `x -> rho((A - z I)^{-1} (B x + b))` with a dense Hermitian `A`.

    Strong monotonicity is checked when the values are concrete: `Im z != 0`, or `z` real with
    `A - z I` positive definite. The forward pass uses the Hermitian part of `A` (identical for a
    Hermitian `A`; gradients with respect to `A` are then Hermitian too).

    **Arguments:**

    - `A`: Hermitian, shape `(N, N)`, real or complex.
    - `z`: the spectral parameter, a real or complex scalar.
    - `B`: shape `(N, m)`, mixes the input's `m` leading entries.
    - `b`: broadcast against `B x`, shape `(N, ...)` (as `jaxstat.stationary.NodeSource`).
    - `readout`: a `jaxstat.stationary` readout `rho` (default `Identity`).

    **Example:**

    ```python
    import jax.numpy as jnp
    import jax.random as jr
    import jaxstat.stationary as js
    from jaxstat.equivalence import ResolventLayer

    A = jnp.array([[0.0, 1.0, 0.5], [1.0, 0.0, 0.2], [0.5, 0.2, 0.0]])  # N = 3
    B, b = jr.normal(jr.key(0), (3, 2)), jnp.zeros((3, 1))                # m = 2
    x = jr.normal(jr.key(1), (2, 4))                                      # c = 4
    layer = ResolventLayer(A, 0.3 + 1.0j, B, b, readout=js.ReIm())
    y = layer(x)            # x of shape (m, c): y of shape (N, 2 c)
    ```
    """

    A: Inexact[Array, "N N"]
    z: Inexact[Array, ""]
    B: Inexact[Array, "N m"]
    b: Inexact[Array, "N ..."]
    readout: AbstractReadout

    def __init__(self, A, z, B, b, readout: AbstractReadout | None = None):
        A = check_hermitian(A, name="A")
        B, b, z = jnp.asarray(B), jnp.asarray(b), jnp.asarray(z)
        N = A.shape[0]
        if z.ndim != 0:
            raise ValueError(f"z must be a scalar, got shape {z.shape}")
        if B.ndim != 2 or B.shape[0] != N:
            raise ValueError(
                f"B must have shape ({N}, m) to match A of shape {A.shape}, got {B.shape}"
            )
        if b.ndim == 0 or b.shape[0] != N:
            raise ValueError(f"b must be node-first, shape ({N}, ...), got {b.shape}")
        for name, x in (("z", z), ("B", B), ("b", b)):
            if not jnp.issubdtype(x.dtype, jnp.inexact):
                raise TypeError(f"{name} must be floating point or complex, got {x.dtype}")
        if is_concrete(A, z):
            _check_monotone(A, z)
        self.A, self.z, self.B, self.b = A, z, B, b
        self.readout = Identity() if readout is None else readout

    @property
    def size(self) -> int:
        """`N`, the dimension of the state."""
        return self.A.shape[0]

    def source(self, x: Inexact[ArrayLike, "m ..."]) -> Inexact[Array, "N ..."]:
        """`B x + b`."""
        x = jnp.asarray(x)
        if x.ndim == 0 or x.shape[0] != self.B.shape[1]:
            raise ValueError(
                f"input has shape {x.shape}, B expects {self.B.shape[1]} leading entries"
            )
        return jnp.tensordot(self.B, x, axes=(1, 0)) + self.b

    def operator(self) -> Inexact[Array, "N N"]:
        """`A - z I` (with the Hermitian part of `A`)."""
        A = hermitian_part(self.A)
        return A - self.z * jnp.eye(self.size, dtype=jnp.result_type(A, self.z))

    def state(self, x: Inexact[ArrayLike, "m ..."]) -> Inexact[Array, "N ..."]:
        """`h = (A - z I)^{-1} (B x + b)`."""
        return dense_solve(self.operator(), self.source(x))

    def __call__(self, x: Inexact[ArrayLike, "m ..."]) -> Array:
        """`rho(h)`."""
        return self.readout(self.state(x))


def _check_monotone(A, z) -> None:
    if jnp.imag(z) != 0:
        return
    lam = float(jnp.linalg.eigvalsh(A)[0])
    if not lam > float(jnp.real(z)):
        raise ValueError(
            f"the resolvent layer is not strongly monotone: z = {complex(z)} is real and not below "
            f"the spectrum of A (lambda_min = {lam:.6g}); use Im z != 0 or z < lambda_min(A)"
        )


class ResolventNetwork(eqx.Module):
    """A resolvent feed-forward network `h_l = (A_l - z_l)^{-1} (B_l rho_{l-1}(h_{l-1}) + b_l)`,
    `h_0 = x`, output `rho_L(h_L)`.

    **Arguments:**

    - `layers`: a non-empty sequence of [`jaxstat.equivalence.ResolventLayer`][]s.
    """

    layers: tuple[ResolventLayer, ...]

    def __init__(self, layers: Sequence[ResolventLayer]):
        layers = tuple(layers)
        if not layers:
            raise ValueError("a ResolventNetwork needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, ResolventLayer):
                raise TypeError(f"layer {i} is a {type(layer).__name__}, expected a ResolventLayer")
        self.layers = layers

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def states(self, x: Inexact[ArrayLike, "m ..."]) -> tuple[Array, ...]:
        """`(h_1, ..., h_L)`."""
        out, u = [], jnp.asarray(x)
        for layer in self.layers:
            h = layer.state(u)
            out.append(h)
            u = layer.readout(h)
        return tuple(out)

    def __call__(self, x: Inexact[ArrayLike, "m ..."]) -> Array:
        """`rho_L(h_L)`."""
        return self.layers[-1].readout(self.states(x)[-1])
