"""`jaxstat.GMRES` (restarted GMRES as a lineax solver) against `numpy.linalg.solve`."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
import pytest

from jaxstat import GMRES


def well_conditioned(key, n, complex_=False):
    """`3 I + G / sqrt(n)`, `G` Gaussian: eigenvalues within ~1 of 3, condition number ~2."""
    k1, k2 = jr.split(key)
    G = jr.normal(k1, (n, n))
    if complex_:
        G = G + 1j * jr.normal(k2, (n, n))
    return 3 * jnp.eye(n) + G / np.sqrt(n)


def relerr(x, y):
    return float(np.linalg.norm(np.asarray(x) - y) / np.linalg.norm(y))


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("restart", [5, 50], ids=["restarted", "full"])
def test_dense_systems(getkey, complex_, restart):
    """`|b - A x| <= rtol |b|` with condition number ~2: relative error <~ 2 rtol."""
    n = 40
    A = well_conditioned(getkey(), n, complex_)
    b = jr.normal(getkey(), (n,)) + (1j * jr.normal(getkey(), (n,)) if complex_ else 0)
    solver = GMRES(rtol=1e-12, atol=0.0, restart=restart)
    sol = lx.linear_solve(lx.MatrixLinearOperator(A), b, solver)
    expect = np.linalg.solve(np.asarray(A), np.asarray(b))
    assert relerr(sol.value, expect) < 1e-10
    assert sol.result == lx.RESULTS.successful
    assert np.linalg.norm(np.asarray(b - A @ sol.value)) <= 1e-12 * np.linalg.norm(b) * 10


def test_pytree_operator(getkey):
    """A block operator on a pair `(u, v)`: the same solution as the dense block system."""
    n = 12
    A = well_conditioned(getkey(), 2 * n, complex_=True)
    blocks = A[:n, :n], A[:n, n:], A[n:, :n], A[n:, n:]

    def mv(x):
        u, v = x
        return blocks[0] @ u + blocks[1] @ v, blocks[2] @ u + blocks[3] @ v

    structure = (jax.ShapeDtypeStruct((n,), A.dtype),) * 2
    op = lx.FunctionLinearOperator(mv, structure)
    b = jr.normal(getkey(), (2 * n,)) + 1j * jr.normal(getkey(), (2 * n,))
    sol = lx.linear_solve(op, (b[:n], b[n:]), GMRES(rtol=1e-12, atol=0.0, restart=8))
    expect = np.linalg.solve(np.asarray(A), np.asarray(b))
    assert relerr(jnp.concatenate(sol.value), expect) < 1e-10


def test_transpose_conj_and_gradient(getkey):
    """Solves with `A^T` and `conj(A)`, and the gradient through the solve (which uses the
    transposed solve), against numpy and a dense `jnp.linalg.solve`."""
    n = 20
    A = well_conditioned(getkey(), n, complex_=True)
    b = jr.normal(getkey(), (n,)) + 1j * jr.normal(getkey(), (n,))
    solver = GMRES(rtol=1e-13, atol=0.0, restart=10)
    op = lx.MatrixLinearOperator(A)
    An, bn = np.asarray(A), np.asarray(b)
    x_t = lx.linear_solve(op.transpose(), b, solver).value
    assert relerr(x_t, np.linalg.solve(An.T, bn)) < 1e-10
    x_c = lx.linear_solve(lx.conj(op), b, solver).value
    assert relerr(x_c, np.linalg.solve(An.conj(), bn)) < 1e-10
    # The solver's own transpose / conj hooks, as lineax's autodiff rules call them.
    state = solver.init(op, {})
    t_state, t_opts = solver.transpose(state, {})
    x, result, _ = solver.compute(t_state, b, t_opts)
    assert result == lx.RESULTS.successful
    assert relerr(x, np.linalg.solve(An.T, bn)) < 1e-10
    c_state, c_opts = solver.conj(state, {})
    assert relerr(solver.compute(c_state, b, c_opts)[0], np.linalg.solve(An.conj(), bn)) < 1e-10

    w = jr.normal(getkey(), (n,))

    def loss(A, b, solve):
        return jnp.sum(w * jnp.abs(solve(A, b)) ** 2)

    gmres = lambda A, b: lx.linear_solve(lx.MatrixLinearOperator(A), b, solver).value
    g_gmres = jax.grad(loss, argnums=(0, 1))(A, b, gmres)
    g_dense = jax.grad(loss, argnums=(0, 1))(A, b, jnp.linalg.solve)
    for a, d in zip(g_gmres, g_dense):
        assert relerr(a, np.asarray(d)) < 1e-9


def test_warm_start(getkey):
    """`y0` is the starting iterate: the exact solution costs one residual evaluation and no
    Arnoldi step; a nearby guess converges in fewer steps than zero."""
    n = 40
    A = well_conditioned(getkey(), n)
    b = jr.normal(getkey(), (n,))
    x = np.linalg.solve(np.asarray(A), np.asarray(b))
    solver = GMRES(rtol=1e-12, atol=0.0, restart=50)
    op = lx.MatrixLinearOperator(A)
    cold = lx.linear_solve(op, b, solver)
    exact = lx.linear_solve(op, b, solver, options={"y0": jnp.asarray(x)})
    near = lx.linear_solve(op, b, solver, options={"y0": jnp.asarray(x) + 1e-6})
    assert int(exact.stats["num_steps"]) == 1
    np.testing.assert_allclose(exact.value, x, rtol=1e-14)
    assert int(near.stats["num_steps"]) < int(cold.stats["num_steps"])
    assert relerr(near.value, x) < 1e-10


def test_lucky_breakdown_is_exact(getkey):
    """`b` in an invariant subspace of dimension 3: GMRES terminates after 3 Arnoldi steps with
    the exact solution (the Arnoldi vector vanishes; no division by zero)."""
    n = 30
    Q, _ = jnp.linalg.qr(jr.normal(getkey(), (n, n)))
    d = jnp.concatenate([jnp.array([1.0, 2.0, 3.0]), 4 + jr.uniform(getkey(), (n - 3,))])
    A = (Q * d) @ Q.T
    b = Q[:, :3] @ jnp.array([1.0, -1.0, 0.5])
    sol = lx.linear_solve(lx.MatrixLinearOperator(A), b, GMRES(rtol=1e-14, atol=0.0))
    assert int(sol.stats["num_steps"]) == 4  # three Arnoldi products and the final residual
    assert relerr(sol.value, np.linalg.solve(np.asarray(A), np.asarray(b))) < 1e-12
    # The identity: one step.
    ident = lx.linear_solve(
        lx.IdentityLinearOperator(jax.eval_shape(lambda: b)), b, GMRES(1e-12, 0.0)
    )
    np.testing.assert_allclose(ident.value, b, rtol=1e-15)


def test_singular_system_reports_failure_not_nan():
    """`A = diag(1, 2, 0)`: `b = e_3` is outside the range (`A b = 0` at the first step), `b = 1`
    leaves it at the third; both report `singular` with the finite least-squares iterate over the
    Krylov space. A consistent right-hand side (`b` in the range) is solved."""
    A = lx.MatrixLinearOperator(jnp.diag(jnp.array([1.0, 2.0, 0.0])))
    solver = GMRES(rtol=1e-10, atol=0.0)
    for b, x_ls in [([0.0, 0.0, 1.0], [0.0, 0.0, 0.0]), ([1.0, 1.0, 1.0], [1.0, 0.5, 1.5])]:
        sol = lx.linear_solve(A, jnp.array(b), solver, throw=False)
        assert sol.result == lx.RESULTS.singular
        np.testing.assert_allclose(sol.value, x_ls, atol=1e-12)
        with pytest.raises(Exception, match="non-finite|singular"):
            eqx.filter_jit(lambda b: lx.linear_solve(A, b, solver).value)(jnp.array(b))
    sol = lx.linear_solve(A, jnp.array([1.0, 1.0, 0.0]), solver)
    np.testing.assert_allclose(sol.value, [1.0, 0.5, 0.0], rtol=1e-14)


def test_stagnation():
    """The cyclic shift `P` with `b = e_1`: `P^{-1} b = e_n` is orthogonal to every Krylov space of
    dimension below `n`, so GMRES(3) makes no progress at all (residual exactly `|b|`) and stops
    after `stagnation_cycles` stagnant cycles with result `stagnation`; full GMRES solves it."""
    n = 10
    P = jnp.roll(jnp.eye(n), 1, axis=0)
    b = jnp.zeros(n).at[0].set(1.0)
    op = lx.MatrixLinearOperator(P)
    stuck = lx.linear_solve(op, b, GMRES(rtol=1e-10, atol=0.0, restart=3), throw=False)
    assert stuck.result == lx.RESULTS.stagnation
    # One cycle, then three that do not reduce the residual; each is 3 products plus a residual.
    assert int(stuck.stats["num_steps"]) == 4 * 4
    assert bool(jnp.all(jnp.isfinite(stuck.value)))
    full = lx.linear_solve(op, b, GMRES(rtol=1e-10, atol=0.0, restart=n))
    np.testing.assert_allclose(
        full.value, np.linalg.solve(np.asarray(P), np.asarray(b)), atol=1e-14
    )


def test_max_steps_and_argument_checks(getkey):
    A = well_conditioned(getkey(), 40)
    b = jr.normal(getkey(), (40,))
    sol = lx.linear_solve(
        lx.MatrixLinearOperator(A),
        b,
        GMRES(rtol=1e-14, atol=0.0, restart=2, max_steps=3),
        throw=False,
    )
    assert sol.result == lx.RESULTS.max_steps_reached
    with pytest.raises(ValueError, match="rtol"):
        GMRES(rtol=0.0, atol=0.0)
    with pytest.raises(ValueError, match="restart"):
        GMRES(rtol=1e-6, atol=0.0, restart=0)
    rect = lx.MatrixLinearOperator(jnp.ones((3, 4)))
    with pytest.raises(ValueError, match="square"):
        lx.linear_solve(rect, jnp.ones(3), GMRES(rtol=1e-6, atol=0.0))
