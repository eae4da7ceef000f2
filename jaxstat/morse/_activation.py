"""Strictly monotone smooth activations `sigma` with `sigma' > 0` everywhere."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float


class AbstractActivation(eqx.Module):
    """A strictly increasing smooth activation `sigma: R -> R` with `sigma'(z) > 0` for all `z`.

    Strict monotonicity is what the Morse theorems of `jaxstat.morse` rely on: the Jacobian of
    `h -> sigma(h)` is the positive diagonal matrix `diag(sigma'(h))`, invertible everywhere.

    A subclass supplies `__call__`, `derivative` and `derivative_lower_bound` (the minimum of
    `sigma'` over an interval, used by the certified gradient bounds), and may supply a reflection
    `sigma(-z) = s sigma(z) + t` (used to merge mirrored units in normal forms).
    """

    @abc.abstractmethod
    def __call__(self, z: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """`sigma(z)`, elementwise."""

    @abc.abstractmethod
    def derivative(self, z: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """`sigma'(z)`, elementwise (closed form)."""

    @abc.abstractmethod
    def derivative_lower_bound(
        self, lower: Float[ArrayLike, "*shape"], upper: Float[ArrayLike, "*shape"]
    ) -> Float[Array, "*shape"]:
        """`min sigma'(z)` over `lower <= z <= upper`, elementwise (a positive number)."""

    @property
    @abc.abstractmethod
    def lipschitz(self) -> float:
        """`sup_z sigma'(z)`, the Lipschitz constant of `sigma`."""

    def reflection(self) -> tuple[float, float] | None:
        """`(s, t)` with `sigma(-z) = s sigma(z) + t` for all `z`, or `None` if there is none."""
        return None


class Tanh(AbstractActivation):
    """`sigma(z) = tanh(z)`, `sigma'(z) = sech(z)^2` (even, decreasing in `|z|`)."""

    def __call__(self, z):
        return jnp.tanh(z)

    def derivative(self, z):
        # sech^2, not 1 - tanh^2: no cancellation for large |z|.
        return 1 / jnp.cosh(z) ** 2

    def derivative_lower_bound(self, lower, upper):
        return self.derivative(jnp.maximum(jnp.abs(lower), jnp.abs(upper)))

    @property
    def lipschitz(self):
        return 1.0  # sech(0)^2

    def reflection(self):
        return (-1.0, 0.0)


class Sigmoid(AbstractActivation):
    """`sigma(z) = 1 / (1 + exp(-z))`, `sigma'(z) = sigma(z) sigma(-z)` (even, decreasing in
    `|z|`)."""

    def __call__(self, z):
        return jax.nn.sigmoid(z)

    def derivative(self, z):
        return jax.nn.sigmoid(z) * jax.nn.sigmoid(-z)

    def derivative_lower_bound(self, lower, upper):
        return self.derivative(jnp.maximum(jnp.abs(lower), jnp.abs(upper)))

    @property
    def lipschitz(self):
        return 0.25  # sigma(0) sigma(-0)

    def reflection(self):
        return (-1.0, 1.0)


class Softplus(AbstractActivation):
    """`sigma(z) = log(1 + exp(z))`, `sigma'(z) = 1 / (1 + exp(-z))` (increasing)."""

    def __call__(self, z):
        return jax.nn.softplus(z)

    def derivative(self, z):
        return jax.nn.sigmoid(z)

    def derivative_lower_bound(self, lower, upper):
        del upper
        return jax.nn.sigmoid(lower)

    @property
    def lipschitz(self):
        return 1.0  # sup sigmoid


_KNOWN = (Tanh(), Sigmoid(), Softplus())


def as_activation(fn) -> AbstractActivation:
    """Identify a callable (`jnp.tanh`, `jax.nn.sigmoid`, `jax.nn.softplus`, a lambda computing one
    of them, or an `AbstractActivation`) as one of the activations above.

    The callable is identified by its values on a set of test points (agreement to `1e-6`), so a
    wrapper such as `lambda z: jnp.tanh(z)` is recognised too. Anything else raises `ValueError`:
    the Morse theorems need a strictly monotone smooth activation.
    """
    if isinstance(fn, AbstractActivation):
        return fn
    # Evaluated eagerly even under `jit`/`vmap` (e.g. an `eqx.nn.MLP` converted inside a jitted
    # search): the test points are constants.
    with jax.ensure_compile_time_eval():
        z = jnp.linspace(-4.0, 4.0, 17)
        try:
            values = jnp.asarray(jax.vmap(fn)(z))
        except Exception as e:  # noqa: BLE001 - any failure means "not an elementwise activation"
            raise ValueError(f"cannot evaluate the activation {fn!r} elementwise: {e}") from e
        for act in _KNOWN:
            if values.shape == z.shape and bool(jnp.allclose(values, act(z), rtol=1e-6, atol=1e-6)):
                return act
    raise ValueError(
        f"activation {fn!r} is not one of tanh, sigmoid, softplus: `jaxstat.morse` needs a "
        "strictly monotone smooth activation with a known derivative."
    )
