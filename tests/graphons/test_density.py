"""Homomorphism densities, rooted densities and derivative kernels.

Checked against brute-force counting over all maps `V(F) -> V(G)` of networkx graphs, against an
independent count through networkx subgraph monomorphisms and the quotients of `F`, against closed
forms on simple graphons, against automatic differentiation and central finite differences.
"""

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import networkx as nx
import numpy as np
import pytest

import jaxstat.graphons as gn
from jaxstat.graphons._objective import autodiff_kernel
from jaxstat.graphons._pattern import elimination_order

from ..helpers import check_grad_fd, finite_difference_jvp


PATTERNS = {
    "K2": gn.Pattern.complete(2),
    "P2": gn.Pattern.path(2),
    "K3": gn.Pattern.cycle(3),
    "C4": gn.Pattern.cycle(4),
    "C5": gn.Pattern.cycle(5),
    "K4-e": gn.Pattern.k4_minus_edge(),
    "K4": gn.Pattern.complete(4),
    "star3": gn.Pattern.star(3),
    "P3+isolated": gn.Pattern([(0, 1), (1, 2), (2, 3)], num_vertices=5),
    "2K2": gn.Pattern([(0, 1), (2, 3)]),
    "house": gn.Pattern([(0, 1), (1, 2), (2, 3), (3, 0), (0, 4), (1, 4)]),
}


@eqx.filter_jit
def all_densities(W, names=tuple(PATTERNS)):
    """`t(F, W)` for many patterns in one compilation (compilation dominates these small tests)."""
    return {k: gn.homomorphism_density(PATTERNS[k], W) for k in names}


@eqx.filter_jit
def all_kernels(W, names=tuple(PATTERNS)):
    return {k: gn.homomorphism_kernel(PATTERNS[k], W) for k in names}


def brute_force_hom(F: nx.Graph, G: nx.Graph, weight=None) -> float:
    """`hom(F, G) = sum over all maps phi: V(F) -> V(G) of prod_{uv in E(F)} w(phi u, phi v)`."""
    fv, gv = list(F.nodes), list(G.nodes)
    total = 0.0
    for image in itertools.product(gv, repeat=len(fv)):
        phi = dict(zip(fv, image))
        p = 1.0
        for u, v in F.edges:
            a, b = phi[u], phi[v]
            if not G.has_edge(a, b):
                p = 0.0
                break
            p *= 1.0 if weight is None else G[a][b][weight]
        total += p
    return total


def set_partitions(items):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in set_partitions(rest):
        for i in range(len(part)):
            yield part[:i] + [[first] + part[i]] + part[i + 1 :]
        yield [[first]] + part


def hom_by_monomorphisms(F: nx.Graph, G: nx.Graph) -> int:
    """`hom(F, G) = sum over partitions P of V(F) into independent sets of inj(F / P, G)`, with
    `inj` counted as subgraph monomorphisms by networkx (VF2): an independent count."""
    total = 0
    for part in set_partitions(list(F.nodes)):
        block = {v: i for i, b in enumerate(part) for v in b}
        if any(block[u] == block[v] for u, v in F.edges):
            continue
        Q = nx.Graph()
        Q.add_nodes_from(range(len(part)))
        Q.add_edges_from((block[u], block[v]) for u, v in F.edges)
        matcher = nx.algorithms.isomorphism.GraphMatcher(G, Q)
        total += sum(1 for _ in matcher.subgraph_monomorphisms_iter())
    return total


def test_density_matches_brute_force_on_graphs():
    for seed in range(3):
        G = nx.gnp_random_graph(6, 0.6, seed=seed)
        t = all_densities(gn.StepGraphon.from_networkx(G))
        for name, F in PATTERNS.items():
            expected = brute_force_hom(F.to_networkx(), G) / 6**F.num_vertices
            # float64 sums of at most 6^5 terms: agreement to rounding.
            np.testing.assert_allclose(t[name], expected, rtol=1e-12, atol=1e-15, err_msg=name)


def test_density_matches_weighted_brute_force():
    rng = np.random.default_rng(0)
    n = 5
    W = rng.random((n, n))
    W = (W + W.T) / 2
    G = nx.complete_graph(n)
    for i in range(n):
        G.add_edge(i, i)  # the step graphon has diagonal blocks: maps may send an edge to a loop
    for a, b in G.edges:
        G[a][b]["weight"] = W[a, b]
    names = ("K3", "C4", "K4-e", "house")
    t = all_densities(W, names)
    for name in names:
        F = PATTERNS[name]
        expected = brute_force_hom(F.to_networkx(), G, weight="weight") / n**F.num_vertices
        np.testing.assert_allclose(t[name], expected, rtol=1e-12, err_msg=name)


def test_density_matches_networkx_monomorphism_count():
    G = nx.gnp_random_graph(12, 0.4, seed=3)
    names = ("K3", "C4", "C5", "K4-e", "star3")
    t = all_densities(gn.StepGraphon.from_networkx(G), names)
    for name in names:
        F = PATTERNS[name]
        expected = hom_by_monomorphisms(F.to_networkx(), G) / 12**F.num_vertices
        np.testing.assert_allclose(t[name], expected, rtol=1e-12, err_msg=name)


def test_pattern_inputs_are_equivalent():
    G = nx.gnp_random_graph(9, 0.5, seed=1)
    A = nx.to_numpy_array(G)
    t_pattern = gn.homomorphism_density(gn.Pattern.cycle(4), A)
    t_edges = gn.homomorphism_density([(0, 1), (1, 2), (2, 3), (3, 0)], A)
    t_nx = gn.homomorphism_density(nx.cycle_graph(4), A)
    t_labels = gn.homomorphism_density([("a", "b"), ("b", "c"), ("c", "d"), ("d", "a")], A)
    np.testing.assert_allclose([t_edges, t_nx, t_labels], t_pattern, rtol=1e-14)
    # the closed form hom(C4, G) = tr(A^4)
    np.testing.assert_allclose(t_pattern, np.trace(np.linalg.matrix_power(A, 4)) / 9**4)


def test_bad_patterns():
    with pytest.raises(ValueError, match="loop"):
        gn.Pattern([(0, 0)])
    with pytest.raises(ValueError, match="repeated"):
        gn.Pattern([(0, 1), (1, 0)])
    with pytest.raises(ValueError, match="pair"):
        gn.Pattern([(0, 1, 2)])
    with pytest.raises(TypeError):
        gn.Pattern.from_networkx(nx.MultiGraph([(0, 1)]))
    with pytest.raises(TypeError, match="pattern"):
        gn.homomorphism_density(3, jnp.ones((2, 2)))
    with pytest.raises(ValueError, match="cycle"):
        gn.Pattern.cycle(2)


def test_known_values():
    # constant p: t(F, p) = p^|E|, DF(p) = |E| p^(|E| - 1)
    p = 0.37
    W = gn.StepGraphon(jnp.full((4, 4), p))
    t, K = all_densities(W), all_kernels(W)
    for name, F in PATTERNS.items():
        e = F.num_edges
        np.testing.assert_allclose(t[name], p**e, rtol=1e-13, err_msg=name)
        np.testing.assert_allclose(K[name], e * p ** (e - 1), rtol=1e-13, err_msg=name)
    # W(x, y) = x y: t(F, W) = prod_v int x^deg(v) dx = prod_v 1 / (deg(v) + 1). On Gauss-Legendre
    # blocks with n nodes the tensor rule is exact for degree <= 2n - 1 in each variable. Kernel:
    # DF(x, y) = sum_{uv} sym x^(deg u - 1) y^(deg v - 1) prod_{w != u, v} 1 / (deg w + 1).
    W = gn.discretise(gn.FunctionGraphon(lambda x, y: x * y), 4, rule=gn.GaussLegendre())
    t, K = all_densities(W), all_kernels(W)
    x = np.asarray(gn.GaussLegendre().nodes_and_weights(4, jnp.float64)[0])
    for name, F in PATTERNS.items():
        deg = F.degrees()
        expected = np.prod([1 / (d + 1) for d in deg])
        np.testing.assert_allclose(t[name], expected, rtol=1e-13, err_msg=name)
        expected = np.zeros((4, 4))
        for u, v in F.edges:
            c = np.prod([1 / (deg[w] + 1) for w in range(F.num_vertices) if w not in (u, v)])
            T = c * np.outer(x ** (deg[u] - 1), x ** (deg[v] - 1))
            expected += (T + T.T) / 2
        np.testing.assert_allclose(K[name], expected, rtol=1e-12, err_msg=name)


def test_edgeless_patterns_are_one_in_the_input_dtype():
    """No edge: `t(F, W) = 1` and the rooted density is the constant 1, in W's own precision
    (float32 in, float32 out, also with x64 enabled); the derivative kernel of a constant is the
    zero kernel on W's blocks (it equals `jax.grad` of the density, with the block weights)."""
    W = gn.StepGraphon(jnp.full((4, 4), 0.5, jnp.float32))
    rooted = gn.rooted_density(gn.Pattern([], num_vertices=1), W, (0,))
    assert rooted.dtype == jnp.float32 and rooted.shape == (4,)
    np.testing.assert_array_equal(rooted, np.ones(4))
    value = gn.homomorphism_density(gn.Pattern([], num_vertices=2), W)
    assert value.dtype == jnp.float32 and float(value) == 1.0
    edgeless = gn.Pattern([], num_vertices=2)
    kernel = gn.homomorphism_kernel(edgeless, W)
    assert kernel.dtype == jnp.float32 and kernel.shape == (4, 4)
    grad = jax.grad(lambda a: gn.homomorphism_density(edgeless, a))(W.values)
    np.testing.assert_array_equal(kernel, grad)
    np.testing.assert_array_equal(kernel, np.zeros((4, 4)))


def test_product_graphon_midpoint_second_order():
    # The midpoint rule converges at order 2 for smooth W: fit the slope of the error.
    F = PATTERNS["K4-e"]
    expected = np.prod([1 / (d + 1) for d in F.degrees()])
    ns = (8, 16, 32, 64)
    steps = [np.outer(x, x) for x in ((np.arange(n) + 0.5) / n for n in ns)]  # W = xy, midpoints
    values = jax.jit(lambda As: [gn.homomorphism_density(F, A) for A in As])(steps)
    errors = [abs(float(v) - expected) for v in values]
    slope = np.polyfit(np.log(ns), np.log(errors), 1)[0]
    assert -2.1 < slope < -1.9


def test_complete_bipartite_graphon():
    # W = indicator of the two halves being different: t(F, W) = (#proper 2-colourings) / 2^|V|.
    t = all_densities(gn.StepGraphon(jnp.array([[0.0, 1.0], [1.0, 0.0]])))
    for name, F in PATTERNS.items():
        colourings = sum(
            all(c[u] != c[v] for u, v in F.edges)
            for c in itertools.product((0, 1), repeat=F.num_vertices)
        )
        expected = colourings / 2**F.num_vertices
        np.testing.assert_allclose(t[name], expected, atol=1e-15, err_msg=name)


def test_unequal_blocks_match_refinement():
    # Blocks of lengths (1/4, 3/4) are the uniform partition into 4 with block 2 repeated 3 times.
    A = jnp.array([[0.9, 0.2], [0.2, 0.5]])
    W = gn.StepGraphon(A, jnp.array([0.25, 0.75]))
    idx = jnp.array([0, 1, 1, 1])
    W4 = gn.StepGraphon(A[idx][:, idx])
    t, t4 = all_densities(W), all_densities(W4)
    for name in PATTERNS:
        np.testing.assert_allclose(t[name], t4[name], rtol=1e-13, err_msg=name)
    np.testing.assert_allclose(
        gn.homomorphism_kernel(PATTERNS["C4"], W)[idx][:, idx],
        gn.homomorphism_kernel(PATTERNS["C4"], W4),
        rtol=1e-13,
    )


def test_invariance_relabelling_and_refinement(getkey):
    names = ("C5", "K4-e", "house")
    A = gn.sample_weighted_graph(getkey(), gn.FunctionGraphon(lambda x, y: 0.3 + 0.5 * x * y), 9)
    W = gn.StepGraphon(A)
    perm = jr.permutation(getkey(), 9)
    t, K = all_densities(W, names), all_kernels(W, names)
    tp, Kp = all_densities(W.permute(perm), names), all_kernels(W.permute(perm), names)
    tr, Kr = all_densities(W.refine(3), names), all_kernels(W.refine(3), names)
    for k in names:
        np.testing.assert_allclose([tp[k], tr[k]], t[k], rtol=1e-13, err_msg=k)
        np.testing.assert_allclose(Kp[k], K[k][perm][:, perm], rtol=1e-13, err_msg=k)
        np.testing.assert_allclose(Kr[k], jnp.kron(K[k], jnp.ones((3, 3))), rtol=1e-13, err_msg=k)


def test_rooted_density():
    rng = np.random.default_rng(2)
    n = 6
    A = rng.random((n, n))
    A = (A + A.T) / 2
    # degrees, and codegrees (2-path with both ends fixed), and the triangle rooted at a vertex
    np.testing.assert_allclose(gn.rooted_density([(0, 1)], A, (0,)), A.mean(1), rtol=1e-14)
    np.testing.assert_allclose(gn.rooted_density(gn.Pattern.path(2), A, (0, 2)), A @ A / n)
    np.testing.assert_allclose(
        gn.rooted_density(gn.Pattern.cycle(3), A, (2,)), np.diag(A @ A @ A) / n**2, rtol=1e-14
    )
    # isolated roots broadcast; sum_i mu_i t_R[i] = t
    R = gn.rooted_density(gn.Pattern([(0, 1)], num_vertices=3), A, (2, 0))
    np.testing.assert_allclose(R, np.broadcast_to(A.mean(1)[None, :], (n, n)), rtol=1e-14)
    t = gn.homomorphism_density(gn.Pattern.cycle(5), A)
    R = gn.rooted_density(gn.Pattern.cycle(5), A, (0, 3))
    np.testing.assert_allclose(R.sum() / n**2, t, rtol=1e-14)
    with pytest.raises(ValueError, match="roots"):
        gn.rooted_density(gn.Pattern.cycle(3), A, (0, 0))
    with pytest.raises(ValueError, match="roots"):
        gn.rooted_density(gn.Pattern.cycle(3), A, (3,))


def brute_force_kernel(F: gn.Pattern, A: np.ndarray) -> np.ndarray:
    """`DF = sum_e sym t_{(u,v)}(F - e)` by summing over all maps of the other vertices."""
    n, k = A.shape[0], F.num_vertices
    K = np.zeros((n, n))
    for u, v in F.edges:
        others = [w for w in range(k) if w not in (u, v)]
        rest = [e for e in F.edges if e != (u, v)]
        for x in range(n):
            for y in range(n):
                total = 0.0
                for image in itertools.product(range(n), repeat=len(others)):
                    phi = dict(zip(others, image)) | {u: x, v: y}
                    total += np.prod([A[phi[a], phi[b]] for a, b in rest])
                K[x, y] += total / n ** len(others)
    return (K + K.T) / 2


def test_kernel_definition():
    names = ("K2", "P2", "K3", "C4", "K4-e", "star3", "P3+isolated", "2K2")
    rng = np.random.default_rng(4)
    A = rng.random((4, 4))
    A = (A + A.T) / 2
    K = all_kernels(A, names)
    for k in names:
        np.testing.assert_allclose(K[k], brute_force_kernel(PATTERNS[k], A), rtol=1e-12, err_msg=k)


def test_kernel_matches_autodiff_and_finite_differences(getkey):
    names = ("K2", "C4", "K4-e", "star3", "house")
    A = gn.sample_weighted_graph(getkey(), gn.FunctionGraphon(lambda x, y: 0.2 + 0.6 * x * y), 7)
    W = gn.StepGraphon(A, jnp.array([0.1, 0.2, 0.05, 0.15, 0.2, 0.2, 0.1]))
    K = all_kernels(W, names)
    K_ad = eqx.filter_jit(
        lambda W: {
            k: autodiff_kernel(lambda V: gn.homomorphism_density(PATTERNS[k], V), W) for k in names
        }
    )(W)
    # <DF, U>_{L^2} against a central difference along a symmetric direction U (float64, step
    # eps^(1/3): truncation and rounding both ~1e-11 relative).
    U = jr.normal(getkey(), A.shape)
    U = (U + U.T) / 2
    fd = finite_difference_jvp(
        lambda a: all_densities(gn.StepGraphon(a, W.sizes, check=False), names), (A,), (U,)
    )
    for k in names:
        np.testing.assert_allclose(K[k], K_ad[k], rtol=1e-11, atol=1e-14, err_msg=k)
        ip = W.sizes @ (K[k] * U) @ W.sizes
        np.testing.assert_allclose(ip, fd[k], rtol=1e-8, atol=1e-12, err_msg=k)


def test_jit_vmap_and_grad(getkey):
    F = PATTERNS["C4"]
    As = jr.uniform(getkey(), (3, 6, 6), minval=0.2, maxval=0.8)
    As = (As + jnp.swapaxes(As, 1, 2)) / 2

    def everything(a):
        density = lambda b: gn.homomorphism_density(F, (b + b.T) / 2)
        return density(a), gn.homomorphism_kernel(F, a), jax.grad(density)(a)

    batched = jax.vmap(everything)(As)
    single = jax.jit(everything)
    looped = [jnp.stack(x) for x in zip(*(single(a) for a in As))]
    for b, c in zip(batched, looped):
        np.testing.assert_allclose(b, c, rtol=1e-13)
    # grad against a central difference along a random direction (graphons are symmetric: the
    # density is evaluated at the symmetric part; the jitted function is reused, float64, step
    # eps^(1/3): agreement to ~1e-10 relative, asserted to 1e-7)
    U = jr.normal(getkey(), As[0].shape)
    U = (U + U.T) / 2  # (the kernel in `everything` checks symmetry)
    fd = finite_difference_jvp(lambda a: single(a)[0], (As[0],), (U,))
    np.testing.assert_allclose(jnp.vdot(looped[2][0], U), fd, rtol=1e-7)


def test_float32():
    A = jnp.full((50, 50), 0.5, dtype=jnp.float32)
    t = gn.homomorphism_density(PATTERNS["C5"], A)
    assert t.dtype == jnp.float32
    # relative error of float32 sums of 50 terms per contraction: a few eps
    np.testing.assert_allclose(t, 0.5**5, rtol=1e-6)
    assert gn.homomorphism_kernel(PATTERNS["C5"], A).dtype == jnp.float32


def test_elimination_widths():
    # cycles and K4 minus an edge: width 2 (matrix products, n^2 memory); trees: width 1; K4: 3
    for k in (3, 4, 5, 6, 8):
        F = gn.Pattern.cycle(k)
        assert max(elimination_order(F.edges, F.num_vertices)[1]) == 2
    F = gn.Pattern.k4_minus_edge()
    assert max(elimination_order(F.edges, F.num_vertices)[1]) == 2
    F = gn.Pattern.path(6)
    assert max(elimination_order(F.edges, F.num_vertices)[1]) == 1
    F = gn.Pattern.complete(4)
    assert max(elimination_order(F.edges, F.num_vertices)[1]) == 3
    # the DP order is optimal: no permutation of a small pattern has a smaller largest width
    F = PATTERNS["house"]
    best = elimination_order(F.edges, F.num_vertices)[1]
    from jaxstat.graphons._pattern import _neighbourhood

    adj = [frozenset(w for e in F.edges for w in e if v in e and w != v) for v in range(5)]
    widths = []
    for order in itertools.permutations(range(5)):
        done, ws = frozenset(), []
        for v in order:
            ws.append(len(_neighbourhood(adj, done, v)))
            done = done | {v}
        widths.append(max(ws))
    assert max(best) == min(widths)


def test_large_pattern_greedy_plan():
    # a 16-cycle (above the exact DP limit) still contracts with width 2
    F = gn.Pattern.cycle(16)
    assert max(elimination_order(F.edges, F.num_vertices)[1]) == 2
    A = jnp.full((6, 6), 0.9)
    np.testing.assert_allclose(gn.homomorphism_density(F, A), 0.9**16, rtol=1e-13)


def test_scalar_entropy():
    p = 0.3
    h = p * np.log(p) + (1 - p) * np.log(1 - p)
    np.testing.assert_allclose(gn.scalar_entropy(jnp.full((3, 3), p)), h, rtol=1e-14)
    np.testing.assert_allclose(gn.scalar_entropy(jnp.full((3, 3), 0.5)), -np.log(2), rtol=1e-14)
    # h(0) = h(1) = 0: a 0/1 graph has zero entropy
    np.testing.assert_allclose(gn.scalar_entropy(jnp.array([[0.0, 1.0], [1.0, 0.0]])), 0.0)
    K = gn.scalar_entropy_kernel(jnp.full((2, 2), p))
    np.testing.assert_allclose(K, np.log(p / (1 - p)), rtol=1e-14)
    K = gn.scalar_entropy_kernel(jnp.array([[0.0, 1.0], [1.0, 0.0]]))
    assert np.all(K == np.array([[-np.inf, np.inf], [np.inf, -np.inf]]))


def test_scalar_entropy_derivative(getkey):
    A = jr.uniform(getkey(), (6, 6), minval=0.05, maxval=0.95)
    A = (A + A.T) / 2
    W = gn.StepGraphon(A, jnp.array([0.3, 0.1, 0.2, 0.1, 0.2, 0.1]))
    K = gn.scalar_entropy_kernel(W)
    np.testing.assert_allclose(K, autodiff_kernel(gn.scalar_entropy, W), rtol=1e-12)
    check_grad_fd(lambda a: gn.scalar_entropy((a + a.T) / 2), A, key=getkey())


def test_bad_graphons():
    with pytest.raises(ValueError, match="square"):
        gn.StepGraphon(jnp.ones((2, 3)))
    # (with the jaxtyping hook of the test suite the annotation "n n" catches it first)
    with pytest.raises((ValueError, TypeError)):
        gn.homomorphism_density(PATTERNS["K3"], jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="sizes"):
        gn.StepGraphon(jnp.ones((2, 2)), jnp.ones(3) / 3)
    # Concrete values are checked on the host (a ValueError), traced ones inside the program.
    with pytest.raises(ValueError, match="^block sizes must be positive and sum to 1$"):
        gn.StepGraphon(jnp.ones((2, 2)), jnp.array([0.5, 0.6]))
    with pytest.raises(ValueError, match="^block sizes must be positive and sum to 1$"):
        gn.StepGraphon(jnp.ones((2, 2)), jnp.array([1.5, -0.5]))
    with pytest.raises(eqx.EquinoxRuntimeError, match="block sizes must be positive and sum to 1"):
        eqx.filter_jit(lambda s: gn.StepGraphon(jnp.ones((2, 2)), s).sizes)(jnp.array([0.5, 0.6]))
    with pytest.raises(TypeError, match="complex"):
        gn.StepGraphon(jnp.ones((2, 2), jnp.complex128))
    with pytest.raises(TypeError):  # "discretise ... first" (or the jaxtyping hook's message)
        gn.homomorphism_density(PATTERNS["K3"], gn.FunctionGraphon(lambda x, y: x * y))
    with pytest.raises(ValueError, match=r"^step graphon values must lie in \[0, 1\]"):
        gn.homomorphism_density(PATTERNS["K3"], jnp.full((2, 2), 1.5))
    with pytest.raises(ValueError, match=r"^step graphon values must be symmetric \(use"):
        gn.homomorphism_density(PATTERNS["K3"], jnp.array([[0.0, 1.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="^step graphon values contain NaN or infinite entries$"):
        gn.homomorphism_density(PATTERNS["K3"], jnp.full((2, 2), jnp.nan))
    with pytest.raises(eqx.EquinoxRuntimeError, match="symmetric"):
        eqx.filter_jit(lambda a: gn.homomorphism_density(PATTERNS["K3"], a))(
            jnp.array([[0.0, 1.0], [0.0, 0.0]])
        )
    with pytest.raises(eqx.EquinoxRuntimeError, match="NaN"):
        eqx.filter_jit(lambda a: gn.homomorphism_density(PATTERNS["K3"], a))(
            jnp.full((2, 2), jnp.nan)
        )
