"""Stationary solves: closed forms, bistability and stability, dynamics, failure paths."""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optimistix as optx
import pytest

import jaxstat.graphs as jg
import jaxstat.stationary as js


N, E = 24, 60


def graph(key, kind="combinatorial", potential=True):
    k1, k2, k3 = jr.split(key, 3)
    g = jg.random_graph(k1, N, E)
    conn = None
    if kind == "magnetic":
        conn = jg.PhaseConnection(jr.uniform(k2, (E,), minval=-np.pi, maxval=np.pi))
    elif kind == "sheaf":
        conn = jg.BlockConnection(jg.random_unitary_blocks(k2, E, 2, jnp.complex128))
    V = jr.uniform(k3, (N,)) if potential else None
    return jg.Graph(g.senders, g.receivers, g.weights, N, connection=conn, potential=V)


def source(key, g, d=3, complex_=False):
    shape = (N,) + ((g.fiber,) if g.fiber > 1 else ()) + (d,)
    s = jr.normal(key, shape)
    if complex_:
        s = s + 1j * jr.normal(jr.fold_in(key, 1), shape)
    return s


def test_relu_recovery(getkey):
    """Gradient model, ReLU potential, no edges: the layer is exactly ReLU."""
    g = jg.Graph([], [], num_nodes=N)
    s = jr.normal(getkey(), (N, 5))
    sol = js.solve(js.GradientModel(js.ReLUPotential()), g, s)
    np.testing.assert_array_equal(sol.value, jax.nn.relu(s))
    assert sol.result == js.RESULTS.successful
    np.testing.assert_allclose(sol.stability.abscissa, -1.0, rtol=1e-12)  # f = -(psi - relu(s))


def test_relu_complementarity(getkey):
    """With edges: psi >= 0, H psi + psi - s >= 0 and their product vanishes (a projection)."""
    g = graph(getkey())
    s = jr.normal(getkey(), (N, 2))
    psi = js.solve(js.GradientModel(js.ReLUPotential()), g, s).value
    grad = g.hamiltonian(psi) + psi - s
    assert float(psi.min()) >= 0
    assert float(grad.min()) >= -1e-10
    np.testing.assert_allclose(psi * grad, 0, atol=1e-10)


@pytest.mark.parametrize("kind", ["combinatorial", "magnetic", "sheaf"])
def test_quadratic_closed_form(getkey, kind):
    """`psi* = (H + mu I)^{-1} s` (complex states for the magnetic and sheaf Laplacians)."""
    g = graph(getkey(), kind)
    s = source(getkey(), g, complex_=kind != "combinatorial")
    mu = 0.7
    sol = js.solve(js.GradientModel(js.Quadratic(mu)), g, s)
    M = g.as_dense() + mu * jnp.eye(N * g.fiber)
    expect = jnp.linalg.solve(M, s.reshape(M.shape[0], -1)).reshape(s.shape)
    np.testing.assert_allclose(sol.value, expect, rtol=1e-9, atol=1e-10)
    assert bool(sol.stability.stable)


@pytest.mark.parametrize("kind", ["combinatorial", "magnetic", "sheaf"])
def test_resolvent_closed_form(getkey, kind):
    """Driven-damped with `kappa = 0`: `psi* = (gamma + i H)^{-1} s`, `|psi*| <= |s| / gamma`,
    and the linearised dynamics `-(gamma + i H)` has spectral abscissa exactly `-gamma`."""
    g = graph(getkey(), kind)
    s = source(getkey(), g, complex_=True)
    gamma = 0.3
    sol = js.solve(js.DrivenDampedModel(gamma=gamma), g, s)
    M = gamma * jnp.eye(N * g.fiber) + 1j * g.as_dense()
    expect = jnp.linalg.solve(M, s.reshape(M.shape[0], -1)).reshape(s.shape)
    np.testing.assert_allclose(sol.value, expect, rtol=1e-9, atol=1e-10)
    assert float(jnp.linalg.norm(sol.value)) <= float(jnp.linalg.norm(s)) / gamma
    np.testing.assert_allclose(sol.stability.abscissa, -gamma, rtol=1e-9)


# Kerr bistability: two nodes, potential V = delta, symmetric drive. The symmetric mode is a single
# Kerr resonator (L annihilates it): I (gamma^2 + (delta + kappa I)^2) = |s|^2, three roots.
GAMMA, KAPPA, DELTA, S2 = 0.1, -1.0, 1.0, 0.05


def kerr_dimer():
    g = jg.from_edges([[0, 1]], [2.0], potential=DELTA * jnp.ones(2))
    model = js.DrivenDampedModel(gamma=GAMMA, kappa=KAPPA)
    s = jnp.sqrt(S2) * jnp.ones(2, jnp.complex128)
    roots = np.sort(np.roots([KAPPA**2, 2 * DELTA * KAPPA, DELTA**2 + GAMMA**2, -S2]).real)
    states = [s / (GAMMA + 1j * (DELTA + KAPPA * I)) for I in roots]
    return g, model, s, roots, states


def test_kerr_bistability_and_certificates():
    g, model, s, roots, states = kerr_dimer()
    assert len(roots) == 3
    found = []
    for guess in states:
        sol = js.solve(model, g, s, 1.05 * guess, throw=False)
        dense = sol.stability
        arnoldi = js.solve(
            model, g, s, 1.05 * guess, throw=False, stability=js.CayleyArnoldi(krylov_dim=4)
        ).stability
        np.testing.assert_allclose(arnoldi.abscissa, dense.abscissa, rtol=1e-8, atol=1e-10)
        found.append((sol.value, sol.result, dense))
    for (psi, _, _), expect in zip(found, states):
        np.testing.assert_allclose(psi, expect, rtol=1e-9)
    # Lower and upper branches stable (abscissa -gamma), the middle one unstable.
    stable = [bool(c.stable) for _, _, c in found]
    assert stable == [True, False, True]
    assert found[1][1] == js.RESULTS.unstable
    assert found[0][1] == found[2][1] == js.RESULTS.successful
    # The middle branch's positive eigenvalue: -gamma + sqrt(kappa^2 I^2 - (delta + 2 kappa I)^2).
    I = roots[1]
    lam = -GAMMA + np.sqrt(KAPPA**2 * I**2 - (DELTA + 2 * KAPPA * I) ** 2)
    np.testing.assert_allclose(found[1][2].abscissa, lam, rtol=1e-9)
    with pytest.raises(Exception, match="unstable"):
        js.solve(model, g, s, 1.05 * states[1])


def test_dynamics_converge_to_stable_branches_only():
    g, model, s, roots, states = kerr_dimer()
    finals = []
    for amp in [0.0, 0.5, 0.9, 1.2, 1.5]:
        for phase in [0.0, 2.0, 4.0]:
            psi0 = amp * jnp.exp(1j * phase) * jnp.ones(2)
            sol = js.flow(model, g, s, psi0, jnp.inf, until_steady=js.SteadyState(1e-7))
            finals.append(float(jnp.abs(sol.ys[0, 0]) ** 2))
    # Every trajectory ends on the lower or the upper branch; both are reached, never the middle.
    dist = np.abs(np.asarray(finals)[:, None] - roots[None, :])
    branch = dist.argmin(axis=1)
    # |f| <= 1e-7 at the stop and decay rate gamma = 0.1: |I - I*| <~ 2 |psi| 1e-6.
    assert dist.min(axis=1).max() < 1e-5
    assert set(branch.tolist()) == {0, 2}


@pytest.mark.parametrize(
    "model",
    [
        js.DrivenDampedModel(gamma=0.5, kappa=0.3, nonlinearity=js.Saturable()),
        js.GradientModel(js.Quartic(0.5, 1.0), gamma=1.0, kappa=0.5),
    ],
    ids=["saturable", "gross-pitaevskii"],
)
def test_flow_converges_to_solve(getkey, model):
    g = graph(getkey(), "magnetic")
    s = 0.5 * source(getkey(), g, d=2, complex_=True)
    sol = js.solve(model, g, s)
    assert bool(sol.stability.stable)
    traj = js.flow(model, g, s, jnp.zeros_like(s), jnp.inf, until_steady=js.SteadyState(1e-8))
    # Distance to the fixed point ~ |f| / (decay rate), max |f| <= 1e-8 and rate ~ gamma.
    np.testing.assert_allclose(traj.ys[0], sol.value, atol=1e-6)


@pytest.mark.parametrize(
    "potential", [js.Quartic(0.5, 2.0), js.DoubleWell(1.0, 1.0), js.ReLUPotential()]
)
def test_energy_decreases_along_dynamics(getkey, potential):
    g = graph(getkey())
    s = source(getkey(), g, d=2)
    model = js.GradientModel(potential, gamma=1.0)
    psi0 = jnp.abs(jr.normal(getkey(), s.shape))  # feasible (>= 0) for the ReLU potential
    ts = jnp.linspace(0, 5, 60)
    traj = js.flow(model, g, s, psi0, 5.0, saveat=dfx.SaveAt(ts=ts))
    H = g.assemble()
    energies = jax.vmap(lambda p: model.energy(p, s, H))(traj.ys)
    # Monotone up to the integration tolerance (1e-10 relative).
    assert bool(jnp.all(jnp.diff(energies) <= 1e-8 * jnp.abs(energies[0])))
    assert float(energies[-1]) < float(energies[0])
    # For convex potentials the stationary state is the global minimiser of E: below the whole
    # trajectory, and the trajectory is approaching it.
    if not isinstance(potential, js.DoubleWell):
        e_star = model.energy(js.solve(model, g, s).value, s, H)
        assert float(e_star) <= float(energies.min()) + 1e-12
        assert float(energies[-1] - e_star) < 0.1 * float(energies[0] - e_star)


def test_kappa_conserves_energy(getkey):
    """The `kappa` part of the gradient dynamics conserves `E` (gamma -> 0 limit)."""
    g = graph(getkey(), "magnetic")
    s = source(getkey(), g, d=1, complex_=True)
    model = js.GradientModel(js.Quartic(1.0, 1.0), gamma=1e-12, kappa=1.0)
    psi0 = source(getkey(), g, d=1, complex_=True)
    traj = js.flow(model, g, s, psi0, 3.0, saveat=dfx.SaveAt(ts=jnp.linspace(0, 3, 7)))
    H = g.assemble()
    energies = jax.vmap(lambda p: model.energy(p, s, H))(traj.ys)
    np.testing.assert_allclose(energies, energies[0], rtol=1e-7)


def test_jit_and_vmap_over_sources(getkey):
    g = graph(getkey(), "magnetic")
    model = js.DrivenDampedModel(gamma=0.5, kappa=0.2)
    sources = 0.3 * jnp.stack([source(getkey(), g, d=2, complex_=True) for _ in range(4)])
    batched = jax.vmap(lambda s: js.solve(model, g, s, stability=None).value)(sources)
    loop = jnp.stack([js.solve(model, g, s, stability=None).value for s in sources])
    np.testing.assert_allclose(batched, loop, rtol=1e-9, atol=1e-12)
    jitted = eqx.filter_jit(lambda g, s: js.solve(model, g, s).value)(g, sources[0])
    np.testing.assert_allclose(jitted, loop[0], rtol=1e-9, atol=1e-12)


def test_warm_start_keeps_branch():
    g, model, s, roots, states = kerr_dimer()
    up = js.solve(model, g, s, states[2] * 1.2).value
    # Slightly stronger drive: from the upper state the solve stays on the upper branch.
    s2 = s * 1.02
    hi = js.solve(model, g, s2, up).value
    lo = js.solve(model, g, s2).value
    assert float(jnp.abs(hi[0]) ** 2) > 1.0 > 0.1 > float(jnp.abs(lo[0]) ** 2)


def test_float32_large_sources_converge(getkey):
    """The stopping rule is relative to the source scale: float32 rounding of `F` grows with
    `|s|`, and an absolute 1e-4 would be unreachable at |s| ~ 1e3 (Newton would hit max_steps)."""
    g = jg.random_graph(getkey(), 200, 1000, dtype=jnp.float32)
    model = js.GradientModel(js.Quartic(1.0, 0.5))
    s = 1e3 * jr.normal(getkey(), (200, 3), jnp.float32)
    sol = js.solve(model, g, s)
    g64 = eqx.tree_at(lambda t: t.weights, g, g.weights.astype(jnp.float64))
    ref = js.solve(model, g64, s.astype(jnp.float64)).value
    # Newton stops at max|F| <= 1e-4 |s|_inf with F's Jacobian >= 1: relative error ~1e-6..1e-4.
    np.testing.assert_allclose(sol.value, ref, rtol=0, atol=1e-4 * float(jnp.max(jnp.abs(ref))))


def test_least_squares_solver(getkey):
    """A globalised solver (Levenberg-Marquardt) from optimistix gives the same state."""
    g = graph(getkey())
    s = source(getkey(), g)
    model = js.GradientModel(js.Quartic(1.0, 3.0))
    newton = js.solve(model, g, s).value
    lm = js.solve(
        model, g, s, solver=optx.LevenbergMarquardt(rtol=1e-10, atol=1e-10), max_steps=500
    ).value
    np.testing.assert_allclose(lm, newton, rtol=1e-7, atol=1e-9)


def test_failure_paths(getkey):
    g = graph(getkey())
    s = source(getkey(), g)
    model = js.GradientModel(js.Quartic(1.0, 1.0))
    bad = s.at[3, 1].set(jnp.nan)
    sol = js.solve(model, g, bad, throw=False)
    assert sol.result == js.RESULTS.nonfinite_source
    with pytest.raises(Exception, match="not finite"):
        js.solve(model, g, bad)
    g_nan = eqx.tree_at(lambda t: t.potential, g, g.potential.at[0].set(jnp.inf))
    assert js.solve(model, g_nan, s, throw=False).result == js.RESULTS.nonfinite_source
    # Not converged within max_steps: reported, never returned as converged.
    sol = js.solve(js.GradientModel(js.Quartic(0.1, 10.0)), g, 10 * s, max_steps=2, throw=False)
    assert sol.result == js.RESULTS.nonlinear_max_steps_reached
    with pytest.raises(Exception, match="maximum number of steps"):
        js.solve(js.GradientModel(js.Quartic(0.1, 10.0)), g, 10 * s, max_steps=2)
    # Parameter checks: at construction, and inside jit for traced values.
    with pytest.raises(ValueError, match="gamma must be positive"):
        js.DrivenDampedModel(gamma=0.0)
    with pytest.raises(ValueError, match="beta must be non-negative"):
        js.Quartic(1.0, -1.0)
    with pytest.raises(Exception, match="gamma must be positive"):
        eqx.filter_jit(lambda gm: js.solve(js.DrivenDampedModel(gamma=gm), g, s).value)(
            jnp.array(-1.0)
        )
    # Changed after construction: a concrete value is refused before compiling (a ValueError;
    # the program then has no check, nor its host callback), a traced one inside the program.
    moved = eqx.tree_at(lambda m: m.gamma, js.DrivenDampedModel(), jnp.array(-1.0))
    with pytest.raises(ValueError, match="^gamma must be positive$"):
        js.solve(moved, g, s)
    with pytest.raises(eqx.EquinoxRuntimeError, match="gamma must be positive"):
        eqx.filter_jit(lambda m: js.solve(m, g, s).value)(moved)
    # With `throw=False`, a traced one is the result code (the program has no host callback).
    result = eqx.filter_jit(lambda m: js.solve(m, g, s, throw=False).result)(moved)
    assert result == js.RESULTS.invalid_parameter
    # Shapes and dtypes at trace time.
    with pytest.raises(ValueError, match="nodes first"):
        js.solve(model, g, s[:-1])
    with pytest.raises(ValueError, match="psi0"):
        js.solve(model, g, s, s[:, :1])
    with pytest.raises(TypeError, match="real states"):
        js.solve(js.GradientModel(js.ReLUPotential()), graph(getkey(), "magnetic"), s)
    sheaf = graph(getkey(), "sheaf")
    with pytest.raises(ValueError, match=r"\(24, 2, \.\.\.\)"):
        js.solve(model, sheaf, s)
