"""Neural ODEs: time-T maps, variational derivatives, convergence order, critical points (a known
one, a degenerate family, the theorems on random weights), the universal embedding, failure
paths."""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
import scipy.linalg

import jaxstat.morse as jm

from ..helpers import augmented_node, finite_difference_jvp


def shear_field(t, y, args):
    """`F(y) = (-y1, -y2, y1 y2)`: `y1, y2` decay, `y3` integrates their product."""
    return jnp.array([-y[0], -y[1], y[0] * y[1]])


def shear_flow(y, t):
    """The exact flow of `shear_field`."""
    e = np.exp(-t)
    return np.array([y[0] * e, y[1] * e, y[2] + y[0] * y[1] * (1 - e**2) / 2])


W = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.5, -0.3]])
B = jnp.array([0.2, -0.1, 0.05])
A = jnp.array([0.3, -0.2, 1.0])
T = 1.3


def exact_f_grad_hess(x, w=W):
    """Closed forms for `f(x) = a^T phi_T(w x + b)` with the shear flow."""
    w = np.asarray(w)
    y = w @ x + np.asarray(B)
    e, c = np.exp(-T), (1 - np.exp(-2 * T)) / 2
    a = np.asarray(A)
    value = a @ shear_flow(y, T)
    # d/dy of a^T phi_T(y) = (a1 e + a3 c y2, a2 e + a3 c y1, a3); d2/dy2 = a3 c [[0,1],[1,0]]
    gy = np.array([a[0] * e + a[2] * c * y[1], a[1] * e + a[2] * c * y[0], a[2]])
    hy = np.zeros((3, 3))
    hy[0, 1] = hy[1, 0] = a[2] * c
    return value, w.T @ gy, w.T @ hy @ w


def shear_node(steps=32, w=W):
    # A traced step size: nodes differing only in `steps` (or `w`) share one compilation.
    return jm.NeuralODE(shear_field, w, B, A, t1=T, dt0=jnp.asarray(T / steps))


@eqx.filter_jit
def _evaluate(node, x):
    y0 = node.weight @ x + node.bias
    return (
        node(x),
        node.gradient(x),
        node.flow(y0),
        node.value_gradient_hessian(x),
        node.value_and_gradient(x),
    )


def test_exact_flow_derivatives_and_order():
    """Against the closed forms of the shear flow: `f`, `grad f` (first variational equation),
    `hess f` (second) and the time-T map. Tsit5 is (at least) fifth order and the variational
    equations inherit its order: the errors of f, grad f and hess f fall like dt^p with fitted p
    in [4.5, 6.5] (observed about 6 on this problem: Tsit5's fifth-order error constants are small
    here)."""
    x = jnp.array([0.7, -0.4])
    exact = exact_f_grad_hess(np.asarray(x))
    value, grad, flow, (value2, grad2, hess), (value3, grad3) = _evaluate(shear_node(32), x)
    # Tsit5 with 32 steps: local error ~ (h L)^5 ~ 1e-9 on this O(1) field.
    np.testing.assert_allclose(value, exact[0], atol=1e-8)
    np.testing.assert_allclose(grad, exact[1], atol=1e-8)
    np.testing.assert_allclose(hess, exact[2], atol=1e-8)
    y0 = np.asarray(W @ x + B)
    np.testing.assert_allclose(flow, shear_flow(y0, T), atol=1e-8)
    # One solve with the variational equations integrates the same discrete map: same value and
    # gradient to rounding.
    np.testing.assert_allclose(value2, value, rtol=1e-14)
    np.testing.assert_allclose(grad2, grad, rtol=1e-13)
    # So does the solve with the first variational equation only (`value_and_gradient`).
    np.testing.assert_allclose(value3, exact[0], atol=1e-8)
    np.testing.assert_allclose(grad3, exact[1], atol=1e-8)
    np.testing.assert_allclose(value3, value, rtol=1e-14)
    np.testing.assert_allclose(grad3, grad, rtol=1e-13)

    steps = np.array([4, 8, 16])
    errors = []
    for s in steps:
        got = _evaluate(shear_node(int(s)), x)[3]
        errors.append([np.max(np.abs(np.asarray(g) - e)) for g, e in zip(got, exact)])
    errors = np.array(errors)
    for k in range(3):
        slope = -np.polyfit(np.log(steps), np.log(errors[:, k]), 1)[0]
        assert 4.5 <= slope <= 6.5, (k, slope, errors[:, k])


def test_variational_equals_autodiff_of_discrete_map(getkey):
    """With constant steps an explicit RK method commutes with differentiation: the variational
    derivatives are the derivatives of the discrete map (agreement to rounding)."""
    node = jm.random_node(getkey(), 2, 3, width=8, field_scale=2.0)
    x = jr.normal(getkey(), (2,))
    v = jr.normal(getkey(), (2,))

    @eqx.filter_jit
    def everything(node, x, v):
        def f_fwd(z):
            return node._call(z, dfx.ForwardMode())

        def grad_and_value(z):
            g = jax.jacfwd(f_fwd)(z)
            return g, (g, f_fwd(z))

        hess_ad, (grad_ad, value_ad) = jax.jacfwd(grad_and_value, has_aux=True)(x)
        return (
            node.value_gradient_hessian(x),
            (value_ad, grad_ad, hess_ad),
            jax.jvp(node.gradient, (x,), (v,))[1],
        )

    (value, grad, hess), (value_ad, grad_ad, hess_ad), jvp = everything(node, x, v)
    np.testing.assert_allclose(value, value_ad, rtol=1e-14)
    np.testing.assert_allclose(grad, grad_ad, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(hess, hess_ad, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(hess, hess.T, atol=1e-14)
    # The custom JVP of `gradient` is the Hessian.
    np.testing.assert_allclose(jvp, hess @ v, rtol=1e-12)


@pytest.mark.slow
def test_reverse_mode_and_flow_jacobian(getkey):
    """Reverse mode through the default adjoint agrees with the forward-mode gradient; the flow
    Jacobian from the variational equation is the forward-mode Jacobian of the discrete map."""
    node = jm.random_node(getkey(), 2, 3, width=8, field_scale=2.0)
    x = jr.normal(getkey(), (2,))
    y0 = node.weight @ x + node.bias
    np.testing.assert_allclose(jax.grad(node)(x), node.gradient(x), rtol=1e-12)
    jac_ad = jax.jacfwd(lambda y: node._flow(y, dfx.ForwardMode()))(y0)
    np.testing.assert_allclose(node.flow_jacobian(y0), jac_ad, rtol=1e-12, atol=1e-14)


def test_reverse_mode_through_the_solver():
    """Reverse mode (`jax.grad` through `diffeqsolve` with the default adjoint) of the shear
    node's map in `x` and in `W`, against central finite differences of the same discrete map
    (float64, h = eps^(1/3): error ~h^2 ~ 1e-11 relative) and against the closed forms
    `grad_x f = W^T g_y`, `d f / d W = g_y x^T` (`g_y` the gradient of `a^T phi_T` at `y = W x + b`;
    Tsit5 with 32 steps is within ~1e-9 of the exact flow)."""
    node = shear_node()

    def f(x, w):
        return eqx.tree_at(lambda m: m.weight, node, w)(x)

    x = jnp.array([0.4, -0.7])
    grad_x, grad_w = jax.jit(jax.grad(f, argnums=(0, 1)))(x, node.weight)
    f = jax.jit(f)
    dx, dw = jnp.array([0.3, -0.8]), jnp.array([[0.2, -0.1], [0.5, 0.3], [-0.4, 0.7]])
    fd = finite_difference_jvp(f, (x, node.weight), (dx, jnp.zeros_like(dw)))
    np.testing.assert_allclose(grad_x @ dx, fd, rtol=1e-8, atol=1e-10)
    fd = finite_difference_jvp(f, (x, node.weight), (jnp.zeros_like(dx), dw))
    np.testing.assert_allclose(jnp.sum(grad_w * dw), fd, rtol=1e-8, atol=1e-10)
    _, g_x, _ = exact_f_grad_hess(np.asarray(x))
    y = np.asarray(W) @ np.asarray(x) + np.asarray(B)
    e, c = np.exp(-T), (1 - np.exp(-2 * T)) / 2
    g_y = np.array([A[0] * e + A[2] * c * y[1], A[1] * e + A[2] * c * y[0], A[2]])
    np.testing.assert_allclose(grad_x, g_x, atol=1e-8)
    np.testing.assert_allclose(grad_w, np.outer(g_y, np.asarray(x)), atol=1e-8)


def test_gradient_parameter_tangents(getkey):
    """Tangents in the parameters go through the solver: JVP against central differences."""
    node = jm.random_node(getkey(), 2, 3, width=8)
    x = jr.normal(getkey(), (2,))
    dw = jr.normal(getkey(), node.weight.shape)

    def grad_of_weight(w):
        return eqx.tree_at(lambda m: m.weight, node, w).gradient(x)

    jvp = jax.jvp(grad_of_weight, (node.weight,), (dw,))[1]
    fd = finite_difference_jvp(grad_of_weight, (node.weight,), (dw,))
    # Central differences at h = eps^(1/3): error ~h^2 ~ 1e-11 relative.
    np.testing.assert_allclose(jvp, fd, rtol=1e-7, atol=1e-9)


def test_linear_field_flow_jacobian(getkey):
    a_mat = jr.normal(getkey(), (3, 3)) / 2

    def field(t, y, args):
        return a_mat @ y

    node = jm.NeuralODE(field, jnp.eye(3)[:, :2], None, jnp.ones(3), t1=1.0)
    y0 = jr.normal(getkey(), (3,))
    expm = scipy.linalg.expm(np.asarray(a_mat))
    np.testing.assert_allclose(node.flow(y0), expm @ np.asarray(y0), atol=1e-9)
    np.testing.assert_allclose(node.flow_jacobian(y0), expm, atol=1e-9)


def test_mlp_field_jit_vmap(getkey):
    mlp = eqx.nn.MLP(3, 3, 8, 1, activation=jnp.tanh, key=getkey())
    node = jm.NeuralODE(mlp, jr.normal(getkey(), (3, 2)), None, jr.normal(getkey(), (3,)))
    assert isinstance(node.field, jm.MLPField)
    assert node.in_size == 2 and node.phase_size == 3
    xs = jr.normal(getkey(), (3, 2))
    # vmap against a loop of the same jitted function.
    f = eqx.filter_jit(lambda m, x: m.gradient(x))
    batched = eqx.filter_vmap(f, in_axes=(None, 0))(node, xs)
    for x, grad in zip(xs, batched):
        np.testing.assert_allclose(grad, f(node, x), rtol=1e-13)


def test_node_errors():
    with pytest.raises(ValueError, match="readout"):
        jm.NeuralODE(shear_field, W)
    with pytest.raises(ValueError, match="positive"):
        jm.NeuralODE(shear_field, W, None, A, t1=0.0)
    with pytest.raises(ValueError, match="shape"):
        jm.NeuralODE(shear_field, W, None, jnp.ones(2))
    with pytest.raises(TypeError, match="callable"):
        jm.NeuralODE(3.0, W, None, A)
    node = shear_node()
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        node(jnp.ones(3))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        node.flow(jnp.ones(2))


BOX = (-2.0 * jnp.ones(2), 2.0 * jnp.ones(2))


def test_known_critical_point():
    """`f(x) = a^T phi_T(W x + b)` with the shear flow is quadratic in `x` (closed forms in
    `exact_f_grad_hess`): its one critical point is `x* = -H^{-1} grad f(0)`, a saddle with
    hess f = W^T a3 c [[0,1,0],[1,0,0],[0,0,0]] W, c = (1 - exp(-2T)) / 2."""
    node = shear_node()
    assert jm.classify(node).verdict is jm.Verdict.GENERICALLY_MORSE
    _, g0, hess = exact_f_grad_hess(np.zeros(2))
    x_star = -np.linalg.solve(hess, g0)
    np.testing.assert_allclose(exact_f_grad_hess(x_star)[1], 0, atol=1e-14)
    starts = jm.uniform_starts(jr.key(0), *BOX, 64)
    cps = jm.find_critical_points(node, starts, lower=BOX[0], upper=BOX[1], fallback=None)
    d = cps.as_numpy()
    assert int(cps.count) == 1
    # Tsit5 with 32 steps: the discrete map's critical point is within ~1e-9 of the exact one.
    np.testing.assert_allclose(d["points"][0], x_star, atol=1e-8)
    np.testing.assert_allclose(d["eigenvalues"][0], np.linalg.eigvalsh(hess), atol=1e-8)
    assert d["index"][0] == 1 and not d["degenerate"][0]


def test_rank_deficient_known_degenerate_line():
    """The shear neural ODE with a rank-1 `W = w u^T`: `f(x) = h(u . x)` with `h` quadratic, so
    the critical set is the whole line `u . x = s*` and hess f = h'' u u^T has a zero eigenvalue
    there (theorem: `rank W < n`, every critical point degenerate)."""
    w_col, u = np.array([1.0, -0.5, 0.8]), np.array([0.6, 0.8])
    node = shear_node(w=jnp.asarray(np.outer(w_col, u)))
    assert jm.classify(node).verdict is jm.Verdict.ALL_DEGENERATE
    e, c = np.exp(-T), (1 - np.exp(-2 * T)) / 2
    a, b = np.asarray(A), np.asarray(B)
    lin = e * (a[0] * w_col[0] + a[1] * w_col[1]) + a[2] * (
        w_col[2] + c * (b[0] * w_col[1] + b[1] * w_col[0])
    )
    quad = a[2] * c * w_col[0] * w_col[1]  # h(s) = h(0) + lin s + quad s^2
    s_star = -lin / (2 * quad)
    perp = np.array([-u[1], u[0]])
    for t in (-1.0, 0.5):  # two points of the critical line
        x = jnp.asarray(s_star * u / (u @ u) + t * perp)
        _, grad, _, (_, _, hess), _ = _evaluate(node, x)
        # Tsit5, 32 steps: derivatives of the discrete map within ~1e-9 of the exact ones.
        np.testing.assert_allclose(grad, 0.0, atol=1e-8)
        lam = np.linalg.eigvalsh(np.asarray(hess))
        np.testing.assert_allclose(lam, sorted([0.0, 2 * quad * (u @ u)]), atol=1e-8)


def cubic_saddle(x):
    return x[0] ** 3 - 3 * x[0] + x[1] ** 2


def test_universal_embedding():
    """The augmented neural ODE (m = n + 1) represents g exactly, with g's derivatives (hence g's
    critical points: the search on an embedded map is in the notebook)."""
    node = jm.universal_embedding(cubic_saddle, 2)
    assert node.phase_size == 3
    assert jm.classify(node).verdict is jm.Verdict.GENERICALLY_MORSE
    xs = jr.normal(jr.key(1), (16, 2))

    @eqx.filter_jit
    def evaluate(node, xs):
        return jax.vmap(node)(xs), jax.vmap(node.value_gradient_hessian)(xs)

    values, (_, g, h) = evaluate(node, xs)
    # The field is constant along trajectories: one Euler step integrates it exactly.
    np.testing.assert_allclose(values, jax.vmap(cubic_saddle)(xs), rtol=1e-14)
    np.testing.assert_allclose(g, jax.vmap(jax.grad(cubic_saddle))(xs), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(h, jax.vmap(jax.hessian(cubic_saddle))(xs), rtol=1e-13, atol=1e-14)
    with pytest.raises(ValueError, match="scalar"):
        jm.universal_embedding(lambda x: x, 2)
    with pytest.raises(ValueError, match="positive"):
        jm.universal_embedding(cubic_saddle, 0)


@pytest.mark.slow
def test_random_nodes_theorems():
    """Augmented (m = 3 > n = 2, W of full rank): non-degenerate critical points. The same field
    with a rank-1 W: hess f = W^T H W has rank 1, every critical point is degenerate.

    A random tanh field on R^3 with the input padded by a zero coordinate (W close to [I; 0], the
    readout close to e_3, as in benchmarks/bench_morse.py): `random_node`'s Gaussian W, b, a
    rarely leave a critical point in the box (none for keys 0 to 7 at width 8)."""
    node = augmented_node()
    box = (-3.0 * jnp.ones(2), 3.0 * jnp.ones(2))
    starts = jm.uniform_starts(jr.key(0), *box, 256)

    def run(model):
        return jm.find_critical_points(
            model, starts, lower=box[0], upper=box[1], max_points=16, throw=False
        ).as_numpy()

    d = run(node)
    assert jm.classify(node).verdict is jm.Verdict.GENERICALLY_MORSE
    assert len(d["points"]) >= 1 and not d["degenerate"].any()
    w = node.weight
    low = jm.NeuralODE(
        node.field, jnp.outer(w[:, 0], jnp.array([1.0, -0.5])), node.bias, node.readout
    )
    assert jm.classify(low).verdict is jm.Verdict.ALL_DEGENERATE
    d = run(low)
    assert len(d["points"]) >= 1 and d["degenerate"].all() and (d["nullity"] >= 1).all()


def test_fused_variational_equals_autodiff_of_flow(getkey):
    """The one solve of the flow with its first and second variational equations (one nested JVP
    per pair `i <= j`) against forward-mode autodiff of the discrete time-T map, in float64:
    `Y(T) = D phi_T(y0)` (jacfwd) and `Z(T) = D^2 phi_T(y0)` (jacfwd of jacfwd: the Hessian of
    each component),
    with `Y(0) = I` on a 4-dimensional phase space (ten pairs, a non-autonomous field)."""
    mlp = eqx.nn.MLP(5, 4, 8, 1, activation=jnp.tanh, key=getkey())

    def field(t, y, args):
        return 2.0 * mlp(jnp.concatenate([y, jnp.sin(3.0 * t)[None]]))

    node = jm.NeuralODE(field, jnp.eye(4)[:, :2], None, jnp.ones(4), t1=0.7)
    y0 = jr.normal(getkey(), (4,))

    @jax.jit
    def everything(y0):
        def flow(y):
            return node._flow(y, dfx.ForwardMode())

        fused = node._variational(y0, jnp.eye(4, dtype=y0.dtype), True)
        return fused, flow(y0), jax.jacfwd(flow)(y0), jax.jacfwd(jax.jacfwd(flow))(y0)

    (y, dy, ddy), flow, jac, hess = everything(y0)
    np.testing.assert_allclose(y, flow, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(dy, jac, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ddy, hess, rtol=1e-11, atol=1e-13)
