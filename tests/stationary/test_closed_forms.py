"""Stationary states against closed forms: isolated nodes (no edges, potential `V`), where each
node solves a scalar equation whose roots numpy finds, and the symmetric mode of a dimer.

Driven-damped model, one node: `(gamma + i (V + kappa g(I))) psi = s`, `I = |psi|^2`, so

    I (gamma^2 + (V + kappa g(I))^2) = |s|^2,       psi = s / (gamma + i (V + kappa g(I))),

a cubic in `I` for Kerr (`g(I) = I`) and, after multiplying by `(1 + I)^2`, for the saturable
response (`g(I) = I / (1 + I)`). The linearised dynamics of the node (as a real 2 x 2 map) has
trace `-2 gamma` and eigenvalues

    lambda = -gamma +- sqrt((kappa g'(I) I)^2 - (V + kappa g(I) + kappa g'(I) I)^2).

Gradient model with a radial potential `phi(u) = f(|u|^2)`, one real node:
`V psi + 2 f'(psi^2) psi = s` (a cubic for the quartic and double-well potentials), with
linearisation `-gamma (V + 2 f'(psi^2) + 4 f''(psi^2) psi^2)`.
"""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import jaxstat.graphs as jg
import jaxstat.stationary as js


P = np.polynomial.Polynomial
I_ = P([0.0, 1.0])


def isolated(V):
    """`n` nodes, no edges, on-site potential `V`: the Hamiltonian is `diag(V)`."""
    V = jnp.asarray(V, jnp.float64)
    return jg.Graph([], [], num_nodes=V.shape[0], potential=V)


def positive_roots(poly):
    r = poly.roots()
    r = r[np.abs(r.imag) <= 1e-9 * np.maximum(1, np.abs(r.real))].real
    return np.sort(r[r > 0])


# --- Driven-damped model: Kerr and saturable -----------------------------------------------------

GAMMA, KAPPA = 0.1, -2.0
# (V, |s|^2) per node: three bistable nodes (three positive roots) and two monostable ones.
NODES = [(1.0, 0.05), (1.0, 0.03), (0.7, 0.02), (0.2, 0.5), (-1.0, 0.3)]


def g_kerr(I):
    return I, np.ones_like(I)


def g_saturable(I):
    return I / (1 + I), 1 / (1 + I) ** 2


def intensity_poly(nonlinearity, V, s2):
    """`I (gamma^2 + (V + kappa g(I))^2) - |s|^2`, times `(1 + I)^2` for the saturable `g`."""
    if nonlinearity == "kerr":
        return I_ * (GAMMA**2 + (V + KAPPA * I_) ** 2) - s2
    one = 1 + I_
    return I_ * (GAMMA**2 * one**2 + (V * one + KAPPA * I_) ** 2) - s2 * one**2


def closed_form_state(nonlinearity, V, s, I):
    g, _ = (g_kerr if nonlinearity == "kerr" else g_saturable)(I)
    return s / (GAMMA + 1j * (V + KAPPA * g))


def closed_form_abscissa(nonlinearity, V, I):
    g, dg = (g_kerr if nonlinearity == "kerr" else g_saturable)(I)
    a = KAPPA * dg * I
    return -GAMMA + np.real(np.sqrt(complex(a**2 - (V + KAPPA * g + a) ** 2)))


NONLINEARITIES = {"kerr": js.Kerr(), "saturable": js.Saturable()}


@pytest.mark.parametrize("nonlinearity", ["kerr", "saturable"])
def test_driven_damped_isolated_nodes_closed_form(nonlinearity):
    """Every branch of every node, reached from a warm start 5% off the closed form, is the closed
    form to 1e-9; the certificate's abscissa is the closed-form eigenvalue of the worst node, and
    the middle branch of a bistable node is reported unstable."""
    V = np.array([v for v, _ in NODES])
    phases = np.linspace(0.3, 2.9, len(NODES))
    s = np.sqrt([s2 for _, s2 in NODES]) * np.exp(1j * phases)
    roots = [positive_roots(intensity_poly(nonlinearity, v, s2)) for v, s2 in NODES]
    assert [len(r) for r in roots] == [3, 3, 3, 1, 1]  # the chosen parameters are bistable
    g = isolated(V)
    model = js.DrivenDampedModel(
        gamma=GAMMA, kappa=KAPPA, nonlinearity=NONLINEARITIES[nonlinearity]
    )
    for branch in range(3):
        I = np.array([r[min(branch, len(r) - 1)] for r in roots])
        expect = closed_form_state(nonlinearity, V, s, I)
        sol = js.solve(model, g, jnp.asarray(s), jnp.asarray(1.05 * expect), throw=False)
        np.testing.assert_allclose(sol.value, expect, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(np.abs(sol.value) ** 2, I, rtol=1e-9)
        lam = max(closed_form_abscissa(nonlinearity, v, i) for v, i in zip(V, I))
        np.testing.assert_allclose(sol.stability.abscissa, lam, rtol=1e-9, atol=1e-12)
        # Lower and upper branches stable, the middle one (negative slope dI/d|s|^2) unstable.
        assert bool(sol.stability.stable) == (branch != 1)
        want = js.RESULTS.unstable if branch == 1 else js.RESULTS.successful
        assert sol.result == want


@pytest.mark.parametrize("nonlinearity", ["kerr", "saturable"])
def test_driven_damped_dimer_symmetric_mode(nonlinearity):
    """Two nodes joined by an edge, equal potential `V` and drive: the Laplacian annihilates the
    symmetric mode, so the symmetric state obeys the one-node equation, with edges present (its
    stability also involves the antisymmetric mode, so only the state is compared)."""
    V, s2 = NODES[0]
    g = jg.from_edges([[0, 1]], [0.7], potential=V * jnp.ones(2))
    model = js.DrivenDampedModel(
        gamma=GAMMA, kappa=KAPPA, nonlinearity=NONLINEARITIES[nonlinearity]
    )
    s = np.sqrt(s2) * np.exp(0.4j) * np.ones(2)
    for I in positive_roots(intensity_poly(nonlinearity, V, s2)):
        expect = closed_form_state(nonlinearity, V, s, I)
        sol = js.solve(model, g, jnp.asarray(s), jnp.asarray(1.05 * expect), throw=False)
        assert sol.result in (js.RESULTS.successful, js.RESULTS.unstable)
        np.testing.assert_allclose(sol.value, expect, rtol=1e-9)


# --- Gradient model: radial potentials ----------------------------------------------------------

RADIAL = {
    "quadratic": js.Quadratic(0.7),
    "quartic": js.Quartic(0.5, 2.0),
    "double-well": js.DoubleWell(1.5, 0.8),
}


def radial_f(name, rho):
    """`(f, f', f'')` of each potential, written out independently of the library."""
    if name == "quadratic":
        return 0.35 * rho, 0.35 + 0 * rho, 0 * rho
    if name == "quartic":
        return 0.25 * rho + 0.5 * rho**2, 0.25 + rho, 1 + 0 * rho
    return 0.375 * (rho - 0.64) ** 2, 0.75 * (rho - 0.64), 0.75 + 0 * rho


@pytest.mark.parametrize("name", list(RADIAL))
def test_radial_potential_values_and_force(getkey, name):
    """`f` as written above, and the force `2 f'(|u|^2) u` equals the autodiff gradient of the
    energy `sum f(|u|^2)` (complex states as pairs of reals)."""
    pot = RADIAL[name]
    rho = jnp.linspace(0.0, 3.0, 13)
    f, df, _ = radial_f(name, np.asarray(rho))
    np.testing.assert_allclose(pot.f(rho), f, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(pot.df(rho), df, rtol=1e-14, atol=1e-15)
    x, y = jr.normal(getkey(), (7,)), jr.normal(getkey(), (7,))
    gx, gy = jax.grad(lambda x, y: pot.value(x + 1j * y), argnums=(0, 1))(x, y)
    np.testing.assert_allclose(pot.grad(x + 1j * y), gx + 1j * gy, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(pot.grad(x), jax.grad(pot.value)(x), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("name", list(RADIAL))
def test_gradient_model_residual_is_energy_gradient(getkey, name):
    """On a graph with edges, the stationarity residual `F = H psi + grad Phi - s` is the gradient
    of `E = 1/2 <psi, H psi> + Phi(psi) - <s, psi>`."""
    pot = RADIAL[name]
    g = jg.random_graph(getkey(), 12, 30)
    g = jg.Graph(g.senders, g.receivers, g.weights, 12, potential=jr.uniform(getkey(), (12,)))
    H = g.assemble()
    model = js.GradientModel(pot)
    s = jr.normal(getkey(), (12, 2))
    psi = jnp.abs(jr.normal(getkey(), (12, 2))) + 0.1
    grad = jax.grad(lambda p: model.energy(p, s, H))(psi)
    np.testing.assert_allclose(model.residual(psi, s, H), grad, rtol=1e-12, atol=1e-12)


def cubic_stationary(name, V, s):
    """Real roots of `V psi + 2 f'(psi^2) psi - s` for one node."""
    if name == "quadratic":
        return np.array([s / (V + 0.7)])
    if name == "quartic":
        poly = P([-s, V + 0.5, 0.0, 2.0])  # V psi + (0.5 + 2 psi^2) psi = s
    else:
        poly = P([-s, V - 1.5 * 0.64, 0.0, 1.5])  # V psi + 1.5 (psi^2 - a^2) psi = s
    r = poly.roots()
    return np.sort(r[np.abs(r.imag) <= 1e-9].real)


@pytest.mark.parametrize("name", list(RADIAL))
def test_gradient_model_isolated_nodes_closed_form(name):
    """No edges: each node solves its cubic; every real root is reached from a warm start next to
    it, and the certificate is `-gamma min_i (V_i + 2 f'(psi_i^2) + 4 f''(psi_i^2) psi_i^2)`."""
    V = np.array([0.1, 0.2, 0.05, 1.0, 0.3])
    s = np.array([0.05, -0.1, 0.2, 1.5, -2.0])
    gamma = 0.8
    roots = [cubic_stationary(name, v, si) for v, si in zip(V, s)]
    if name == "double-well":  # the first three nodes sit in the three-root range
        assert [len(r) for r in roots] == [3, 3, 3, 1, 1]
    else:
        assert all(len(r) == 1 for r in roots)
    model = js.GradientModel(RADIAL[name], gamma=gamma)
    g = isolated(V)
    for branch in range(3 if name == "double-well" else 1):
        psi = np.array([r[min(branch, len(r) - 1)] for r in roots])
        sol = js.solve(model, g, jnp.asarray(s), jnp.asarray(psi + 0.02), throw=False)
        np.testing.assert_allclose(sol.value, psi, rtol=1e-10, atol=1e-12)
        _, df, d2f = radial_f(name, psi**2)
        curvature = V + 2 * df + 4 * d2f * psi**2
        np.testing.assert_allclose(sol.stability.abscissa, -gamma * curvature.min(), rtol=1e-9)
        # Outer roots of the double well are minima of the energy, the middle root a maximum.
        assert bool(sol.stability.stable) == (branch != 1)


def test_relu_isolated_nodes_with_potential(getkey):
    """ReLU potential, no edges, potential `V`: `psi = ReLU(s - V psi) = ReLU(s) / (1 + V)`."""
    V = jr.uniform(getkey(), (9,))
    s = jr.normal(getkey(), (9, 2))
    sol = js.solve(js.GradientModel(js.ReLUPotential()), isolated(V), s)
    np.testing.assert_allclose(sol.value, jax.nn.relu(s) / (1 + V[:, None]), rtol=1e-12)


# -- what the models and potentials say about themselves --------------------------------------


def _hermitian_graph(key, n=8, E=14):
    k1, k2, k3 = jr.split(key, 3)
    g = jg.random_graph(k1, n, E)
    return jg.Graph(
        g.senders,
        g.receivers,
        g.weights,
        n,
        connection=jg.PhaseConnection(jr.uniform(k2, (E,), minval=-3.0, maxval=3.0)),
        potential=jr.normal(k3, (n,)),
    )


@pytest.mark.parametrize(
    "model",
    [js.DrivenDampedModel(0.7), js.GradientModel(js.Quadratic(1.3))],
    ids=["driven-damped", "quadratic"],
)
def test_linear_part_is_the_residual(getkey, model):
    """`F(psi; s, H) = c (H - z I) psi - s` with the model's `(c, z)`, against the dense `H`."""
    g = _hermitian_graph(getkey())
    H, Hd = g.assemble(), g.as_dense()
    psi = jr.normal(getkey(), (8, 2)) + 1j * jr.normal(getkey(), (8, 2))
    s = jr.normal(getkey(), (8, 2)) + 1j * jr.normal(getkey(), (8, 2))
    c, z = model.linear_part
    expect = c * ((Hd - z * jnp.eye(8)) @ psi) - s
    np.testing.assert_allclose(model.residual(psi, s, H), expect, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "model",
    [
        js.DrivenDampedModel(0.7),
        js.GradientModel(js.Quadratic(1.3)),
        js.GradientModel(js.Quartic(0.4, 2.0)),
    ],
    ids=["driven-damped", "quadratic", "quartic"],
)
def test_monotonicity_modulus_holds(getkey, model):
    """`Re <F(psi) - F(phi), psi - phi> >= m |psi - phi|^2` with `m = model.monotonicity` (and
    `lambda_min(H)` given exactly), on random complex pairs; equality along the bottom
    eigenvector of `H` near 0."""
    g = _hermitian_graph(getkey())
    H, Hd = g.assemble(), g.as_dense()
    lam = jnp.linalg.eigvalsh(Hd)[0]
    m = model.monotonicity(lambda: lam)
    s = jnp.zeros((8,))
    for _ in range(20):
        psi, phi = (jr.normal(getkey(), (8,)) + 1j * jr.normal(getkey(), (8,)) for _ in "ab")
        d = psi - phi
        lhs = jnp.real(jnp.vdot(d, model.residual(psi, s, H) - model.residual(phi, s, H)))
        assert lhs >= (m - 1e-12) * jnp.vdot(d, d).real
    # Tight: along the bottom eigenvector of H at small amplitude (where the quartic term
    # vanishes to second order), the ratio is m.
    v = 1e-4 * jnp.linalg.eigh(Hd)[1][:, 0]
    lhs = jnp.real(jnp.vdot(v, model.residual(v, s, H) - model.residual(0 * v, s, H)))
    np.testing.assert_allclose(lhs / jnp.vdot(v, v).real, m, rtol=1e-6)


def test_models_without_a_modulus_say_so():
    with pytest.raises(ValueError, match="not strongly monotone"):
        js.DrivenDampedModel(0.7, kappa=0.3).monotonicity(lambda: 0.0)
    with pytest.raises(ValueError, match="not strongly convex"):
        js.GradientModel(js.DoubleWell()).monotonicity(lambda: 0.0)
    with pytest.raises(ValueError, match="not a resolvent layer"):
        js.GradientModel(js.Quartic()).linear_part
    with pytest.raises(ValueError, match="must be positive"):
        js.DoubleWell(beta=-1.0)


def test_potential_parameters_domain_and_conversion():
    """The domains the closed forms need: Quartic `beta >= 0` (0 is the quadratic), DoubleWell
    `beta > 0` (`mu` is free: the model's `gamma` or the graph may make the system definite); the
    error names the parameter. Python ints become floating arrays
    (trainable, same value), floats stay weakly typed."""
    for make, name in [
        (lambda: js.Quartic(mu=1.0, beta=-1.0), "beta"),
        (lambda: js.DoubleWell(beta=0.0), "beta"),
    ]:
        with pytest.raises(ValueError, match=f"^{name} must be"):
            make()
    quartic = js.Quartic(mu=1.0, beta=0.0)  # the boundary beta = 0 is allowed
    quadratic = js.Quadratic(mu=1.0)
    rho = jnp.array([0.3, 2.0])
    np.testing.assert_allclose(quartic.df(rho), quadratic.df(rho), rtol=1e-15)
    from jaxstat.stationary._potential import as_parameter  # the fields' converter

    two = as_parameter(2)  # an int from an untyped caller
    assert jnp.issubdtype(two.dtype, jnp.floating) and float(two) == 2.0
    assert js.Quadratic(mu=2.0).mu.weak_type
    np.testing.assert_allclose(js.ReLUPotential().value(jnp.array([1.0, -2.0])), 2.5)


def test_traced_and_array_parameters_keep_the_closed_forms():
    """Parameters may be traced (the domain checks of concrete values leave tracers to `solve`)
    or arrays (one value per node, single precision): `f` is still the closed form, and the
    converter keeps the array and its dtype."""
    rho = jnp.array([0.0, 0.5, 2.0])
    dw = jax.jit(lambda beta: js.DoubleWell(beta, 0.8).f(rho))(1.5)
    np.testing.assert_allclose(dw, 0.375 * (rho - 0.64) ** 2, rtol=1e-14)
    quartic = jax.jit(lambda beta: js.Quartic(0.5, beta).f(rho))(2.0)
    np.testing.assert_allclose(quartic, 0.25 * rho + 0.5 * rho**2, rtol=1e-14)
    mu = jnp.array([0.5, 1.0, 3.0], jnp.float32)
    pot = js.Quadratic(mu)
    assert pot.mu.dtype == jnp.float32
    np.testing.assert_allclose(pot.f(rho), 0.5 * mu * rho, rtol=1e-7)
