"""Projected gradient flows of edge weights and graphon flows.

Closed-form flows on constant graphons (each objective reduces to a scalar ODE `p' = -DF(p)`),
exact flows with faces (a decoupled target objective), boundary behaviour, invariance under
relabelling and block refinement, the measured time-stepping orders, the measured convergence of
finite flows to the fine-grid graphon flow as `n` grows, and jit/vmap/grad.

Compilation dominates the run time of these small problems, so objectives that differ only in
their coefficients are one `LinearCombination` with array coefficients (one compilation, batched
with `vmap`), and each test compiles as few distinct flows as its claims need.
"""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import jaxstat.graphons as gn

from ..helpers import finite_difference_jvp


EDGE = gn.HomomorphismDensity(gn.Pattern.complete(2))
TRIANGLE = gn.HomomorphismDensity(gn.Pattern.cycle(3))
TS = jnp.linspace(0.0, 1.0, 11)
# Projected Heun with h = 1e-3 (order 2, also across hitting times, see test_time_stepping_orders):
# errors ~1e-7 on these O(1) problems, so closed forms are asserted to 1e-5.
FINE = dict(solver=dfx.Heun(), dt0=1e-3, saveat=dfx.SaveAt(ts=TS))
HEUN = dict(solver=dfx.Heun(), dt0=0.02)


def mix(a, b, c=0.0):
    """`a t(K3) + b t(K2) + c t(K2)^2`; array coefficients, so every mix shares one compilation."""
    coefficients = tuple(jnp.asarray(x, float) for x in (a, b, c))
    return gn.LinearCombination((TRIANGLE, EDGE, EDGE * EDGE), coefficients)


def constant_flows(make_objective, p0, coefficients):
    """Flows from constant graphons p0 (3 blocks), one per coefficient row, batched by vmap."""

    def flow(c, p):
        return gn.gradient_flow(make_objective(*c), jnp.full((3, 3), p), TS[-1], **FINE).ys

    ys = np.asarray(jax.vmap(flow)(jnp.asarray(coefficients, float), jnp.asarray(p0, float)))
    # a constant graphon stays constant
    np.testing.assert_allclose(ys, ys[..., :1, :1] * np.ones((1, 1, 3, 3)), rtol=1e-13, atol=1e-15)
    return ys[..., 0, 0]


def test_closed_form_flows_on_constant_graphons():
    # F = a t(K3) + b t(K2) + c t(K2)^2 on a constant graphon p: DF = 3 a p^2 + b + 2 c p,
    # p' = -(3 a p^2 + b + 2 c p). One compilation for all rows:
    #  1. edge density (a, b, c) = (0, 1, 0): p = max(p0 - t, 0): reaches 0 at t = p0 and stays
    #     (the velocity points out of the box).
    #  2. triangles (1, 0, 0): p = p0 / (1 + 3 p0 t).
    #  3. maximise triangles (-1, 0, 0): p = p0 / (1 - 3 p0 t) until it reaches 1 at
    #     t* = (1 - p0) / (3 p0), then stays at 1.
    #  4. (1, -lam, 0): p' = 3 (s^2 - p^2), s = sqrt(lam / 3): p = s tanh(3 s t + artanh(p0 / s)).
    #  5.-6. boundary: (t(K2) - k)^2 = t(K2)^2 - 2 k t(K2) + const from p0 = 0, DF = 2 (p - k).
    #     With k = 0.3 the velocity 2k points into the box and p = k (1 - exp(-2t)); with
    #     k = -0.2 it points out and p stays exactly 0.
    lam = 0.48
    s = np.sqrt(lam / 3)
    rows = [(0, 1, 0), (1, 0, 0), (-1, 0, 0), (1, -lam, 0), (0, -0.6, 1), (0, 0.4, 1)]
    p = constant_flows(mix, [0.35, 0.6, 0.45, 0.1, 0.0, 0.0], rows)
    t, t_star = np.asarray(TS), (1 - 0.45) / (3 * 0.45)
    np.testing.assert_allclose(p[0], np.maximum(0.35 - t, 0), atol=1e-6)
    assert np.all(p[0][t > 0.36] == 0.0)
    np.testing.assert_allclose(p[1], 0.6 / (1 + 1.8 * t), rtol=1e-5)
    expected = np.where(t < t_star, 0.45 / (1 - 1.35 * np.minimum(t, t_star)), 1.0)
    np.testing.assert_allclose(p[2], expected, rtol=1e-5)
    assert np.all(p[2][t > t_star] == 1.0)
    np.testing.assert_allclose(p[3], s * np.tanh(3 * s * t + np.arctanh(0.1 / s)), rtol=1e-5)
    np.testing.assert_allclose(p[4], 0.3 * (1 - np.exp(-2 * t)), rtol=1e-5, atol=1e-9)
    assert np.all(p[5] == 0.0)


def test_entropy_flow_against_scipy():
    # F = Ent: p' = -log(p / (1 - p)), solved independently by scipy's DOP853 at tight tolerance.
    p = constant_flows(lambda: gn.ScalarEntropy(), [0.05], [()])[0]
    ref = solve_ivp(
        lambda t, p: -np.log(p / (1 - p)),
        (0, 1),
        [0.05],
        t_eval=TS,
        rtol=1e-12,
        atol=1e-12,
        method="DOP853",
    )
    np.testing.assert_allclose(p, ref.y[0], rtol=1e-5)


def target_problem():
    """F(W) = 1/2 ||W - T||^2 for a symmetric target T partly outside [0, 1]: DF = W - T, entries
    decouple, and the projected flow is w(t) = clip(T + (w0 - T) e^{-t}, 0, 1) (each unconstrained
    path is monotone, so it is stopped at the first face it meets)."""
    T = jnp.array(
        [[1.6, -0.5, 0.5, 1.2], [-0.5, 0.3, 2.0, 0.7], [0.5, 2.0, -1.0, 0.0], [1.2, 0.7, 0.0, 0.4]]
    )
    # on faces: (0, 1) at 0 with T < 0 (stays), (1, 2) at 1 with T > 1 (stays), (2, 3) at 1 with
    # T = 0 (leaves), (1, 1) at 0 with T = 0.3 (leaves); (0, 0) and (2, 2) reach a face later.
    A0 = jnp.array(
        [[0.5, 0.0, 0.2, 0.9], [0.0, 0.0, 1.0, 0.1], [0.2, 1.0, 0.6, 1.0], [0.9, 0.1, 1.0, 0.4]]
    )
    F = gn.CustomObjective(lambda W: 0.5 * W.sizes @ (W.values - T) ** 2 @ W.sizes)

    def exact(t):
        return jnp.clip(T + (A0 - T) * jnp.exp(-t), 0, 1)

    return F, A0, T, exact


def test_target_flow_exact_with_faces():
    # The default adaptive scheme (projected Tsit5, PID controller at rtol = atol = 1e-8): the
    # controller, fed the wrapped solver's error estimate, shrinks the steps around the hitting
    # times, so the clipped dense output is accurate between steps too.
    F, A0, T, exact = target_problem()
    np.testing.assert_allclose(gn.derivative_kernel(F, A0), A0 - T, rtol=1e-13)
    saveat = dfx.SaveAt(subs=[dfx.SubSaveAt(ts=TS), dfx.SubSaveAt(steps=True)])
    controller = dfx.PIDController(rtol=1e-8, atol=1e-8)
    sol = gn.gradient_flow(F, A0, TS[-1], saveat=saveat, stepsize_controller=controller)
    ys, steps = (np.asarray(y) for y in sol.ys)
    steps = steps[: int(sol.stats["num_accepted_steps"])]
    # every step and the clipped dense output stay in the box
    assert np.all((ys >= 0) & (ys <= 1)) and np.all((steps >= 0) & (steps <= 1))
    # global error ~ tolerance (measured 1e-9 at 1e-8): asserted to 1e-6
    np.testing.assert_allclose(ys, jax.vmap(exact)(TS), atol=1e-6)
    assert np.all(ys[:, 0, 1] == 0.0) and np.all(ys[:, 1, 2] == 1.0)  # outward: stays
    assert np.all(ys[1:, 2, 3] < 1.0) and np.all(ys[1:, 1, 1] > 0.0)  # inward: leaves at once
    assert ys[-1, 0, 0] == 1.0 and ys[-1, 2, 2] == 0.0  # reached a face and stopped there


def test_projected_gradient_is_scaled_edge_gradient(getkey):
    # dA/dt = -n^2 grad_A F(W_A), grad_A over symmetric matrices = sym of the entrywise gradient.
    n = 5
    A = jr.uniform(getkey(), (n, n), minval=0.1, maxval=0.9)
    A = (A + A.T) / 2
    F = TRIANGLE - 0.2 * EDGE + 0.1 * gn.ScalarEntropy()
    g = jax.grad(lambda a: F(gn.StepGraphon(a, check=False)))(A)
    np.testing.assert_allclose(gn.projected_gradient(F, A), -(n**2) * (g + g.T) / 2, rtol=1e-12)
    # on the faces the outward components are removed
    V = jnp.array([[-1.0, 2.0], [2.0, 3.0]])
    P = gn.tangent_cone_projection(jnp.array([[0.0, 1.0], [1.0, 0.5]]), V)
    np.testing.assert_array_equal(P, [[0.0, 0.0], [0.0, 3.0]])


A0_SMOOTH = gn.discretise(gn.FunctionGraphon(lambda x, y: 0.3 + 0.5 * jnp.sin(3 * x * y) ** 2), 4)


@pytest.mark.parametrize("problem", ["smooth", "faces"])
def test_time_stepping_orders(problem):
    # Fit the slope of log(max error at t = 1) against log(dt). Projected Euler: order 1;
    # projected Heun: order 2, also when weights reach the faces 0 and 1 ("faces": at t = 1, 3
    # weights sit at 0 and 8 at 1). Bands: +-0.15 for the smooth problem, +-0.3 with faces (the
    # error constant changes with where the hitting times fall inside the steps).
    A0 = A0_SMOOTH.values
    F = mix(1.0, -0.3) if problem == "smooth" else mix(-1.0, 0.7)
    tight = dfx.PIDController(rtol=1e-12, atol=1e-12)
    ref = gn.gradient_flow(F, A0, 1.0, stepsize_controller=tight, max_steps=10**5).ys[-1]
    if problem == "faces":
        assert jnp.sum(ref == 0.0) == 3 and jnp.sum(ref == 1.0) == 8
    dts = np.array([0.04, 0.02, 0.01, 0.005])
    band = 0.15 if problem == "smooth" else 0.3
    for solver, order in [(dfx.Euler(), 1), (dfx.Heun(), 2)]:
        errors = [
            float(
                jnp.max(jnp.abs(gn.gradient_flow(F, A0, 1.0, solver=solver, dt0=dt).ys[-1] - ref))
            )
            for dt in dts
        ]
        slope = np.polyfit(np.log(dts), np.log(errors), 1)[0]
        assert abs(slope - order) < band, (type(solver).__name__, slope)


def test_relabelling_and_block_refinement_commute_with_the_flow(getkey):
    # Three compilations: one 4-block flow (looped), the same under vmap, one 8-block flow.
    F = mix(-1.0, 0.7)  # weights reach 1 and 0 before t = 1
    perm = jr.permutation(getkey(), 4)
    W = A0_SMOOTH
    # unequal blocks (1/8, 1/8, 1/4, 1/2): the uniform 8-partition with blocks repeated (checks the
    # speed-up 1 / (mu_i mu_j) of the edge-weight gradient)
    U = gn.StepGraphon(W.values, jnp.array([0.125, 0.125, 0.25, 0.5]))
    idx = jnp.array([0, 1, 2, 2, 3, 3, 3, 3])

    def flow(values, sizes):
        return gn.gradient_flow(F, gn.StepGraphon(values, sizes, check=False), 1.0, **HEUN).ys[-1]

    starts = [W, W.permute(perm), U]
    looped = [eqx.filter_jit(flow)(V.values, V.sizes) for V in starts]
    Y, Yp, Yu = looped
    assert jnp.any(Y == 1.0) and jnp.any(Y == 0.0)
    np.testing.assert_allclose(Yp, Y[perm][:, perm], rtol=1e-12, atol=1e-14)
    # vmap over initial graphons against the loop
    batched = jax.vmap(flow)(
        *(jnp.stack([getattr(V, k) for V in starts]) for k in ("values", "sizes"))
    )
    np.testing.assert_allclose(batched, jnp.stack(looped), rtol=1e-13, atol=1e-15)
    # the graphon flow of a step graphon on a grid that refines it is its refined flow
    Wn, sol = gn.graphon_flow(F, W, 1.0, n=8, **HEUN)
    np.testing.assert_allclose(Wn.values, W.refine(2).values)
    np.testing.assert_allclose(sol.ys[-1], jnp.kron(Y, jnp.ones((2, 2))), rtol=1e-12, atol=1e-14)
    Un, sol = gn.graphon_flow(F, U, 1.0, n=8, **HEUN)
    np.testing.assert_allclose(Un.values, W.values[idx][:, idx])
    np.testing.assert_allclose(sol.ys[-1], Yu[idx][:, idx], rtol=1e-12, atol=1e-14)


def test_finite_flows_converge_to_graphon_flow():
    # Reference: the flow on a 192-block grid (midpoint values). A_n = W at the n block centres
    # (with loops): ||W_{A_n} - W||_2 = O(1/n) for Lipschitz W, and the flow map is Lipschitz in
    # L^2, so ||flow_n(t) - flow(t)||_2 = O(1/n). W-random weighted graphs H(n, W) with sorted
    # latent positions (no loops) converge at n^(-1/2) (order statistics fluctuate by n^(-1/2)),
    # fitted on the mean over 6 samples. Every flow runs on the 192-grid as a block refinement
    # (the refinement of a flow is the flow of the refinement, tested above): one compilation.
    W = gn.FunctionGraphon(lambda x, y: 0.15 + 0.7 * x * y)
    F = mix(-1.0, 0.5)
    N, ns, samples = 192, (3, 6, 12, 24), 6

    def weights(x, loops):
        a = np.asarray(W(x[:, None], x[None, :]))
        return a if loops else a * (1 - np.eye(len(x)))

    def refine(a):
        return np.kron(a, np.ones((N // a.shape[0],) * 2))

    # H(n, W) drawn with numpy (sample_weighted_graph is tested in test_graphon.py; one jitted
    # sampler per n would cost more than these flows)
    rng = np.random.default_rng(0)
    starts = [weights((np.arange(N) + 0.5) / N, loops=True)]
    for n in ns:
        starts.append(refine(weights((np.arange(n) + 0.5) / n, loops=True)))
        starts += [refine(weights(np.sort(rng.random(n)), loops=False)) for _ in range(samples)]
    ys = jax.vmap(lambda a: gn.gradient_flow(F, a, 0.5, solver=dfx.Heun(), dt0=0.05).ys[-1])(
        jnp.stack(starts)
    )
    assert jnp.any(ys == 1.0)  # faces are reached
    dist = np.asarray(jax.vmap(lambda y: gn.l2_distance(y, ys[0]))(ys[1:])).reshape(len(ns), -1)
    grid, sampled = dist[:, 0], dist[:, 1:].mean(axis=1)
    rate_grid = -np.polyfit(np.log(ns), np.log(grid), 1)[0]
    rate_sampled = -np.polyfit(np.log(ns), np.log(sampled), 1)[0]
    assert 0.85 < rate_grid < 1.15, rate_grid
    assert 0.3 < rate_sampled < 0.7, rate_sampled


@pytest.mark.slow
def test_grad_through_the_flow(getkey):
    # d/dA0 of the final triangle density, along a symmetric direction, against central
    # differences (interior trajectory: the flow map is smooth there). Reverse mode through
    # diffrax (recursive checkpointing): a long compilation, hence slow.
    A = jr.uniform(getkey(), (4, 4), minval=0.2, maxval=0.7)
    A = (A + A.T) / 2
    F = mix(1.0, -0.3)

    def final_density(a):
        y = gn.gradient_flow(F, (a + a.T) / 2, 0.5, **HEUN).ys[-1]
        return gn.homomorphism_density(TRIANGLE.pattern, y)

    U = jr.normal(getkey(), (4, 4))
    g = eqx.filter_jit(jax.grad(final_density))(A)
    fd = finite_difference_jvp(final_density, (A,), (U,))
    np.testing.assert_allclose(jnp.vdot(g, U), fd, rtol=1e-7)


def test_float32_flow():
    A = jnp.full((4, 4), 0.6, dtype=jnp.float32)
    sol = gn.gradient_flow(mix(1.0, 0.0), A, 1.0, **HEUN)
    assert sol.ys.dtype == jnp.float32
    # Heun with h = 0.02: error ~4e-5 against the closed form p0 / (1 + 3 p0 t)
    np.testing.assert_allclose(sol.ys[-1, 0, 0], 0.6 / 2.8, rtol=2e-4)


def test_failures():
    euler = dict(solver=dfx.Euler(), dt0=0.1)
    with pytest.raises(TypeError, match="objective"):
        gn.gradient_flow(lambda W: 0.0, jnp.full((2, 2), 0.5), 1.0)
    with pytest.raises(TypeError):  # "expected a diffrax solver" (or the jaxtyping hook's)
        gn.ProjectedSolver("heun")
    # the entropy's kernel is infinite on the faces: an error, not a NaN trajectory
    # (concrete: on the host, before the flow's program; traced: inside it)
    face = jnp.array([[0.0, 0.5], [0.5, 0.2]])
    with pytest.raises(ValueError, match="^the derivative kernel is not finite"):
        gn.gradient_flow(gn.ScalarEntropy(), face, 1.0, **euler)
    with pytest.raises(eqx.EquinoxRuntimeError, match="the derivative kernel is not finite"):
        eqx.filter_jit(lambda W: gn.gradient_flow(gn.ScalarEntropy(), W, 1.0, **euler).ys)(face)
    # too few steps: reported in the result code with throw=False (diffrax raises with throw=True)
    sol = gn.gradient_flow(TRIANGLE, jnp.full((2, 2), 0.5), 1.0, **euler, max_steps=5, throw=False)
    assert sol.result != dfx.RESULTS.successful


def test_entropy_flow_towards_the_face_against_scipy():
    # F = -t(K2) - t(K3) / 2 + Ent / 4 on two blocks of lengths (0.3, 0.7): the flow drives every
    # weight towards 1, where the entropy's derivative log(p / (1 - p)) blows up; the exact flow
    # stops short of the face (equilibrium near logit p = (1 + 3/2) / (1/4) = 10, 1 - p ~ 5e-5).
    # Trial stages of the adaptive solver overshoot the face; they must be rejected, not raise.
    # Reference: the same three-dimensional ODE, written out in numpy and solved by scipy's
    # Radau (implicit: the problem is stiff near the face) at tight tolerances.
    # dA/dt = -DF(A), DF = -1 - (3/2) A diag(mu) A + (1/4) log(A / (1 - A)).
    mu = np.array([0.3, 0.7])
    A0 = np.array([[0.6, 0.8], [0.8, 0.5]])
    ts = np.array([0.0, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0])
    F = -1.0 * EDGE - 0.5 * TRIANGLE + 0.25 * gn.ScalarEntropy()
    W0 = gn.StepGraphon(jnp.asarray(A0), jnp.asarray(mu))
    # The defaults: projected Tsit5, PID controller at rtol = atol = 1e-6. (A much tighter
    # controller takes steps too small to overshoot the face, and would not test the rejection.)
    sol = gn.gradient_flow(F, W0, ts[-1], saveat=dfx.SaveAt(ts=jnp.asarray(ts)))

    def rhs(t, a):
        A = np.array([[a[0], a[1]], [a[1], a[2]]])
        dA = 1 + 1.5 * A @ np.diag(mu) @ A - 0.25 * np.log(A / (1 - A))
        return [dA[0, 0], dA[0, 1], dA[1, 1]]

    ref = solve_ivp(
        rhs, (0, ts[-1]), [0.6, 0.8, 0.5], t_eval=ts, method="Radau", rtol=1e-11, atol=1e-13
    )
    ys = np.asarray(sol.ys)
    got = np.stack([ys[:, 0, 0], ys[:, 0, 1], ys[:, 1, 1]])
    assert np.all(got < 1) and 1 - got[:, -1].max() > 1e-5  # inside the box, near the face
    # Tolerances from the controller's 1e-6 (measured max deviation 1.5e-6, in 1 - p up to 3%).
    np.testing.assert_allclose(got, ref.y, atol=5e-6)
    np.testing.assert_allclose(1 - got[:, -1], 1 - ref.y[:, -1], rtol=0.1)
    assert sol.stats["num_rejected_steps"] > 0  # the controller did reject steps near the face


_BAD_TIMES_FLOW = eqx.filter_jit(
    lambda t0, t1, dt0: (
        gn.gradient_flow(
            TRIANGLE,
            jnp.full((2, 2), 0.5),
            t1,
            t0=t0,
            dt0=dt0,
            solver=dfx.Euler(),
            max_steps=16,
            throw=True,
        ).ys
    )
)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize(
    "t0,t1,dt0,match",
    [
        (0.0, -0.5, 0.1, "forward in time"),
        (0.0, np.nan, 0.1, "forward in time"),
        (2.0, 1.0, 0.1, "forward in time"),
        (0.0, 1.0, -0.1, "positive"),
        (0.0, 1.0, 0.0, "positive"),
    ],
    ids=["t1-negative", "t1-nan", "t1-before-t0", "dt0-negative", "dt0-zero"],
)
def test_bad_times_are_refused(t0, t1, dt0, match, jit):
    # Used to run silently (t1 < 0 integrated the flow backwards through the projection). Times
    # as Python floats (eager: static, checked when `gradient_flow` is traced) or traced arrays
    # inside one compiled program shared by every case.
    if jit:
        call = lambda: _BAD_TIMES_FLOW(*(jnp.asarray(v, float) for v in (t0, t1, dt0)))
    else:
        call = lambda: (
            gn.gradient_flow(
                TRIANGLE,
                jnp.full((2, 2), 0.5),
                t1,
                t0=t0,
                dt0=dt0,
                solver=dfx.Euler(),
                max_steps=16,
            ).ys
        )
    with pytest.raises(Exception, match=match):
        jax.block_until_ready(call())


def test_complex_times_are_a_type_error():
    with pytest.raises(TypeError, match="real"):
        gn.gradient_flow(TRIANGLE, jnp.full((2, 2), 0.5), jnp.asarray(1.0 + 0j))


def test_fixed_step_entropy_overshoot_is_reported_not_clipped():
    # Projected Euler with a step so large that the entropy flow from 0.05 overshoots the face 1
    # (velocity -log(0.05 / 0.95) = 2.9, step 0.5): the stage lands where the kernel is infinite.
    # A fixed step cannot be rejected, so the solve reports a non-finite result (it used to clip
    # the state onto the face and continue with an infinite velocity).
    sol = gn.gradient_flow(
        gn.ScalarEntropy(), jnp.full((2, 2), 0.05), 2.0, solver=dfx.Euler(), dt0=0.5, throw=False
    )
    assert sol.result == dfx.RESULTS.nonfinite
