"""The balancing's convergence as a value: `orbit_min_norm_result` and `check_converged`."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import jaxstat.quotient as q


def test_unconverged_balancing_is_reported_and_raised():
    # A ReLU MLP with two hidden layers: two layers of rescaled units, balanced by block
    # coordinate sweeps that converge linearly (tens of sweeps), so one sweep cannot converge.
    mlp = eqx.nn.MLP(3, 2, 5, 2, activation=jax.nn.relu, key=jr.key(1), dtype=jnp.float64)
    group = q.symmetry(mlp)
    assert isinstance(group, q.NeuronSymmetry)
    stopped = dataclasses.replace(group, max_steps=1)
    wrapped = (
        q.ProductSymmetry((stopped,)),
        q.OnSubtree(where=lambda m: m, inner=stopped),
    )
    message = "balancing the positive rescalings .* did not converge within `max_steps` sweeps"

    # Converged (default max_steps): the flag is true and the value is `orbit_min_norm`'s, the
    # minimum over the orbit, below the model's own norm.
    (value, converged), norm = eqx.filter_jit(
        lambda g, m: (g.orbit_min_norm_result(m), g.orbit_min_norm(m))
    )(group, mlp)
    assert bool(converged)
    np.testing.assert_allclose(value, norm, rtol=1e-14)
    assert float(value) < sum(
        np.sum(np.asarray(x) ** 2) for x in jax.tree.leaves(eqx.filter(mlp, eqx.is_inexact_array))
    )
    assert group.check_converged(value, converged) is value

    # One sweep: reported as a value (nothing raised in the program), the norm of a point of the
    # orbit that is not yet the minimum; raised on the host by `check_converged`; the same
    # through a product and a subtree (one program).
    stopped_results = eqx.filter_jit(lambda gs, m: [g.orbit_min_norm_result(m) for g in gs])(
        (stopped, *wrapped), mlp
    )
    for g, (value1, converged1) in zip((stopped, *wrapped), stopped_results):
        assert not bool(converged1) and float(value1) > float(value) * (1 + 1e-9)
        with pytest.raises(eqx.EquinoxRuntimeError, match=message):
            g.check_converged(value1, converged1)
    # Under `jit` (traced flag): raised in the program (as `orbit_min_norm` does).
    traced = eqx.filter_jit(lambda g, m: g.check_converged(*g.orbit_min_norm_result(m)))
    with pytest.raises(eqx.EquinoxRuntimeError, match=message):
        jax.block_until_ready(traced(stopped, mlp))
    # A batch of flags (as `vmap` gives): one failure is enough.
    with pytest.raises(eqx.EquinoxRuntimeError, match=message):
        group.check_converged(value, jnp.array([True, False, True]))


def test_converged_flag_has_no_host_callback():
    # The point of the value: a program computing `orbit_min_norm_result` has no host callback
    # (JAX's persistent compilation cache cannot store one); `orbit_min_norm` keeps its check.
    mlp = eqx.nn.MLP(3, 2, 4, 2, activation=jax.nn.relu, key=jr.key(2), dtype=jnp.float64)
    group = q.symmetry(mlp)
    params, static = eqx.partition(mlp, eqx.is_inexact_array)
    with_result = jax.make_jaxpr(lambda p: group.orbit_min_norm_result(eqx.combine(p, static)))(
        params
    )
    with_check = jax.make_jaxpr(lambda p: group.orbit_min_norm(eqx.combine(p, static)))(params)
    assert "callback" not in str(with_result)
    assert "callback" in str(with_check)
