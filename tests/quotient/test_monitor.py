"""The training monitor: raw norms move along orbits and quotient ones do not; attention spectra by
hand; charge drift of gradient descent is second order in the step; the orbit/horizontal split
against a dense least-squares peer; sharpness and local entropy on quadratics; cadence in a scan."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
import pytest

import jaxstat.quotient as jq


class Net(eqx.Module):
    attn: eqx.nn.MultiheadAttention
    mlp: eqx.nn.MLP

    def __call__(self, x):
        y = x + self.attn(x, x, x)
        return jax.vmap(self.mlp)(y)


def net(key):
    k1, k2 = jr.split(key)
    return Net(
        eqx.nn.MultiheadAttention(
            2, 6, use_query_bias=True, use_key_bias=True, use_value_bias=True, key=k1
        ),
        eqx.nn.MLP(6, 2, 5, 1, activation=jax.nn.relu, key=k2),
    )


X = jr.normal(jr.key(7), (4, 3, 6))


def loss(model):
    return jnp.mean(jax.vmap(model)(X) ** 2)


def call(obs, model, grads=None, state=None, key=jr.key(0)):
    monitor = jq.Monitor({"x": obs})
    state = monitor.init(model) if state is None else state
    out, state = monitor(state, model, model if grads is None else grads, None, loss, key)
    return out["x"], state


def test_raw_norms_move_and_quotient_norm_does_not():
    model = net(jr.key(0))
    group = jq.symmetry(model)
    moved = group.act(model, group.random_element(jr.key(1), model))
    np.testing.assert_allclose(loss(moved), loss(model), rtol=1e-10)  # same function
    raw, _ = call(jq.RawNorms(), model)
    np.testing.assert_allclose(
        raw["attn.query_proj.weight"], np.linalg.norm(model.attn.query_proj.weight)
    )
    np.testing.assert_allclose(raw["mlp.layers.1.bias"], np.linalg.norm(model.mlp.layers[1].bias))
    leaves = jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))
    np.testing.assert_allclose(
        raw["total"], np.sqrt(sum(np.sum(np.asarray(x) ** 2) for x in leaves))
    )
    q0, _ = call(jq.QuotientNorm(group), model)
    q1, _ = call(jq.QuotientNorm(group), moved)
    np.testing.assert_allclose(q1["quotient"], q0["quotient"], rtol=1e-8)
    assert abs(float(q1["raw"]) - float(q0["raw"])) > 1e-2 * float(q0["raw"])
    assert float(q0["quotient"]) <= float(q0["raw"])
    # the minimum over the orbit: the balanced representative attains it
    canon = group.canonicalize(model)
    np.testing.assert_allclose(q0["quotient"], call(jq.RawNorms(), canon)[0]["total"], rtol=1e-8)


def test_attention_spectra_by_hand():
    """Top singular values of `[W_q,h | b_q,h]^T [W_k,h | b_k,h]` per head, computed in numpy from
    the weights, and invariance under `GL(d_k) x GL(d_v)` and head permutations."""
    model = net(jr.key(2))
    group = jq.symmetry(model)
    out, _ = call(jq.InvariantSpectra(group, top=3), model)
    a = model.attn
    heads = a.num_heads

    def blocks(lin):
        w = np.asarray(lin.weight).reshape(heads, -1, lin.weight.shape[-1])
        b = np.asarray(lin.bias).reshape(heads, -1, 1)
        return np.concatenate([w, b], -1)

    q, k = blocks(a.query_proj), blocks(a.key_proj)
    expect = np.stack([np.linalg.svd(q[h].T @ k[h], compute_uv=False)[:3] for h in range(heads)])
    got = np.asarray(out["0.qk_singular_values"])
    np.testing.assert_allclose(np.sort(got.ravel()), np.sort(expect.ravel()), rtol=1e-10)
    moved = group.act(model, group.random_element(jr.key(3), model))
    out2, _ = call(jq.InvariantSpectra(group, top=3), moved)
    for name in out:
        np.testing.assert_allclose(
            np.sort(np.ravel(out2[name])), np.sort(np.ravel(out[name])), rtol=1e-7, atol=1e-12
        )


def test_charge_drift_is_second_order_in_the_step():
    r"""Noether: `<grad L, v_a> = 0` makes the charges constant along gradient flow, so one
    gradient-descent step of size `eta` changes them by `O(eta^2)`; the drift is measured
    against the previous call (the monitor's state), not against the start."""
    model = net(jr.key(4))
    group = jq.symmetry(model)
    grad = eqx.filter_grad(loss)(model)

    def descend(m, eta):
        return eqx.apply_updates(m, jax.tree.map(lambda g: -eta * g, eqx.filter_grad(loss)(m)))

    drifts = []
    for eta in (1e-2, 5e-3, 2.5e-3):
        _, state = call(jq.Charges(group), model, grad)
        out, _ = call(jq.Charges(group), descend(model, eta), grad, state)
        drifts.append(sum(float(v) for k, v in out.items() if k.startswith("drift")))
    ratios = np.array(drifts[:-1]) / np.array(drifts[1:])
    np.testing.assert_allclose(ratios, 4.0, rtol=0.1)
    # a step that is not a gradient step (a random direction) changes them at first order
    one = descend(model, 1e-2)
    two = descend(one, 1e-2)
    _, s0 = call(jq.Charges(group), model)
    _, s1 = call(jq.Charges(group), one, state=s0)
    out, _ = call(jq.Charges(group), two, state=s1)
    c1, c2 = group.charges(one), group.charges(two)
    expect = np.linalg.norm(np.asarray(c2[0][0]) - np.asarray(c1[0][0]))
    np.testing.assert_allclose(out["drift.0.0"], expect, rtol=1e-10)


@pytest.mark.parametrize(
    "solver",
    [
        lx.SVD(),
        pytest.param(lx.LSMR(rtol=1e-12, atol=1e-12, max_steps=2000), marks=pytest.mark.slow),
    ],
    ids=["svd", "lsmr"],
)
def test_gradient_split_against_dense_least_squares(solver):
    """The gradient of an invariant loss is horizontal; adding orbit directions `V c0` to it gives
    the vertical part `|P_V g|`, computed here by numpy least squares on the dense matrix of
    orbit directions; `total^2 = vertical^2 + horizontal^2`."""
    model = net(jr.key(5))
    group = jq.symmetry(model)
    grad = eqx.filter_grad(loss)(model)
    out, _ = call(jq.GradientSplit(group, solver), model, grad)
    assert float(out["vertical"]) < 1e-8 * float(out["total"])
    dirs = group.orbit_directions(model)
    V = np.concatenate(
        [np.asarray(x).reshape(x.shape[0], -1) for x in jax.tree.leaves(dirs)], axis=1
    ).T  # (n_params, k)
    c0 = np.random.default_rng(0).normal(size=V.shape[1])
    shift = jax.tree.map(lambda d: jnp.tensordot(jnp.asarray(c0), d, axes=1), dirs)
    g = eqx.apply_updates(eqx.filter(grad, eqx.is_inexact_array), shift)
    flat = np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)])
    coef = np.linalg.lstsq(V, flat, rcond=None)[0]
    vertical = np.linalg.norm(V @ coef)
    out, _ = call(jq.GradientSplit(group, solver), model, g)
    np.testing.assert_allclose(out["vertical"], vertical, rtol=1e-7)
    np.testing.assert_allclose(out["horizontal"], np.linalg.norm(flat - V @ coef), rtol=1e-6)
    np.testing.assert_allclose(
        out["total"] ** 2, out["vertical"] ** 2 + out["horizontal"] ** 2, rtol=1e-10
    )


def test_gradient_split_reports_a_solve_that_did_not_converge():
    """A least squares solve stopped early does not stop the run: `converged` is 0 and the split
    is LSMR's last iterate, which still splits orthogonally only approximately; the exact SVD solve
    reports 1. `horizontal` itself still raises by default."""
    model = net(jr.key(5))
    group = jq.symmetry(model)
    dirs = group.orbit_directions(model)
    c0 = jnp.asarray(np.random.default_rng(1).normal(size=jax.tree.leaves(dirs)[0].shape[0]))
    g = jax.tree.map(lambda d: jnp.tensordot(c0, d, axes=1), dirs)  # purely vertical
    stopped = lx.LSMR(rtol=1e-12, atol=1e-12, max_steps=2)
    out, _ = call(jq.GradientSplit(group, stopped), model, g)
    assert float(out["converged"]) == 0.0
    # two Krylov steps leave part of a purely vertical vector unexplained
    assert float(out["horizontal"]) > 1e-6 * float(out["total"])
    exact, _ = call(jq.GradientSplit(group, lx.SVD()), model, g)
    assert float(exact["converged"]) == 1.0
    assert float(exact["horizontal"]) < 1e-8 * float(exact["total"])
    with pytest.raises(Exception, match="maximum number of solver steps"):
        group.horizontal(model, g, solver=stopped)


def test_sharpness_and_local_entropy_on_quadratics():
    r"""`f = 1/2 theta^T A theta`: the top eigenvalue of `A` (Lanczos in `n` steps, and one step
    from the previous call's vector); `grad F = gamma A (A + gamma)^{-1} theta` for the local
    entropy (Gaussian Gibbs measure), within the Monte Carlo error."""
    rng = np.random.default_rng(1)
    B = rng.normal(size=(6, 6))
    A = B @ B.T / 6 + 0.1 * np.eye(6)
    theta = {"w": jnp.asarray(rng.normal(size=(2, 3)))}

    def quad(p):
        x = p["w"].ravel()
        return 0.5 * x @ jnp.asarray(A) @ x

    top = np.linalg.eigvalsh(A)[-1]
    monitor = jq.Monitor({"s": jq.SharpnessEstimate(num_iterations=6)})
    state = monitor.init(theta)
    out, state = monitor(state, theta, theta, None, quad, jr.key(0))
    np.testing.assert_allclose(out["s"]["value"], top, rtol=1e-10)
    warm = jq.Monitor({"s": jq.SharpnessEstimate(num_iterations=1)})
    out, _ = warm(state, theta, theta, None, quad, jr.key(0))
    np.testing.assert_allclose(out["s"]["value"], top, rtol=1e-8)

    gamma, beta = 2.0, 50.0
    obs = jq.LocalEntropyEstimate(gamma, beta, 0.02, num_steps=4000, burn_in=400, num_chains=8)
    out, _ = jq.Monitor({"e": obs})({"e": None}, theta, theta, None, quad, jr.key(3))
    x = np.ravel(theta["w"])
    exact = np.linalg.norm(gamma * A @ np.linalg.solve(A + gamma * np.eye(6), x))
    err = abs(float(out["e"]["grad_norm"]) - exact)
    assert err < 4 * float(out["e"]["stderr"]) + 1e-3, (err, float(out["e"]["stderr"]))


def test_every_in_a_scan():
    """`Every(obs, 3)` inside `lax.scan`: calls 0, 3, 6 evaluate, the others repeat."""
    model = net(jr.key(6))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    monitor = jq.Monitor({"raw": jq.Every(jq.RawNorms(), 3), "now": jq.RawNorms()})

    @jax.jit
    def run(params):
        def step(carry, key):
            params, state = carry
            m = eqx.combine(params, static)
            g = eqx.filter_grad(loss)(m)
            obs, state = monitor(state, m, g, None, loss, key)
            params = jax.tree.map(
                lambda p, d: p - 0.5 * d, params, eqx.filter(g, eqx.is_inexact_array)
            )
            return (params, state), obs

        return jax.lax.scan(step, (params, monitor.init(model)), jr.split(jr.key(0), 7))[1]

    obs = run(params)
    now = np.asarray(obs["now"]["total"])
    assert len(set(np.round(now, 12))) == 7  # the parameters move every step
    np.testing.assert_allclose(obs["raw"]["total"], now[[0, 0, 0, 3, 3, 3, 6]], rtol=1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match="non-empty"):
        jq.Monitor({})
    with pytest.raises(TypeError, match="AbstractObservable"):
        jq.Monitor({"x": jq.RawNorms, "y": 3})
    with pytest.raises(ValueError, match="`k`"):
        jq.Every(jq.RawNorms(), 0)
    with pytest.raises(ValueError, match="`top`"):
        jq.InvariantSpectra(jq.symmetry(net(jr.key(0))), top=0)
    with pytest.raises(ValueError, match="num_iterations"):
        jq.SharpnessEstimate(num_iterations=0)
    model = net(jr.key(0))
    bad = eqx.tree_at(lambda m: m.mlp.layers[0].weight, model, model.mlp.layers[0].weight * jnp.nan)
    monitor = jq.Monitor({"s": jq.SharpnessEstimate(num_iterations=2)})
    f = eqx.filter_jit(lambda m: monitor(monitor.init(model), m, m, None, loss, jr.key(0))[0])
    with pytest.raises(eqx.EquinoxRuntimeError, match="not finite"):
        f(bad)


def test_invariant_spectra_with_dead_units():
    """ReLU units killed as weight decay leaves them (an all-zero outgoing column; an all-zero
    incoming row and bias): the spectra stay finite and constant on the orbit, and the MLP's
    summaries are the norms of its canonical form, `sum = |b_out|^2 + sum_live 2 |w_in_i| |w_out_i|
    + sum_dead |nonzero side|^2 / (geometric mean of its magnitudes)^2`, computed here in numpy."""
    model = net(jr.key(4))
    w1, b1, w2 = model.mlp.layers[0].weight, model.mlp.layers[0].bias, model.mlp.layers[1].weight
    w2, w1, b1 = w2.at[:, 1].set(0.0), w1.at[3].set(0.0), b1.at[3].set(0.0)
    model = eqx.tree_at(
        lambda m: (m.mlp.layers[0].weight, m.mlp.layers[0].bias, m.mlp.layers[1].weight),
        model,
        (w1, b1, w2),
    )
    group = jq.symmetry(model)
    out, _ = call(jq.InvariantSpectra(group, top=2), model)
    assert all(np.all(np.isfinite(v)) for v in out.values())
    moved = group.act(model, group.random_element(jr.key(5), model))
    out2, _ = call(jq.InvariantSpectra(group, top=2), moved)
    for name in out:
        np.testing.assert_allclose(
            np.sort(np.ravel(out2[name])), np.sort(np.ravel(out[name])), rtol=1e-5, atol=1e-6
        )
    w_in = np.concatenate([np.asarray(w1), np.asarray(b1)[:, None]], axis=1)
    w_out = np.asarray(w2).T
    expect = float(np.sum(np.asarray(model.mlp.layers[1].bias) ** 2))
    for i in range(w_in.shape[0]):
        a, b = np.sum(w_in[i] ** 2), np.sum(w_out[i] ** 2)
        if a > 0 and b > 0:
            expect += 2 * np.sqrt(a * b)
        else:
            side = w_in[i] if a > 0 else w_out[i]
            side = side[side != 0]
            expect += np.sum(side**2) / np.exp(2 * np.mean(np.log(np.abs(side))))
    mlp = [v for name, v in out.items() if name.startswith("1.")]
    assert mlp, sorted(out)
    np.testing.assert_allclose(sum(float(v) ** 2 for v in mlp), expect, rtol=1e-5)
