"""The models' own formulas against closed forms written out here, on a dense Hermitian `H`:
residuals, vector fields, energies, rates, state dtypes, linearity and parameter checks (fast; no
solve)."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import jaxstat.graphs as jg
import jaxstat.stationary as js


def _graph(key, n=6, E=9, complex_=True):
    k1, k2, k3 = jr.split(key, 3)
    g = jg.random_graph(k1, n, E)
    phases = jg.PhaseConnection(jr.uniform(k2, (E,), minval=-3.0, maxval=3.0))
    return jg.Graph(
        g.senders,
        g.receivers,
        g.weights,
        n,
        connection=phases if complex_ else None,
        potential=jr.normal(k3, (n,)),
    )


def _complex(key, shape):
    k1, k2 = jr.split(key)
    return jr.normal(k1, shape) + 1j * jr.normal(k2, shape)


def test_nonlinearities_closed_forms():
    r = jnp.array([0.0, 1.0, 3.0])
    np.testing.assert_array_equal(js.Kerr()(r), r)
    np.testing.assert_allclose(js.Saturable()(r), [0.0, 0.5, 0.75], rtol=1e-15)


@pytest.mark.parametrize("name", ["kerr", "saturable"])
def test_driven_damped_residual_and_vector_field(getkey, name):
    """`F = (gamma + i H) psi + i kappa g(|psi|^2) psi - s` and `f = -F`, with `kappa != 0`."""
    gamma, kappa = 0.3, -1.7
    g = _graph(getkey())
    H, Hd = g.assemble(), g.as_dense()
    psi, s = _complex(getkey(), (6,)), _complex(getkey(), (6,))
    r = np.abs(np.asarray(psi)) ** 2
    gr = r if name == "kerr" else r / (1 + r)
    model = js.DrivenDampedModel(gamma, kappa, js.Kerr() if name == "kerr" else js.Saturable())
    expect = gamma * psi + 1j * (Hd @ psi) + 1j * kappa * gr * psi - s
    np.testing.assert_allclose(model.residual(psi, s, H), expect, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(model.vector_field(psi, s, H), -expect, rtol=1e-12, atol=1e-12)


def test_gradient_model_vector_field_energy_and_rates(getkey):
    """`f = -(gamma + i kappa) F` for complex states, `-gamma F` for real ones; `E = 1/2 <psi,
    H psi> + mu/2 |psi|^2 - Re <s, psi>` for `Quadratic(mu)`; the rates `gamma + |H|` and
    `|gamma + i kappa| |H|`."""
    gamma, kappa, mu = 0.3, 0.4, 1.3  # |gamma + i kappa| = 0.5
    model = js.GradientModel(js.Quadratic(mu), gamma=gamma, kappa=kappa)
    g = _graph(getkey())
    H, Hd = g.assemble(), g.as_dense()
    psi, s = _complex(getkey(), (6,)), _complex(getkey(), (6,))
    F = Hd @ psi + mu * psi - s
    np.testing.assert_allclose(model.residual(psi, s, H), F, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        model.vector_field(psi, s, H), -(gamma + 1j * kappa) * F, rtol=1e-12, atol=1e-12
    )
    g = _graph(getkey(), complex_=False)
    H, Hd = g.assemble(), g.as_dense()
    x, sr = jnp.real(psi), jnp.real(s)
    np.testing.assert_allclose(
        model.vector_field(x, sr, H), -gamma * (Hd @ x + mu * x - sr), rtol=1e-12, atol=1e-12
    )
    energy = 0.5 * jnp.vdot(psi, Hd @ psi).real + 0.5 * mu * jnp.vdot(psi, psi).real
    energy = energy - jnp.vdot(s, psi).real
    np.testing.assert_allclose(model.energy(psi, s, H), energy, rtol=1e-12)
    np.testing.assert_allclose(model.linear_rate(jnp.asarray(2.0)), 0.5 * 2.0, rtol=1e-15)
    np.testing.assert_allclose(
        js.DrivenDampedModel(0.3).linear_rate(jnp.asarray(2.0)), 2.3, rtol=1e-15
    )


def test_state_dtypes():
    """Driven-damped states are complex whatever the data; gradient states follow the data; a
    real-only potential refuses complex data in the library's words."""
    H = jg.Graph([], [], num_nodes=2, potential=jnp.ones(2)).assemble()
    assert H.dtype == jnp.float64
    real32, complex64 = jnp.ones(2, jnp.float32), jnp.ones(2, jnp.complex64)
    assert js.DrivenDampedModel().state_dtype(H, real32) == jnp.complex128
    assert js.GradientModel().state_dtype(H, real32) == jnp.float64
    assert js.GradientModel().state_dtype(H, complex64) == jnp.complex128
    assert js.GradientModel(js.ReLUPotential()).state_dtype(H, real32) == jnp.float64
    with pytest.raises(
        TypeError,
        match="^GradientModel with this potential needs real states, but the graph or source is "
        "complex$",
    ):
        js.GradientModel(js.ReLUPotential()).state_dtype(H, complex64)
    assert js.DrivenDampedModel().complex_states and not js.GradientModel().complex_states
    assert js.GradientModel(js.ReLUPotential()).real_only and not js.GradientModel().real_only
    # The promotion of both dtypes, nothing wider: a float32 graph and source give float32
    # gradient states and complex64 driven-damped ones; a complex graph (phases) makes the
    # gradient states complex for a real source.
    f32 = jnp.float32
    H32 = jg.Graph([], [], jnp.ones(0, f32), 2, potential=jnp.ones(2, f32)).assemble()
    phases = jg.PhaseConnection(jnp.array([0.3], f32))
    Hc64 = jg.Graph([0], [1], jnp.ones(1, f32), 2, connection=phases).assemble()
    assert (H32.dtype, Hc64.dtype) == (jnp.float32, jnp.complex64)
    assert js.GradientModel().state_dtype(H32, real32) == jnp.float32
    assert js.DrivenDampedModel().state_dtype(H32, real32) == jnp.complex64
    assert js.GradientModel().state_dtype(Hc64, real32) == jnp.complex64


def test_linearity_and_parameter_checks():
    """`is_linear` from concrete parameters only (a traced `kappa` may be non-zero); `check`
    flags `gamma <= 0` on traced values, which the constructor cannot see."""
    assert js.DrivenDampedModel(0.7, kappa=0.0).is_linear
    assert not js.DrivenDampedModel(0.7, kappa=0.3).is_linear
    assert not jax.jit(lambda k: jnp.asarray(js.DrivenDampedModel(0.7, k).is_linear))(0.0)
    assert js.GradientModel(js.Quadratic()).is_linear
    assert not js.GradientModel(js.Quartic()).is_linear
    with pytest.raises(
        ValueError, match=r"^only linear driven-damped layers \(concrete kappa = 0\)"
    ):
        js.DrivenDampedModel(0.7, kappa=0.3).linear_part
    with pytest.raises(
        ValueError,
        match=r"^a driven-damped layer with kappa != 0 \(Kerr/saturable\) is not strongly monotone "
        r"\(optical bistability\); the Lipschitz bound needs kappa = 0$",
    ):
        js.DrivenDampedModel(0.7, kappa=0.3).monotonicity(lambda: 0.0)
    with pytest.raises(
        ValueError,
        match=r"^GradientModel with Quartic is not a resolvent layer: only "
        r"DrivenDampedModel\(kappa=0\) and GradientModel\(Quadratic\(mu\)\) are linear$",
    ):
        js.GradientModel(js.Quartic()).linear_part
    c, z = js.GradientModel(js.Quadratic(1.3)).linear_part
    assert c == 1.0
    np.testing.assert_allclose(z, -1.3)
    for make in (js.DrivenDampedModel, js.GradientModel):
        bad = jax.jit(lambda gam, make=make: make(gamma=gam).check()[0][0])
        assert bad(0.0) and bad(-1.0) and not bad(1e-3)
        assert make().check()[0][1] == "gamma must be positive"
        with pytest.raises(ValueError, match="^gamma must be positive, got 0.0$"):
            make(gamma=0.0)


def test_abstract_model_defaults():
    """A model that implements only the residual: real, nonlinear, no modulus, no checks, and the
    rate of `H` itself."""

    class Minimal(js.AbstractModel):
        def residual(self, psi, source, H):
            return H.mv(psi) - source

        def vector_field(self, psi, source, H):
            return -self.residual(psi, source, H)

    m = Minimal()
    assert not m.complex_states and not m.real_only and not m.is_linear
    assert m.check() == []
    assert m.linear_rate(jnp.asarray(2.5)) == 2.5
    with pytest.raises(
        ValueError, match="^Minimal is not a resolvent layer: its residual is not affine in psi$"
    ):
        m.linear_part
    with pytest.raises(
        ValueError,
        match="^Minimal has no strong-monotonicity modulus: it does not implement `monotonicity`$",
    ):
        m.monotonicity(lambda: 0.0)
