"""Neural ODEs with scalar output: `f(x) = a^T phi_T(W x + b) + c`.

`phi_T` is the time-`T` flow of an autonomous or non-autonomous vector field `F(t, y)` on `R^m`
(`dy/dt = F(t, y)`, `phi_T(y_0) = y(T)`), integrated by diffrax. `W` is `m x n`: the phase space
is augmented when `m > n`.
"""

from collections.abc import Callable

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._activation import as_activation
from ._network import _check_input, _matrix, _vector, AbstractScalarMap
from ._screen import AbstractStartScreen, NeighbourMinima


class MLPField(eqx.Module):
    """The autonomous vector field `F(t, y) = mlp(y)` of an `eqx.nn.MLP` with `m` inputs and
    outputs (diffrax's `(t, y, args)` signature)."""

    mlp: eqx.nn.MLP

    def __call__(self, t, y, args):
        del t, args
        return self.mlp(y)

    def lipschitz(self) -> float:
        """A Lipschitz constant of `F` in `y`: `L = prod_l |W_l|_2 * Lip(sigma)^(depth)`, the
        product of the layers' spectral norms and of the activation's Lipschitz constant
        `sup sigma'` once per hidden layer (host-side: needs concrete weights)."""
        lip_sigma = as_activation(self.mlp.activation).lipschitz
        bound = 1.0
        for i, layer in enumerate(self.mlp.layers):
            bound *= float(np.linalg.norm(np.asarray(layer.weight), 2))
            if i < len(self.mlp.layers) - 1:
                bound *= lip_sigma
        return bound


class NeuralODE(AbstractScalarMap):
    """`f(x) = a^T phi_T(W x + b) + c`, `phi_T` the time-`T` map of `dy/dt = F(t, y)` on `R^m`.

    The time-`T` map is one `diffrax.diffeqsolve`. By default it uses `Tsit5` with 32 constant
    steps: the model is then an exactly smooth function of `x` (an adaptive controller makes the
    number of steps, hence the map, jump at the `rtol` level, which Newton's method can see); pass
    any diffrax solver and step-size controller to change this.

    `find_critical_points` screens its starts on a neural ODE by default (`start_screen`:
    `NeighbourMinima()`, Newton only from the starts where `|grad f|` is smallest among their
    neighbours); pass `screen=AllStarts()` for Newton from every start.

    **Arguments:**

    - `field`: the vector field, `field(t, y, args) -> dy/dt` (an `eqx.Module` or function), or an
        `eqx.nn.MLP` (wrapped as `MLPField`).
    - `weight`: `W`, shape `(m, n)`. `bias`: `b`, shape `(m,)` (default 0).
    - `readout`: `a`, shape `(m,)`. `readout_bias`: `c` (default 0).
    - `t1`: `T > 0`.
    - `solver`, `stepsize_controller`, `dt0`, `max_steps`, `adjoint`: passed to
        `diffrax.diffeqsolve` (`dt0=None` with constant steps means `T / 32`; a JAX array `dt0`
        is traced, so models differing only in their step size share one compilation). The
        adjoint is used when `f` itself is differentiated (e.g. `jax.grad` in training);
        `gradient`, `hessian` and `flow_jacobian` always use forward mode
        (`diffrax.ForwardMode`).

    **Returns:** calling it on `x` of shape `(n,)` gives the scalar `f(x)`.

    ```python
    import equinox as eqx
    import jax.numpy as jnp
    import jax.random as jr
    from jaxstat.morse import NeuralODE

    mlp = eqx.nn.MLP(3, 3, 16, 1, activation=jnp.tanh, key=jr.key(0))
    W, b = jr.normal(jr.key(1), (3, 2)), jnp.zeros(3)
    a, x = jnp.array([1.0, -1.0, 0.5]), jnp.array([0.2, -0.4])
    node = NeuralODE(mlp, W, b, a)          # W: (3, 2), an augmented neural ODE on R^2
    node(x), node.gradient(x), node.hessian(x), node.flow_jacobian(W @ x + b)
    ```
    """

    field: Callable
    weight: Float[Array, "m n"]
    bias: Float[Array, " m"]
    readout: Float[Array, " m"]
    readout_bias: Float[Array, ""]
    t1: float
    solver: dfx.AbstractSolver
    stepsize_controller: dfx.AbstractStepSizeController
    dt0: float | Array | None
    max_steps: int = eqx.field(static=True)
    adjoint: dfx.AbstractAdjoint

    def __init__(
        self,
        field,
        weight,
        bias=None,
        readout=None,
        readout_bias=0.0,
        *,
        t1: float = 1.0,
        solver: dfx.AbstractSolver = dfx.Tsit5(),
        stepsize_controller: dfx.AbstractStepSizeController = dfx.ConstantStepSize(),
        dt0: float | Array | None = None,
        max_steps: int = 4096,
        adjoint: dfx.AbstractAdjoint = dfx.RecursiveCheckpointAdjoint(),
    ):
        if isinstance(field, eqx.nn.MLP):
            field = MLPField(field)
        if not callable(field):
            raise TypeError(f"`field` must be callable as field(t, y, args), got {field!r}")
        self.field = field
        self.weight = _matrix(weight, "weight")
        m = self.weight.shape[0]
        dtype = self.weight.dtype
        self.bias = _vector(bias, m, "bias", dtype)
        if readout is None:
            raise ValueError("`readout` (the vector `a` of shape (m,)) is required")
        self.readout = _vector(readout, m, "readout", dtype)
        self.readout_bias = jnp.asarray(readout_bias, dtype)
        if self.readout_bias.shape != ():
            raise ValueError(f"`readout_bias` must be a scalar, got {self.readout_bias.shape}")
        if not t1 > 0:
            raise ValueError(f"`t1` must be positive, got {t1}")
        self.t1 = float(t1)
        self.solver = solver
        self.stepsize_controller = stepsize_controller
        if dt0 is None and isinstance(stepsize_controller, dfx.ConstantStepSize):
            dt0 = self.t1 / 32
        self.dt0 = dt0
        self.max_steps = int(max_steps)
        self.adjoint = adjoint

    @property
    def in_size(self) -> int:
        return self.weight.shape[1]

    @property
    def start_screen(self) -> AbstractStartScreen:
        """`NeighbourMinima()`: a Newton step solves the flow with both variational equations
        (`m + m n + m n^2` states), the screen one solve with the first (`m + m n`) per start, so
        `find_critical_points` runs Newton only from the starts where `|grad f|` is smallest
        among their neighbours (pass `screen=AllStarts()` for every start)."""
        return NeighbourMinima()

    @property
    def phase_size(self) -> int:
        """The phase-space dimension `m`."""
        return self.weight.shape[0]

    def flow(self, y0: Float[Array, " m"]) -> Float[Array, " m"]:
        """The time-`T` map `phi_T(y0)`."""
        return self._flow(y0, self.adjoint)

    def _flow(self, y0, adjoint):
        if jnp.shape(y0) != (self.phase_size,):
            raise ValueError(f"expected a state of shape ({self.phase_size},), got {y0.shape}")
        sol = dfx.diffeqsolve(
            dfx.ODETerm(self.field),
            self.solver,
            0.0,
            self.t1,
            self.dt0,
            y0,
            stepsize_controller=self.stepsize_controller,
            saveat=dfx.SaveAt(t1=True),
            max_steps=self.max_steps,
            adjoint=adjoint,
        )
        return sol.ys[0]

    def _variational(self, y0, dy0, second: bool):
        """Integrate `y' = F(t, y)` with its first variational equation `Y' = DF(t, y) Y`
        (`Y(0) = dy0`) and, if `second`, the second `Z' = DF Z + D^2F[Y, Y]` (`Z(0) = 0`), in one
        solve. With constant steps an explicit Runge-Kutta method commutes with differentiation,
        so `Y(T)`, `Z(T)` are exactly the first and second derivatives of the discrete map."""
        field = self.field

        def rhs(t, state, args):
            y, dy, ddy = state

            def f(z):
                return field(t, z, args)

            def df(z, v):
                return jax.jvp(f, (z,), (v,))[1]

            def d2f(z, u, v):
                return jax.jvp(lambda w: df(w, u), (z,), (v,))[1]

            out_y = f(y)
            out_dy = jax.vmap(lambda v: df(y, v), in_axes=1, out_axes=1)(dy)
            if not second:
                return out_y, out_dy, None
            # Z is symmetric in (i, j): integrate the pairs i <= j only.
            ii, jj = jnp.triu_indices(dy.shape[1])
            hess_term = jax.vmap(lambda i, j: d2f(y, dy[:, i], dy[:, j]))(ii, jj)
            lin_term = jax.vmap(lambda i, j: df(y, ddy[:, i, j]))(ii, jj)
            upper = (hess_term + lin_term).T
            out_ddy = jnp.zeros_like(ddy).at[:, ii, jj].set(upper).at[:, jj, ii].set(upper)
            return out_y, out_dy, out_ddy

        m, n = dy0.shape
        ddy0 = jnp.zeros((m, n, n), dy0.dtype) if second else None
        sol = dfx.diffeqsolve(
            dfx.ODETerm(rhs),
            self.solver,
            0.0,
            self.t1,
            self.dt0,
            (y0, dy0, ddy0),
            stepsize_controller=self.stepsize_controller,
            saveat=dfx.SaveAt(t1=True),
            max_steps=self.max_steps,
            adjoint=dfx.ForwardMode(),
        )
        y, dy, ddy = sol.ys
        return y[0], dy[0], (None if ddy is None else ddy[0])

    def flow_jacobian(self, y0: Float[Array, " m"]) -> Float[Array, "m m"]:
        """`D phi_T(y0)`, from the variational equation `Y' = DF(t, y) Y`, `Y(0) = I`."""
        if jnp.shape(y0) != (self.phase_size,):
            raise ValueError(f"expected a state of shape ({self.phase_size},), got {y0.shape}")
        return self._variational(y0, jnp.eye(self.phase_size, dtype=y0.dtype), False)[1]

    def value_gradient_hessian(
        self, x: Float[Array, " n"]
    ) -> tuple[Float[Array, ""], Float[Array, " n"], Float[Array, "n n"]]:
        """`(f(x), grad f(x), hess f(x))` from one solve of the flow with its first and second
        variational equations: `grad f = Y(T)^T a`, `hess f = sum_k a_k Z_k(T)` with
        `Y(0) = W`, `Z(0) = 0`."""
        _check_input(x, self.in_size)
        y, dy, ddy = self._variational(self.weight @ x + self.bias, self.weight, True)
        value = self.readout @ y + self.readout_bias
        return value, dy.T @ self.readout, jnp.einsum("k,kij->ij", self.readout, ddy)

    def value_and_gradient(
        self, x: Float[Array, " n"]
    ) -> tuple[Float[Array, ""], Float[Array, " n"]]:
        """`(f(x), grad f(x))` from one solve of the flow with its first variational equation:
        `f = a . y(T) + c`, `grad f = Y(T)^T a` with `Y(0) = W`."""
        _check_input(x, self.in_size)
        y, dy, _ = self._variational(self.weight @ x + self.bias, self.weight, False)
        return self.readout @ y + self.readout_bias, dy.T @ self.readout

    def __call__(self, x: Float[Array, " n"]) -> Float[Array, ""]:
        _check_input(x, self.in_size)
        return self._call(x, self.adjoint)

    def _call(self, x, adjoint):
        return self.readout @ self._flow(self.weight @ x + self.bias, adjoint) + self.readout_bias

    def gradient(self, x: Float[Array, " n"]) -> Float[Array, " n"]:
        """`grad f(x) = W^T D phi_T(W x + b)^T a`, from the first variational equation.

        Its derivative in `x` is `hess f(x)` from the second variational equation (a custom JVP
        rule), so Newton's method on `grad f = 0` costs one variational solve per step. Derivatives
        with respect to the model's parameters go through the solver in forward mode.
        """
        _check_input(x, self.in_size)
        return _node_gradient(self, x)

    def hessian(self, x: Float[Array, " n"]) -> Float[Array, "n n"]:
        """`hess f(x)`, from the second variational equation."""
        return self.value_gradient_hessian(x)[2]


def _gradient_impl(node, x):
    y, dy, _ = node._variational(node.weight @ x + node.bias, node.weight, False)
    return dy.T @ node.readout


@eqx.filter_custom_jvp
def _node_gradient(node, x):
    return _gradient_impl(node, x)


@_node_gradient.def_jvp
def _node_gradient_jvp(primals, tangents):
    node, x = primals
    t_node, t_x = tangents
    if any(leaf is not None for leaf in jax.tree_util.tree_leaves(t_node)):
        # Parameter tangents: differentiate through the solver (forward mode).
        t_node = jax.tree_util.tree_map(
            lambda p, t: None if p is None else (jnp.zeros_like(p) if t is None else t),
            eqx.filter(node, eqx.is_inexact_array),
            t_node,
            is_leaf=lambda v: v is None,
        )
        t_x = jnp.zeros_like(x) if t_x is None else t_x
        return eqx.filter_jvp(_gradient_impl, (node, x), (t_node, t_x))
    _, grad, hess = node.value_gradient_hessian(x)
    t_x = jnp.zeros_like(x) if t_x is None else t_x
    return grad, hess @ t_x


def random_node(
    key: PRNGKeyArray,
    in_size: int,
    phase_size: int,
    *,
    width: int = 16,
    depth: int = 1,
    field_scale: float = 1.0,
    t1: float = 1.0,
    dtype=None,
    **kwargs,
) -> NeuralODE:
    """A random neural ODE on `R^{in_size}` with an `eqx.nn.MLP` tanh vector field on
    `R^{phase_size}`; `W`, `b`, `a` Gaussian (full rank with probability one), `c = 0`.

    `field_scale` multiplies the MLP's last layer (the size of the vector field); extra keyword
    arguments go to `NeuralODE`.

    ```python
    import jax.random as jr
    from jaxstat.morse import random_node

    node = random_node(jr.key(0), 2, 3)    # augmented: critical points exist, generically Morse
    ```
    """
    dtype = jnp.zeros(()).dtype if dtype is None else dtype
    kf, kw, kb, ka = jr.split(key, 4)
    mlp = eqx.nn.MLP(phase_size, phase_size, width, depth, activation=jnp.tanh, key=kf, dtype=dtype)
    mlp = eqx.tree_at(lambda m: m.layers[-1].weight, mlp, mlp.layers[-1].weight * field_scale)
    weight = jr.normal(kw, (phase_size, in_size), dtype) / jnp.sqrt(in_size)
    bias = jr.normal(kb, (phase_size,), dtype)
    readout = jr.normal(ka, (phase_size,), dtype)
    return NeuralODE(mlp, weight, bias, readout, t1=t1, **kwargs)
