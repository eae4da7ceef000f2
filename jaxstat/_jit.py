"""`jit`: `eqx.filter_jit` that traces named Python-number arguments as arrays."""

import functools
import inspect

import equinox as eqx
import jax.numpy as jnp


def jit(*, arrays: tuple[str, ...] = ()):
    """`eqx.filter_jit`, except that the named arguments are converted to arrays first when they
    are Python numbers: a new viscosity or time then reuses the compiled program instead of
    being baked in as a static value (which `filter_jit` does with Python scalars).

    **Arguments:**

    - `arrays`: the names of the arguments to convert (`bool` values are left static).

    **Example:**

    ```python
    import jax.numpy as jnp
    from jaxstat._jit import jit

    @jit(arrays=("nu",))
    def heat_step(y, nu=0.0):  # nu: a Python float or an array, traced either way
        return y + nu * (jnp.roll(y, 1) - 2 * y + jnp.roll(y, -1))

    heat_step(jnp.ones(8), 0.1), heat_step(jnp.ones(8), 0.2)  # one compilation
    ```
    """

    def decorator(fn):
        jitted = eqx.filter_jit(fn)
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            for name in arrays:
                value = bound.arguments.get(name)
                if isinstance(value, float | int) and not isinstance(value, bool):
                    bound.arguments[name] = jnp.asarray(value, dtype=float)
            return jitted(*bound.args, **bound.kwargs)

        return wrapper

    return decorator
