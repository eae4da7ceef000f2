"""Universal embedding: an augmented neural ODE representing a given smooth map exactly.

For `g: R^n -> R`, the neural ODE on `R^{n+1}` with

    W = [I_n; 0],  b = 0,  F(t, (u, v)) = (0, g(u) / T),  a = e_{n+1},  c = 0

has `u(t) = x` constant and `v(T) = int_0^T g(x) / T dt = g(x)`, so `f(x) = a^T phi_T(W x) = g(x)`
for every `x`. The vector field is constant along each trajectory, so any consistent Runge-Kutta
method integrates it exactly; one Euler step is used. The phase space is augmented by one
dimension (`m = n + 1 > n`, `W` of full rank `n`): the architecture in which critical points can
exist. Without augmentation (`m <= n`, full-rank `W`) no map with a critical point can be
represented at all.
"""

from collections.abc import Callable

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp

from ._node import NeuralODE


class IntegratorField(eqx.Module):
    """`F(t, (u, v)) = (0, g(u) / T)` on `R^{n+1}`: the augmented coordinate `v` integrates `g`."""

    g: Callable
    t1: float

    def __call__(self, t, y, args):
        del t, args
        u = y[:-1]
        return jnp.concatenate([jnp.zeros_like(u), jnp.reshape(self.g(u) / self.t1, (1,))])


def universal_embedding(g: Callable, in_size: int, *, t1: float = 1.0, dtype=None) -> NeuralODE:
    """An augmented neural ODE `f` with `f(x) = g(x)` for every `x` (see module docstring).

    **Arguments:**

    - `g`: a JAX function `R^n -> R` (scalar output), e.g. a `ScalarMLP` or any smooth function.
    - `in_size`: `n`.
    - `t1`: the time horizon `T > 0`.
    - `dtype`: of the affine parameters (default float dtype).

    **Returns:** a `NeuralODE` with phase dimension `n + 1`.

    ```python
    import jax.numpy as jnp
    from jaxstat.morse import universal_embedding

    node = universal_embedding(lambda x: jnp.sum(x**2) - x[0] * x[1], 2)
    node(jnp.array([1.0, 2.0]))          # 3.0
    ```
    """
    n = int(in_size)
    if n < 1:
        raise ValueError(f"`in_size` must be positive, got {n}")
    if not callable(g):
        raise TypeError(f"`g` must be callable, got {type(g).__name__}")
    dtype = jnp.zeros(()).dtype if dtype is None else dtype
    out = jax.eval_shape(g, jax.ShapeDtypeStruct((n,), dtype))
    if out.shape != ():
        raise ValueError(f"`g` must map R^{n} to a scalar, got output shape {out.shape}")
    weight = jnp.concatenate([jnp.eye(n, dtype=dtype), jnp.zeros((1, n), dtype)])
    readout = jnp.zeros(n + 1, dtype).at[-1].set(1)
    return NeuralODE(
        IntegratorField(g, float(t1)),
        weight,
        jnp.zeros(n + 1, dtype),
        readout,
        t1=t1,
        solver=dfx.Euler(),
        stepsize_controller=dfx.ConstantStepSize(),
        dt0=float(t1),
    )
