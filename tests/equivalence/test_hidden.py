"""Hidden-node lifts: the Kron reduction of the lifted graph is the given dense operator."""

import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
import pytest

import jaxstat.equivalence as je
import jaxstat.graphs as jg

from ..helpers import check_grad_fd
from .test_lift import hermitian


M = 8  # visible nodes (one size throughout: compiled kernels are reused)


def kron(g, m, shift=0.0):
    # Dense LU for the hidden block: the identity is exact, so compare at rounding level.
    return jg.kron_reduction(g, np.arange(m), shift=shift, solver=lx.LU())


@pytest.mark.parametrize("complex_", [True, False])
@pytest.mark.parametrize("shift", [0.0, 1.7])
def test_hidden_node_lift_reduces_to_A(getkey, complex_, shift):
    """`kron_reduction(lift, visible, shift=c) == A + c I` for random dense Hermitian `A`; every
    hidden node is a hub joined only to visible nodes."""
    A = hermitian(getkey(), M, complex_)
    g = je.hidden_node_lift(A, shift=shift)
    assert M < g.num_nodes <= 2 * M
    s, r = np.asarray(g.senders), np.asarray(g.receivers)
    assert np.all((s < M) != (r < M))  # bipartite: visible - hidden only
    # Rounding of the eigendecomposition and the Schur complement: ~10 eps |A|.
    np.testing.assert_allclose(kron(g, M, shift), A + shift * jnp.eye(M), atol=1e-12)
    # The default GMRES path of kron_reduction agrees to its tolerance (~1e-12 relative).
    np.testing.assert_allclose(
        jg.kron_reduction(g, np.arange(M), shift=shift), A + shift * jnp.eye(M), atol=1e-10
    )


def schur(g, m):
    """`H_vv - H_vh H_hh^{-1} H_hv` of the lift's dense matrix, in numpy (not `kron_reduction`)."""
    H = np.asarray(g.as_dense())
    return H[:m, :m] - H[:m, m:] @ np.linalg.solve(H[m:, m:], H[m:, :m])


def test_lift_counts_and_schur_complement_default(getkey):
    """The default-suite version of the three slow tests below, without `kron_reduction`'s
    compilations: node and edge counts, and the numpy Schur complement, for the spectral base
    (one hub fewer), a sparse-minus-low-rank operator (exactly `r` hubs, `E + m r` edges) and
    `low_rank_lift`; the gradient of the dense lift's Schur complement in `R` is that of the
    closed form `H_base - R R^H` (the slow test differentiates through `kron_reduction`)."""
    A = np.asarray(hermitian(getkey(), M))
    lam = np.linalg.eigvalsh(A)
    g = je.hidden_node_lift(jnp.asarray(A), base=jnp.full(M, lam[-1]))
    assert g.num_nodes == 2 * M - 1
    np.testing.assert_allclose(schur(g, M), A, atol=1e-11)
    m, E, r = 12, 20, 2
    base = jg.random_graph(getkey(), m, E)
    R = np.asarray(jr.normal(getkey(), (m, r)))
    A = np.asarray(base.as_dense()) - R @ R.T
    g = je.hidden_node_lift(jnp.asarray(A), base=base)
    assert g.num_nodes == m + r and g.num_edges == E + m * r
    np.testing.assert_allclose(schur(g, m), A, atol=1e-11)
    lr = je.low_rank_lift(base, jnp.asarray(R))
    assert lr.num_nodes == m + r and lr.num_edges == E + m * r
    np.testing.assert_allclose(schur(lr, m), A, atol=1e-11)
    W = jr.normal(getkey(), (m, m))

    def through_lift(R):
        H = je.low_rank_lift(base, R).as_dense()
        S = H[:m, :m] - H[:m, m:] @ jnp.linalg.solve(H[m:, m:], H[m:, :m])
        return jnp.sum(W * S)

    def closed_form(R):
        return jnp.sum(W * (base.as_dense() - R @ R.T))

    np.testing.assert_allclose(
        jax.grad(through_lift)(jnp.asarray(R)),
        jax.grad(closed_form)(jnp.asarray(R)),
        rtol=1e-10,
        atol=1e-12,
    )


@pytest.mark.slow  # default-suite version: test_lift_counts_and_schur_complement_default
def test_spectral_base_has_lower_rank(getkey):
    """With the base `lambda_max(A) I`, `base - A` has rank `m - 1`: one hub fewer."""
    A = hermitian(getkey(), M)
    lam = jnp.linalg.eigvalsh(A)
    g = je.hidden_node_lift(A, base=jnp.full(M, lam[-1]))
    assert g.num_nodes == 2 * M - 1
    np.testing.assert_allclose(kron(g, M), A, atol=1e-12)


@pytest.mark.slow  # default-suite version: test_lift_counts_and_schur_complement_default
def test_sparse_minus_low_rank(getkey):
    """`A = H_sparse - R R^T` with a sparse base graph: exactly `r` hubs, `E + m r` edges."""
    m, E, r = 40, 80, 3
    base = jg.random_graph(getkey(), m, E)
    R = jr.normal(getkey(), (m, r))
    A = base.as_dense() - R @ R.T
    g = je.hidden_node_lift(A, base=base)
    assert g.num_nodes == m + r and g.num_edges == E + m * r
    np.testing.assert_allclose(kron(g, m), A, atol=1e-11)
    # The direct construction from the factor gives the same operator.
    np.testing.assert_allclose(kron(je.low_rank_lift(base, R), m), A, atol=1e-11)


@pytest.mark.slow  # default-suite version (dense Schur complement, not kron_reduction's adjoint):
# test_lift_counts_and_schur_complement_default
def test_low_rank_lift_is_differentiable(getkey):
    """`low_rank_lift` is differentiable in `R` and the base, and `jg.kron_reduction` in the
    lift's weights, phases and potentials (reverse mode through the matrix-free Schur
    complement): the reduction is `H_base - R R^H + c` to first order too."""
    base = jg.random_graph(getkey(), M, 12)
    base = jg.Graph(base.senders, base.receivers, base.weights + 0.5, M)  # away from w = 0
    R0 = jr.normal(getkey(), (M, 2)) + 1j * jr.normal(getkey(), (M, 2))
    W = jr.normal(getkey(), (M, M))

    def through_lift(R, weights):
        b = jg.Graph(base.senders, base.receivers, weights, M)
        return jnp.real(jnp.sum(W * kron(je.low_rank_lift(b, R, shift=0.5), M, 0.5)))

    def closed_form(R, weights):
        b = jg.Graph(base.senders, base.receivers, weights, M)
        return jnp.real(jnp.sum(W * (b.as_dense() - R @ jnp.conj(R.T) + 0.5 * jnp.eye(M))))

    np.testing.assert_allclose(
        through_lift(R0, base.weights), closed_form(R0, base.weights), rtol=1e-12
    )
    check_grad_fd(through_lift, R0, base.weights, key=getkey(), rtol=1e-6)


def test_hypothesis_failures(getkey):
    A = hermitian(getkey(), M)
    lam = jnp.linalg.eigvalsh(A)
    with pytest.raises(ValueError, match="not positive semidefinite"):
        je.hidden_node_lift(A, base=jnp.full(M, lam[-1] - 0.5))  # base - A indefinite
    with pytest.raises(ValueError, match="not Hermitian"):
        je.hidden_node_lift(A + jnp.triu(jnp.ones((M, M)), 1))
    with pytest.raises(ValueError, match="shape"):
        je.hidden_node_lift(A, base=jnp.ones(M + 1))
    with pytest.raises(ValueError, match="R must have shape"):
        je.low_rank_lift(jnp.ones(M), jnp.ones((M + 1, 2)))
    with pytest.raises(ValueError, match="positive"):
        je.low_rank_lift(jnp.ones(M), jnp.ones((M, 2)), hidden_diagonal=-1.0)
