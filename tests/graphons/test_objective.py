"""Objectives and their derivative kernels: closed forms, the chain rule against automatic
differentiation of the whole objective, and finite differences."""

import jax
import jax.numpy as jnp
import jax.random as jr
import jaxtyping
import numpy as np
import pytest

import jaxstat.graphons as gn
from jaxstat.graphons._objective import autodiff_kernel

from ..helpers import finite_difference_jvp


EDGE = gn.HomomorphismDensity([(0, 1)])
TRIANGLE = gn.HomomorphismDensity(gn.Pattern.cycle(3))
C4 = gn.HomomorphismDensity(gn.Pattern.cycle(4))


@pytest.fixture
def W(getkey):
    A = jr.uniform(getkey(), (5, 5), minval=0.1, maxval=0.9)
    return gn.StepGraphon((A + A.T) / 2, jnp.array([0.1, 0.3, 0.2, 0.25, 0.15]))


def test_arithmetic_builds_combinations(W):
    F = 2.0 * TRIANGLE - EDGE + C4 * 0.5
    assert isinstance(F, gn.LinearCombination)
    np.testing.assert_allclose(F(W), 2 * TRIANGLE(W) - EDGE(W) + 0.5 * C4(W), rtol=1e-14)
    P = EDGE * TRIANGLE
    assert isinstance(P, gn.Product)
    np.testing.assert_allclose(P(W), EDGE(W) * TRIANGLE(W), rtol=1e-14)
    np.testing.assert_allclose((-EDGE)(W), -EDGE(W))
    np.testing.assert_allclose((jnp.asarray(3.0) * EDGE)(W), 3 * EDGE(W))
    with pytest.raises(TypeError):
        EDGE * "two"
    with pytest.raises(TypeError):
        EDGE + 1.0


@pytest.mark.parametrize(
    "name",
    ["density", "entropy", "combination", "product", "composition", "custom"],
)
def test_kernels_match_autodiff_and_finite_differences(name, W, getkey):
    T = jnp.full((5, 5), 0.4)
    objectives = {
        "density": C4,
        "entropy": gn.ScalarEntropy(),
        "combination": TRIANGLE - 0.3 * EDGE + 0.1 * gn.ScalarEntropy(),
        "product": EDGE * TRIANGLE * C4,
        "composition": gn.Composition(lambda e, t: jnp.log(t) - 3 * jnp.log(e), (EDGE, TRIANGLE)),
        "custom": gn.CustomObjective(lambda V: V.sizes @ (V.values - T) ** 4 @ V.sizes),
    }
    F = objectives[name]
    K = gn.derivative_kernel(F, W)
    # the objective's own rule (closed-form kernels combined by the chain rule) against reverse
    # mode through the whole objective
    np.testing.assert_allclose(K, autodiff_kernel(F, W), rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(K, K.T)
    # <DF, U>_{L^2} against a central difference along a symmetric direction (float64)
    U = jr.normal(getkey(), (5, 5))
    U = (U + U.T) / 2
    fd = finite_difference_jvp(
        lambda a: F(gn.StepGraphon(a, W.sizes, check=False)), (W.values,), (U,)
    )
    np.testing.assert_allclose(W.sizes @ (K * U) @ W.sizes, fd, rtol=1e-8)


def test_closed_form_kernels_on_constant_graphon():
    p = 0.3
    W = jnp.full((4, 4), p)
    # d/dp of p^(1+3) (product), of log(p^3) - 3 log(p) = 0 (composition), of (p - 0.5)^2
    np.testing.assert_allclose(gn.derivative_kernel(EDGE * TRIANGLE, W), 4 * p**3, rtol=1e-14)
    F = gn.Composition(lambda e, t: jnp.log(t) - 3 * jnp.log(e), (EDGE, TRIANGLE))
    np.testing.assert_allclose(gn.derivative_kernel(F, W), 0.0, atol=1e-13)
    F = gn.Composition(lambda e: (e - 0.5) ** 2, (EDGE,))
    np.testing.assert_allclose(gn.derivative_kernel(F, W), 2 * (p - 0.5), rtol=1e-14)
    F = gn.ScalarEntropy()
    np.testing.assert_allclose(gn.derivative_kernel(F, W), np.log(p / (1 - p)), rtol=1e-14)


def test_gradient_with_respect_to_coefficients(W):
    # objectives are pytrees: array coefficients are differentiable leaves
    def value(c):
        return gn.LinearCombination((TRIANGLE, EDGE), (c[0], c[1]))(W)

    g = jax.grad(value)(jnp.array([0.7, -0.2]))
    np.testing.assert_allclose(g, [TRIANGLE(W), EDGE(W)], rtol=1e-14)


def test_bad_objectives():
    with pytest.raises(ValueError, match="coefficient"):
        gn.LinearCombination((EDGE, TRIANGLE), (1.0,))
    with pytest.raises(TypeError):
        gn.LinearCombination((EDGE, "x"), (1.0, 1.0))
    with pytest.raises(TypeError):
        gn.Product(())
    with pytest.raises(TypeError):
        gn.Composition(jnp.sin, ())
    with pytest.raises(TypeError) as info:
        gn.derivative_kernel(lambda W: 0.0, jnp.ones((2, 2)))
    # Under a runtime type checker (the suite runs jaxtyping + beartype) the annotation refuses a
    # function first; without one (as users run it) the library's own check does, in its words.
    if not isinstance(info.value, jaxtyping.TypeCheckError):
        assert str(info.value) == "expected an objective, got function"


def test_one_term_product_and_refusals_in_the_library_words():
    # A product of one objective is that objective (the empty product of the others is 1), value
    # and kernel.
    W = jnp.full((3, 3), 0.3)
    np.testing.assert_allclose(gn.Product((C4,))(W), C4(W), rtol=1e-14)
    np.testing.assert_allclose(gn.derivative_kernel(gn.Product((C4,)), W), 4 * 0.3**3, rtol=1e-14)
    # Only scalars scale an objective: an array of coefficients is refused.
    with pytest.raises(TypeError):
        EDGE * jnp.ones(3)
    for make, message in [
        (lambda: gn.LinearCombination((EDGE,), (1.0, 2.0)), "one coefficient per term"),
        (lambda: gn.LinearCombination((EDGE, "x"), (1.0, 1.0)), "terms must be objectives"),
        (lambda: gn.Product((EDGE, "x")), "a product needs one or more objectives"),
        (
            lambda: gn.Composition(jnp.sin, (EDGE, "x")),
            "a composition needs one or more objectives",
        ),
    ]:
        with pytest.raises((TypeError, ValueError), match=f"^{message}$"):
            make()
