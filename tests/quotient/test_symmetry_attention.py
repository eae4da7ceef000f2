"""Attention symmetries: GL(d_k) x GL(d_v) per head and head permutations; a transformer block."""

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


D = 6
XS = jr.normal(jr.key(3), (5, D), jnp.float64)
KV = jr.normal(jr.key(4), (7, D), jnp.float64)


def _perturb(model, key, scale=0.3):
    leaves, tree = jax.tree.flatten(eqx.filter(model, eqx.is_inexact_array))
    keys = jr.split(key, len(leaves))
    noisy = [x + scale * jr.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
    return eqx.combine(jax.tree.unflatten(tree, noisy), model)


def _mha(key, bias=True, heads=3, qk=2, vo=3):
    mha = eqx.nn.MultiheadAttention(
        heads,
        D,
        qk_size=qk,
        vo_size=vo,
        use_query_bias=bias,
        use_key_bias=bias,
        use_value_bias=bias,
        use_output_bias=bias,
        key=key,
        dtype=jnp.float64,
    )
    return _perturb(mha, jr.fold_in(key, 1))  # nonzero biases


class Block(eqx.Module):
    """A pre-norm transformer block: `x + attn(ln1(x))`, then `x + mlp(ln2(x))`."""

    ln1: eqx.nn.LayerNorm
    attn: eqx.nn.MultiheadAttention
    ln2: eqx.nn.LayerNorm
    mlp: eqx.nn.MLP

    def __init__(self, key):
        k1, k2 = jr.split(key)
        self.ln1 = eqx.nn.LayerNorm(D, dtype=jnp.float64)
        self.attn = _mha(k1)
        self.ln2 = eqx.nn.LayerNorm(D, dtype=jnp.float64)
        self.mlp = eqx.nn.MLP(D, D, 8, 1, activation=jax.nn.relu, key=k2, dtype=jnp.float64)

    def __call__(self, x):
        h = jax.vmap(self.ln1)(x)
        x = x + self.attn(h, h, h)
        return x + jax.vmap(self.mlp)(jax.vmap(self.ln2)(x))


def _out(model):
    if isinstance(model, Block):
        return model(XS)
    return model(XS, KV, KV)


out = eqx.filter_jit(_out)
act = eqx.filter_jit(lambda group, params, g: group.act(params, g))
canonicalize = eqx.filter_jit(lambda group, params: group.canonicalize(params))
invariants = eqx.filter_jit(lambda group, params: group.invariants(params))


def _models(key):
    return {
        "mha": _mha(key),
        "mha-no-bias": _mha(key, bias=False, heads=2, qk=3, vo=2),
        "block": Block(key),
    }


def _inexact(tree):
    return eqx.filter(tree, eqx.is_inexact_array)


@pytest.mark.parametrize("name", ["mha", "mha-no-bias", "block"])
def test_function_invariants_and_canonical_form(name, getkey):
    model = _models(getkey())[name]
    group = q.symmetry(model)
    if name == "block":
        assert isinstance(group, q.ProductSymmetry) and len(group.factors) == 2
    canon = canonicalize(group, model)
    inv = invariants(group, model)
    np.testing.assert_allclose(out(canon), out(model), rtol=0, atol=1e-10)
    assert tree_allclose(_inexact(canonicalize(group, canon)), _inexact(canon), rtol=0, atol=1e-10)
    for _ in range(2):
        g = group.random_element(getkey(), model)
        moved = act(group, model, g)
        assert not tree_allclose(_inexact(moved), _inexact(model), rtol=0, atol=1e-3)
        np.testing.assert_allclose(out(moved), out(model), rtol=0, atol=1e-10)
        assert tree_allclose(invariants(group, moved), inv, rtol=0, atol=1e-10)
        assert tree_allclose(
            _inexact(canonicalize(group, moved)), _inexact(canon), rtol=0, atol=1e-9
        )


def _blocks_numpy(mha):
    """Per-head augmented `Q_h`, `K_h`, `V_h` and `O_h`, built with numpy."""
    h = mha.num_heads

    def aug(lin):
        w = np.asarray(lin.weight).reshape(h, -1, lin.weight.shape[1])
        if lin.bias is None:
            return w
        return np.concatenate([w, np.asarray(lin.bias).reshape(h, -1, 1)], axis=2)

    o = np.asarray(mha.output_proj.weight).reshape(-1, h, mha.vo_size).transpose(1, 0, 2)
    return aug(mha.query_proj), aug(mha.key_proj), aug(mha.value_proj), o


def test_invariant_products_and_orbit_minimal_norm(getkey):
    mha = _mha(getkey())
    group = q.AttentionSymmetry()
    qh, kh, vh, oh = _blocks_numpy(mha)
    qk = np.einsum("hdi,hdj->hij", qh, kh)  # Q_h^T K_h  (W_Q W_K^T)
    ov = np.einsum("hod,hdj->hoj", oh, vh)  # O_h V_h    (W_V W_O)
    qk_inv, ov_inv = invariants(group, mha)
    order = np.argsort((qk**2).sum((1, 2)) + (ov**2).sum((1, 2)))
    np.testing.assert_allclose(qk_inv, qk[order], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ov_inv, ov[order], rtol=1e-12, atol=1e-12)
    # min over GL of |Q|^2 + |K|^2 is 2 |Q^T K|_* (nuclear norm), likewise for (V, O)
    nuclear = sum(np.linalg.svd(m, compute_uv=False).sum() for m in [*qk, *ov])
    rest = float(q.sqnorm(mha)) - sum(float((x**2).sum()) for x in (qh, kh, vh, oh))
    exact = rest + 2 * nuclear
    value = eqx.filter_jit(group.orbit_min_norm)(mha)
    np.testing.assert_allclose(value, exact, rtol=1e-12)
    np.testing.assert_allclose(q.sqnorm(canonicalize(group, mha)), exact, rtol=1e-12)
    for _ in range(3):
        assert q.sqnorm(act(group, mha, group.random_element(getkey(), mha))) > value


def _loss(block):
    return jnp.mean((block(XS) - jnp.cos(XS)) ** 2)


def test_orbit_directions_orthogonal_to_gradient(getkey):
    block = Block(getkey())
    group = q.symmetry(block)
    directions = eqx.filter_jit(group.orbit_directions)(block)
    k = jax.tree.leaves(directions)[0].shape[0]
    assert k == 3 * (2 * 2 + 3 * 3) + 8  # GL(2) and GL(3) per head, one scaling per MLP unit
    grad = _inexact(eqx.filter_jit(eqx.filter_grad(_loss))(block))
    overlaps = jax.vmap(
        lambda v: sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(grad)))
    )(directions)
    scale = jnp.sqrt(sum(jnp.vdot(a, a) for a in jax.tree.leaves(grad)))
    assert float(jnp.max(jnp.abs(overlaps))) / float(scale) < 1e-12


def _mha_loss(mha):
    return jnp.mean((mha(XS, KV, KV) - jnp.sin(XS)) ** 2)


def test_charges_conserved_along_gradient_flow(getkey):
    mha = _mha(getkey(), heads=2, qk=2, vo=2)
    group = q.AttentionSymmetry()
    params, static = eqx.partition(mha, eqx.is_inexact_array)

    @eqx.filter_jit
    def run(params):
        def field(t, p, args):
            return jax.tree.map(
                jnp.negative, jax.grad(lambda p: _mha_loss(eqx.combine(p, static)))(p)
            )

        sol = dfx.diffeqsolve(
            dfx.ODETerm(field),
            dfx.Tsit5(),
            0.0,
            1.0,
            0.01,
            params,
            stepsize_controller=dfx.PIDController(rtol=1e-11, atol=1e-11),
            max_steps=100_000,
        )
        end = eqx.combine(jax.tree.map(lambda x: x[-1], sol.ys), static)
        return group.charges(eqx.combine(params, static)), group.charges(end), q.sqnorm(end)

    before, after, end_norm = run(params)
    assert abs(float(end_norm - q.sqnorm(mha))) > 1e-2
    assert tree_allclose(after, before, rtol=0, atol=1e-8)


def test_charges_drift_at_second_order_under_gradient_descent(getkey):
    mha = _mha(getkey(), heads=2, qk=2, vo=2)
    group = q.AttentionSymmetry()
    params, static = eqx.partition(mha, eqx.is_inexact_array)
    t_end = 0.5

    @eqx.filter_jit
    def drift(h, n):
        opt = optax.sgd(h)

        def step(carry, _):
            p, state = carry
            grad = jax.grad(lambda p: _mha_loss(eqx.combine(p, static)))(p)
            updates, state = opt.update(grad, state)
            return (optax.apply_updates(p, updates), state), None

        (end, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=n)
        c0, c1 = group.charges(mha), group.charges(eqx.combine(end, static))
        return jnp.sqrt(sum(jnp.sum((a - b) ** 2) for a, b in zip(c0, c1)))

    ns = [25, 50, 100, 200]
    drifts = [float(drift(t_end / n, n)) for n in ns]
    slope = np.polyfit(np.log([t_end / n for n in ns]), np.log(drifts), 1)[0]
    assert 0.9 < slope < 1.1, (slope, drifts)


def test_float32_matches_float64(getkey):
    block = Block(getkey())
    group = q.symmetry(block)
    block32 = jax.tree.map(lambda x: x.astype(jnp.float32) if eqx.is_inexact_array(x) else x, block)
    c64 = _inexact(canonicalize(group, block))
    c32 = _inexact(canonicalize(group, block32))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(c32))
    # float32 round-off (~1e-7) amplified by the SVD's conditioning at these sizes
    assert tree_allclose(c32, c64, rtol=1e-4, atol=1e-4)
