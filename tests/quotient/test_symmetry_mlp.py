"""Neuron symmetries of MLPs: function invariance, canonical forms, orbit geometry, charges."""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import jaxstat.quotient as q

from ..helpers import tree_allclose


def _mlp(activation, key, depth=2, width=5):
    mlp = eqx.nn.MLP(3, 2, width, depth, activation=activation, key=key, dtype=jnp.float64)
    return mlp


def _inexact(tree):
    return eqx.filter(tree, eqx.is_inexact_array)


def _inner(a, b):
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


X = jr.normal(jr.key(11), (16, 3), jnp.float64)
Y = jnp.sin(X[:, :2]) + X[:, 1:] ** 2


def _loss(model):
    return jnp.mean((jax.vmap(model)(X) - Y) ** 2)


canonicalize = eqx.filter_jit(lambda group, params: group.canonicalize(params))


@pytest.mark.parametrize(
    "activation, scaling",
    [(jax.nn.relu, q.PositiveScaling), (jnp.tanh, q.SignFlip), (jax.nn.softplus, q.NoScaling)],
)
def test_function_unchanged_by_group(activation, scaling, getkey):
    mlp = _mlp(activation, getkey())
    if scaling is q.NoScaling:
        with pytest.warns(UserWarning, match="permutation symmetry only"):
            group = q.symmetry(mlp)
    else:
        group = q.symmetry(mlp)
    assert all(type(u.scaling) is scaling for u in group.units)
    for _ in range(3):
        g = group.random_element(getkey(), mlp)
        moved = group.act(mlp, g)
        assert not tree_allclose(_inexact(moved), _inexact(mlp))
        np.testing.assert_allclose(jax.vmap(moved)(X), jax.vmap(mlp)(X), rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    "activation, depth",
    [
        (jax.nn.relu, 1),  # closed-form balancing
        pytest.param(jax.nn.relu, 2, marks=pytest.mark.slow),  # balancing by sweeps over two layers
        (jnp.tanh, 2),
    ],
)
def test_canonical_form_idempotent_constant_on_orbits_and_invariant(activation, depth, getkey):
    mlp = _mlp(activation, getkey(), depth=depth)
    group = q.symmetry(mlp)
    canon = canonicalize(group, mlp)
    assert tree_allclose(_inexact(canonicalize(group, canon)), _inexact(canon), rtol=0, atol=1e-12)
    np.testing.assert_allclose(jax.vmap(canon)(X), jax.vmap(mlp)(X), rtol=0, atol=1e-10)
    for _ in range(2):
        moved = group.act(mlp, group.random_element(getkey(), mlp))
        # the invariants of a neuron symmetry are its canonical form
        assert tree_allclose(
            _inexact(canonicalize(group, moved)), _inexact(canon), rtol=0, atol=1e-10
        )
    if activation is jax.nn.relu:
        # balanced: |w_in_i| = |w_out_i| for every unit, i.e. all charges vanish
        for charge in group.charges(canon):
            np.testing.assert_allclose(charge, 0.0, atol=1e-12)


def test_orbit_min_norm_closed_form_one_hidden_layer(getkey):
    mlp = _mlp(jax.nn.relu, getkey(), depth=1, width=6)
    group = q.symmetry(mlp)
    w1, b1, w2 = mlp.layers[0].weight, mlp.layers[0].bias, mlp.layers[1].weight
    w_in = jnp.sqrt(jnp.sum(w1**2, axis=1) + b1**2)
    w_out = jnp.sqrt(jnp.sum(w2**2, axis=0))
    exact = 2 * jnp.sum(w_in * w_out) + jnp.sum(mlp.layers[1].bias ** 2)
    orbit_min_norm = eqx.filter_jit(group.orbit_min_norm)
    value = orbit_min_norm(mlp)
    np.testing.assert_allclose(value, exact, rtol=1e-12)
    for _ in range(3):
        moved = group.act(mlp, group.random_element(getkey(), mlp))
        assert q.sqnorm(moved) >= value
        np.testing.assert_allclose(orbit_min_norm(moved), exact, rtol=1e-12)


@pytest.mark.parametrize(
    "quantity", ["orbit_min_norm", pytest.param("canonicalize", marks=pytest.mark.slow)]
)
def test_derivatives_of_the_balanced_point_match_finite_differences(quantity, getkey):
    # Two layers of scaled units: the balancing is iterative (block coordinate sweeps) and its
    # derivatives come from the implicit function theorem on `grad_xi |exp(xi) . theta|^2 = 0`.
    # The norm's gradient is Danskin's (the balancing's own derivative drops out at the minimum);
    # the canonical form's tangent needs the implicit derivative itself.
    mlp = _mlp(jax.nn.relu, getkey(), depth=2, width=5)
    group = q.symmetry(mlp)
    arrays, static = eqx.partition(mlp, eqx.is_inexact_array)
    v = jax.tree.map(lambda x: jr.normal(getkey(), x.shape, x.dtype), arrays)
    along = lambda t: jax.tree.map(lambda x, y: x + t * y, arrays, v)  # noqa: E731
    h = 1e-5
    if quantity == "orbit_min_norm":
        norm = jax.jit(lambda a: group.orbit_min_norm(eqx.combine(a, static)))
        fd = (norm(along(h)) - norm(along(-h))) / (2 * h)
        np.testing.assert_allclose(_inner(jax.jit(jax.grad(norm))(arrays), v), fd, rtol=1e-7)
    else:
        canonical = jax.jit(
            lambda a: eqx.filter(group.canonicalize(eqx.combine(a, static)), eqx.is_inexact_array)
        )
        _, tangent = jax.jit(lambda a, v: jax.jvp(canonical, (a,), (v,)))(arrays, v)
        fd = jax.tree.map(lambda x, y: (x - y) / (2 * h), canonical(along(h)), canonical(along(-h)))
        assert tree_allclose(tangent, fd, rtol=1e-6, atol=1e-8)


def test_orbit_directions_orthogonal_to_gradient_and_horizontal_projection(getkey):
    mlp = _mlp(jax.nn.relu, getkey())
    group = q.symmetry(mlp)
    directions = eqx.filter_jit(group.orbit_directions)(mlp)
    k = jax.tree.leaves(directions)[0].shape[0]
    assert k == 10  # one positive scaling per hidden unit (2 layers of 5)
    grad = eqx.filter_jit(eqx.filter_grad(_loss))(mlp)
    overlaps = jax.vmap(lambda v: _inner(v, _inexact(grad)))(directions)
    scale = jnp.sqrt(_inner(_inexact(grad), _inexact(grad)))
    np.testing.assert_allclose(overlaps / scale, 0.0, atol=1e-12)
    # the horizontal projection removes exactly the vertical part of an arbitrary vector
    horizontal = eqx.filter_jit(group.horizontal)
    noise = jax.tree.map(lambda x: jr.normal(getkey(), x.shape, x.dtype), _inexact(grad))
    h = horizontal(mlp, noise)
    np.testing.assert_allclose(jax.vmap(lambda v: _inner(v, h))(directions), 0.0, atol=1e-10)
    assert tree_allclose(horizontal(mlp, h), h, rtol=0, atol=1e-10)
    assert tree_allclose(horizontal(mlp, _inexact(grad)), _inexact(grad), rtol=0, atol=1e-12)
    # orbit directions are the JVP of the action: compare with a finite difference of act
    eps = 1e-6
    xi = jax.tree.map(jnp.zeros_like, group.algebra_zero(mlp))
    xi = (xi[0].at[2].set(eps), xi[1])
    plus = group.act(mlp, group.chart(mlp, xi))
    xi_m = (xi[0].at[2].set(-eps), xi[1])
    minus = group.act(mlp, group.chart(mlp, xi_m))
    fd = jax.tree.map(lambda a, b: (a - b) / (2 * eps), _inexact(plus), _inexact(minus))
    assert tree_allclose(jax.tree.map(lambda v: v[2], directions), fd, rtol=0, atol=1e-8)


def _flow_charges(mlp, group, t1):
    params, static = eqx.partition(mlp, eqx.is_inexact_array)

    def field(t, p, args):
        return jax.tree.map(jnp.negative, jax.grad(lambda p: _loss(eqx.combine(p, static)))(p))

    sol = dfx.diffeqsolve(
        dfx.ODETerm(field),
        dfx.Tsit5(),
        0.0,
        t1,
        0.01,
        params,
        stepsize_controller=dfx.PIDController(rtol=1e-11, atol=1e-11),
        max_steps=100_000,
    )
    end = eqx.combine(jax.tree.map(lambda x: x[-1], sol.ys), static)
    return group.charges(mlp), group.charges(end), q.sqnorm(end) - q.sqnorm(mlp)


def test_charges_conserved_along_gradient_flow(getkey):
    mlp = _mlp(jax.nn.relu, getkey(), depth=2, width=3)
    group = q.symmetry(mlp)
    before, after, norm_change = eqx.filter_jit(_flow_charges)(mlp, group, 1.0)
    assert abs(norm_change) > 1e-2  # the parameters really move
    for b, a in zip(before, after):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-8)


def test_charges_drift_at_second_order_under_gradient_descent(getkey):
    mlp = _mlp(jax.nn.relu, getkey(), depth=2, width=3)
    group = q.symmetry(mlp)
    params, static = eqx.partition(mlp, eqx.is_inexact_array)
    t_end = 0.5

    @eqx.filter_jit
    def drift(h, n):
        opt = optax.sgd(h)

        def step(carry, _):
            p, state = carry
            grad = jax.grad(lambda p: _loss(eqx.combine(p, static)))(p)
            updates, state = opt.update(grad, state)
            return (optax.apply_updates(p, updates), state), None

        (end, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=n)
        c0 = group.charges(mlp)
        c1 = group.charges(eqx.combine(end, static))
        return jnp.sqrt(sum(jnp.sum((a - b) ** 2) for a, b in zip(c0, c1)))

    ns = [25, 50, 100, 200]
    drifts = [float(drift(t_end / n, n)) for n in ns]
    slope = np.polyfit(np.log([t_end / n for n in ns]), np.log(drifts), 1)[0]
    # per step the drift is h^2 (|g_in|^2 - |g_out|^2); over T/h steps it is O(h)
    assert 0.9 < slope < 1.1, (slope, drifts)


def _kill(mlp, layer, dead_out, dead_in):
    """Unit `dead_out` of hidden layer `layer` made output-dead (its outgoing column zero) and unit
    `dead_in` input-dead (its incoming row and bias zero), as weight decay leaves them."""
    w_next = mlp.layers[layer + 1].weight
    mlp = eqx.tree_at(lambda m: m.layers[layer + 1].weight, mlp, w_next.at[:, dead_out].set(0.0))
    return eqx.tree_at(
        lambda m: (m.layers[layer].weight, m.layers[layer].bias),
        mlp,
        (
            mlp.layers[layer].weight.at[dead_in].set(0.0),
            mlp.layers[layer].bias.at[dead_in].set(0.0),
        ),
    )


def test_dead_unit_orbit_infimum_not_attained(getkey):
    mlp = _kill(_mlp(jax.nn.relu, getkey(), depth=1), 0, dead_out=2, dead_in=4)
    group = q.symmetry(mlp)
    # the orbit's infimum is defined (not attained): a dead unit contributes
    # 2 |w_in| |w_out| = 0, the limit of |g . theta|^2 as its scale goes to 0 or infinity
    value = float(eqx.filter_jit(group.orbit_min_norm)(mlp))
    w1, b1, w2 = mlp.layers[0].weight, mlp.layers[0].bias, mlp.layers[1].weight
    w_in = jnp.sqrt(jnp.sum(w1**2, axis=1) + b1**2)
    w_out = jnp.sqrt(jnp.sum(w2**2, axis=0))
    exact = 2 * jnp.sum(w_in * w_out) + jnp.sum(mlp.layers[1].bias ** 2)
    np.testing.assert_allclose(value, exact, rtol=1e-12)
    live = (w_in > 0) & (w_out > 0)
    balanced = jnp.where(live, jnp.sqrt(w_out / jnp.where(live, w_in, 1)), 1.0)
    for s in (1e2, 1e4):
        # balancing scales for the live units; w_in -> w_in / s on unit 2, w_out -> w_out / s on 4
        scale = balanced.at[2].set(1 / s).at[4].set(s)
        moved = group.act(mlp, ((jnp.arange(w_in.size), scale),))
        slack = (w_in[2] / s) ** 2 + (w_out[4] / s) ** 2
        np.testing.assert_allclose(float(q.sqnorm(moved)), value, atol=2 * float(slack))


@pytest.mark.parametrize(
    "depth",
    [1, pytest.param(2, marks=pytest.mark.slow)],  # 2: balancing sweeps, then LSMR
)
def test_canonical_form_with_dead_units(depth, getkey):
    """Dead units (outgoing or incoming weights all zero) have no balanced representative: the
    canonical form balances the live units, scales each dead unit so that its nonzero weights have
    geometric-mean magnitude 1, and sorts the dead units last. It is idempotent, constant on the
    orbit (random permutations and positive scalings of all units, dead ones included) and
    computes the same function."""
    # live weights ~ 10: larger than the dead units' normalised ones, so sorting by the key alone
    # would not put the dead units last
    mlp = _mlp(jax.nn.relu, getkey(), depth=depth)
    mlp = jax.tree.map(lambda x: 10 * x if eqx.is_inexact_array(x) else x, mlp)
    mlp = _kill(mlp, 0, dead_out=1, dead_in=3)
    group = q.symmetry(mlp)
    canon = canonicalize(group, mlp)
    assert tree_allclose(_inexact(canonicalize(group, canon)), _inexact(canon), rtol=0, atol=1e-12)
    np.testing.assert_allclose(jax.vmap(canon)(X), jax.vmap(mlp)(X), rtol=1e-12, atol=1e-10)
    for _ in range(3):
        moved = group.act(mlp, group.random_element(getkey(), mlp))
        assert tree_allclose(
            _inexact(canonicalize(group, moved)), _inexact(canon), rtol=0, atol=1e-10
        )
    # the dead units are the last two of the first hidden layer: an all-zero incoming row (with
    # its outgoing column normalised) and an all-zero outgoing column (with its incoming row)
    w_in = jnp.concatenate([canon.layers[0].weight, canon.layers[0].bias[:, None]], axis=1)
    w_out = canon.layers[1].weight.T
    kinds = set()
    for i in (-2, -1):
        in_dead, out_dead = bool(jnp.all(w_in[i] == 0)), bool(jnp.all(w_out[i] == 0))
        kinds.add((in_dead, out_dead))
        nonzero = w_out[i] if in_dead else w_in[i]
        np.testing.assert_allclose(jnp.mean(jnp.log(jnp.abs(nonzero))), 0.0, atol=1e-10)
    assert kinds == {(True, False), (False, True)}
    # the live units are balanced: their charges vanish
    live = jnp.arange(w_in.shape[0]) < w_in.shape[0] - 2
    if depth == 1:
        charge = group.charges(canon)[0]
        np.testing.assert_allclose(jnp.where(live, charge, 0.0), 0.0, atol=1e-12)


def test_bad_specifications():
    with pytest.raises(ValueError, match="power"):
        q.Site(lambda p: p["w"], 0, power=2)
    mlp = eqx.nn.MLP(3, 2, 4, 2, scan=True, key=jr.key(0))
    with pytest.raises(ValueError, match="scan=False"):
        q.symmetry(mlp)
    params = {"w1": jnp.ones((3, 2)), "w2": jnp.ones((2, 4))}
    group = q.NeuronSymmetry(
        (q.Units((q.Site(lambda p: p["w1"], 0), q.Site(lambda p: p["w2"], 1))),)
    )
    with pytest.raises(ValueError, match="disagree"):
        group.identity(params)


def test_random_permutations_are_uniform():
    """The permutations of `random_element` are uniform over `S_n`: over 3,000 draws for a
    hidden layer of 3 units, each of the 6 permutations within 5 standard deviations of 500 (a
    stuck or biased draw, e.g. the identity each time, fails), and each a permutation."""
    mlp = eqx.nn.MLP(2, 1, 3, 1, activation=jax.nn.relu, key=jr.key(0))
    group = q.symmetry(mlp)
    perms = jax.jit(jax.vmap(lambda k: group.random_element(k, mlp)[0][0]))(
        jr.split(jr.key(1), 3000)
    )
    perms = np.asarray(perms)
    assert np.all(np.sort(perms, axis=1) == np.arange(3))
    _, counts = np.unique(perms, axis=0, return_counts=True)
    assert len(counts) == 6
    sd = np.sqrt(3000 * (1 / 6) * (5 / 6))
    assert np.all(np.abs(counts - 500) < 5 * sd), counts
