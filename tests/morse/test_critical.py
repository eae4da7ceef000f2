"""Batched critical-point search: closed forms, the theorems' predictions on random weights,
hand-built degenerate cases, a Morse count, an independent scipy search, failure paths."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
import scipy.ndimage
import scipy.optimize

import jaxstat.morse as jm


# One number of starts and one set of static options throughout, so that a search compiled for one
# architecture is reused by every test on that architecture (compilation dominates the run time).
K = 256
BOX2 = (-3.0 * jnp.ones(2), 3.0 * jnp.ones(2))


_DEFAULT = object()


def search(fn, key, box, k=K, max_points=16, throw=False, fallback=_DEFAULT):
    lo, hi = box
    starts = jm.uniform_starts(key, lo, hi, k)
    # `fallback` only when given: the keyword set is part of the compilation cache key.
    kw = {} if fallback is _DEFAULT else {"fallback": fallback}
    return jm.find_critical_points(
        fn, starts, lower=lo, upper=hi, max_points=max_points, throw=throw, **kw
    )


def cubic_saddle(x):
    """`x0^3 - 3 x0 + x1^2`: a minimum at (1, 0) (eigenvalues 6, 2) and a saddle at (-1, 0)
    (eigenvalues -6, 2)."""
    return x[0] ** 3 - 3 * x[0] + x[1] ** 2


def test_closed_form(getkey):
    # Newton alone (no fallback: a cheaper compilation); the default path is tested below.
    cps = search(cubic_saddle, getkey(), BOX2, fallback=None)
    d = cps.as_numpy()
    assert int(cps.count) == 2
    order = np.argsort(d["points"][:, 0])
    # Newton converges quadratically: the points are exact to rounding, eigenvalues to ~1e-14.
    np.testing.assert_allclose(d["points"][order], [[-1.0, 0.0], [1.0, 0.0]], atol=1e-12)
    np.testing.assert_allclose(d["eigenvalues"][order], [[-6.0, 2.0], [2.0, 6.0]], atol=1e-10)
    np.testing.assert_array_equal(d["index"][order], [1, 0])
    assert not d["degenerate"].any() and (d["gradient_norm"] < 1e-12).all()
    assert (d["newton_step"] < 1e-12).all()
    np.testing.assert_array_equal(cps.index_counts(), [1, 1, 0])
    assert int(cps.euler_characteristic()) == 0
    assert int(cps.hits.sum()) == int(cps.num_converged)
    # Poincare-Hopf on [-3, 3]^2: grad f = (3 x0^2 - 3, 2 x1) winds 0 times along the boundary
    # (index +1 at the minimum, -1 at the saddle); the check holds, both points are well sampled.
    assert abs(float(cps.winding_number)) < 1e-9
    assert int(cps.index_sum) == 0 and bool(cps.complete) and (d["hits"] >= 2).all()
    # The saddle (-1, 0) on the boundary of [-1, 3] x [-3, 3]: the winding number is undefined
    # there, and the check says so instead of comparing (same compiled search: the box is traced).
    edge_box = (jnp.array([-1.0, -3.0]), 3.0 * jnp.ones(2))
    on_edge = search(cubic_saddle, getkey(), edge_box, fallback=None)
    assert on_edge.check == jm.RESULTS.check_undecided and not bool(on_edge.complete)
    cert = jm.certify_critical_point(lambda x: x[0] ** 2 - x[1] ** 2, jnp.zeros(2))
    assert int(cert.index) == 1 and not bool(cert.degenerate)


def test_hand_built_degenerate():
    """`tanh(2 x) - 2 tanh(x)` (a 1 -> 2 -> 1 network without bottleneck) has a single critical
    point, x = 0, where f' ~ -6 x^2: degenerate, although generic weights give Morse functions.
    In 2-D, adding `tanh(y - 1) - tanh(y + 1)` (minimum at y = 0, f'' = 4 tanh(1) sech(1)^2)
    keeps the origin the only critical point, degenerate with nullity 1."""
    w1 = jnp.array([[2.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    b1 = jnp.array([0.0, 0.0, -1.0, 1.0])
    a = jnp.array([[1.0, -2.0, 1.0, -1.0]])
    # Padded with four dead units (zero readout weights; f is unchanged) to the 2 -> 8 -> 1 shape
    # of the other tests, whose compiled search it reuses.
    w1 = jnp.concatenate([w1, jnp.ones((4, 2))])
    b1 = jnp.concatenate([b1, jnp.zeros(4)])
    a = jnp.concatenate([a, jnp.zeros((1, 4))], axis=1)
    net = jm.ScalarMLP([jm.PostActivationLayer(w1, b1), jm.AffineLayer(a)], jm.Tanh())
    assert jm.classify(net).verdict is jm.Verdict.GENERICALLY_MORSE  # the exception is measure 0
    cps = search(net, jr.key(0), BOX2)
    d = cps.as_numpy()
    assert int(cps.count) == 1
    # Newton converges only linearly (ratio 1/2) in the degenerate direction: the point is located
    # to ~1e-10, its small eigenvalue f'''(0) x ~ 1e-9 sits far below the degeneracy threshold.
    np.testing.assert_allclose(d["points"][0], [0.0, 0.0], atol=1e-8)
    assert d["degenerate"][0] and d["nullity"][0] == 1
    h_yy = 4 * np.tanh(1.0) / np.cosh(1.0) ** 2
    np.testing.assert_allclose(d["eigenvalues"][0], [0.0, h_yy], atol=1e-7)
    # One isolated degenerate point: not a continuum; its index is not (-1)^k, so the
    # Poincare-Hopf check cannot be decided.
    assert cps.result == jm.RESULTS.successful
    assert cps.check == jm.RESULTS.check_undecided


@pytest.mark.parametrize(
    "widths, seed",
    [([2, 1, 4, 1], 0), ([2, 1, 4, 1], 1), pytest.param([3, 2, 6, 1], 1, marks=pytest.mark.slow)],
)
def test_bottleneck_every_critical_point_degenerate(widths, seed):
    """Theorem 2: with a bottleneck before the first widening every critical point is degenerate
    (hess f has rank <= 1 resp. 2, nullity >= n0 - r); critical sets are continua, so the search
    returns one point per start until its slots run out."""
    net = jm.random_mlp(jr.key(seed), widths, weight_scale=2.0)
    c = jm.classify(net)
    assert c.verdict is jm.Verdict.ALL_DEGENERATE
    n0 = widths[0]
    box = (-4.0 * jnp.ones(n0), 4.0 * jnp.ones(n0))
    cps = search(net, jr.key(10 + seed), box)
    d = cps.as_numpy()
    assert len(d["points"]) >= 1
    assert d["degenerate"].all()
    assert (d["nullity"] >= n0 - c.ranks[c.bottleneck - 1]).all()
    assert (d["gradient_norm"] <= float(cps.residual_tol)).all()
    assert int(cps.num_fallback) >= 1  # Newton fails on the singular Hessians
    # The points spread along the Hessians' null directions: reported as a continuum. (In 2-D the
    # starts sample the critical curves densely enough for nearest neighbours to lie along them;
    # the 3-D case, curves in a cube sampled by 256 starts, is not asserted.)
    if n0 == 2:
        assert cps.result == jm.RESULTS.non_isolated


def test_rank_deficient_weight_degenerate(getkey):
    """A rank-1 first weight: f(x) = g(v . x), hess f = g'' v v^T of rank 1 everywhere."""
    net = jm.random_mlp(jr.key(3), [2, 8, 1], weight_scale=3.0)
    w = net.layers[0].weight
    net = eqx.tree_at(lambda m: m.layers[0].weight, net, jnp.outer(w[:, 0], jnp.array([1.0, 0.5])))
    assert jm.classify(net).verdict is jm.Verdict.ALL_DEGENERATE
    cps = search(net, getkey(), BOX2)
    d = cps.as_numpy()
    assert len(d["points"]) >= 1 and d["degenerate"].all() and (d["nullity"] >= 1).all()
    # The critical set is a union of lines v . x = const along the null direction of hess f.
    assert cps.result == jm.RESULTS.non_isolated


@pytest.mark.parametrize(
    "widths, layer, act",
    [
        ([2, 8, 1], jm.PostActivationLayer, jm.Tanh()),
        pytest.param([2, 6, 1], jm.SandwichLayer, jm.Softplus(), marks=pytest.mark.slow),
        pytest.param([3, 5, 2, 1], jm.PostActivationLayer, jm.Tanh(), marks=pytest.mark.slow),
        pytest.param([2, 6, 6, 1], jm.PostActivationLayer, jm.Sigmoid(), marks=pytest.mark.slow),
        pytest.param([2, 6, 1], jm.PreActivationLayer, jm.Tanh(), marks=pytest.mark.slow),
    ],
    ids=["2-8-1-tanh", "sandwich-2-6-1-softplus", "3-5-2-1-tanh", "2-6-6-1-sigmoid", "pre-2-6-1"],
)
def test_augmented_networks_are_morse(widths, layer, act):
    """Theorem 3 on random weights: every critical point found passes the degeneracy test
    (smallest |eigenvalue| above 6e-6 of the largest), located to rounding by Newton."""
    n0 = widths[0]
    box = (-3.0 * jnp.ones(n0), 3.0 * jnp.ones(n0))
    found = 0
    for seed in range(3):
        net = jm.random_mlp(jr.key(seed), widths, layer=layer, activation=act, weight_scale=3.0)
        assert jm.classify(net).verdict is jm.Verdict.GENERICALLY_MORSE
        d = search(net, jr.key(20 + seed), box).as_numpy()
        found += len(d["points"])
        assert not d["degenerate"].any()
        assert (d["gradient_norm"] < 1e-12).all() and (d["newton_step"] < 1e-10).all()
    assert found >= 1


@pytest.mark.slow
def test_undecided_architecture_has_both_kinds():
    """2 -> 5 -> 1 -> 5 -> 1: the width-1 layer after the first widening is a bottleneck followed
    by a widening. Critical points of psi(x) = the first two layers stay non-degenerate, while
    those where the tail's derivative vanishes (whole level curves of psi) are degenerate: neither
    'all degenerate' nor 'Morse' holds, as the classifier states."""
    net = jm.random_mlp(jr.key(1), [2, 5, 1, 5, 1], weight_scale=2.0)
    assert jm.classify(net).verdict is jm.Verdict.UNDECIDED
    d = search(net, jr.key(7), BOX2).as_numpy()
    assert d["degenerate"].any() and (~d["degenerate"]).any()
    ratio = d["min_abs_eigenvalue"] / np.abs(d["eigenvalues"]).max(axis=1)
    assert (ratio[~d["degenerate"]] > 1e-3).all() and (d["nullity"][d["degenerate"]] >= 1).all()


def test_non_augmented_network_has_none(getkey):
    """Theorem 1: a 2 -> 2 -> 1 network has no critical point; the certified gradient bound is
    positive. Written with six extra dead units (zero readout weights) it has the 2 -> 8 -> 1
    shape of the other tests (whose compiled search it reuses): as an architecture it is
    augmented, but its normal form is the 2 -> 2 -> 1 network again, with the sharper verdict."""
    small = jm.random_mlp(getkey(), [2, 2, 1], weight_scale=3.0)
    assert jm.classify(small).verdict is jm.Verdict.NO_CRITICAL_POINTS
    assert float(jm.gradient_lower_bound(small, *BOX2)) > 0
    w1, b1 = small.layers[0].weight, small.layers[0].bias
    a = small.layers[1].weight
    padded = jm.ScalarMLP(
        [
            jm.PostActivationLayer(
                jnp.concatenate([w1, jr.normal(getkey(), (6, 2))]),
                jnp.concatenate([b1, jr.normal(getkey(), (6,))]),
            ),
            jm.AffineLayer(jnp.concatenate([a, jnp.zeros((1, 6))], axis=1)),
        ],
        jm.Tanh(),
    )
    assert jm.classify(padded).verdict is jm.Verdict.GENERICALLY_MORSE
    nf = jm.normal_form(padded)
    assert jm.classify(nf).verdict is jm.Verdict.NO_CRITICAL_POINTS
    assert float(jm.gradient_lower_bound(nf, *BOX2)) > 0
    cps = search(padded, getkey(), BOX2)
    assert int(cps.count) == 0 and int(cps.num_converged) == 0


# An independent search: numpy gradient and Hessian, dense-grid seeds, scipy root finding.
def _numpy_derivatives(net):
    """Hand-derived gradient and Hessian of `a^T tanh(W2 tanh(W1 x + b1) + b2) + c`."""
    w1, b1 = np.asarray(net.layers[0].weight), np.asarray(net.layers[0].bias)
    w2, b2 = np.asarray(net.layers[1].weight), np.asarray(net.layers[1].bias)
    a = np.asarray(net.layers[2].weight[0])

    def parts(x):
        z1 = w1 @ x + b1
        z2 = w2 @ np.tanh(z1) + b2
        with np.errstate(over="ignore"):  # cosh overflows to inf where sech^2 = 0: harmless
            d1, d2 = 1 / np.cosh(z1) ** 2, 1 / np.cosh(z2) ** 2
        dd1, dd2 = -2 * np.tanh(z1) * d1, -2 * np.tanh(z2) * d2
        v1 = w2.T @ (d2 * a)
        return d1, dd1, dd2, v1

    def grad(x):  # (..., 2) -> (..., 2)
        z1 = x @ w1.T + b1
        with np.errstate(over="ignore"):
            d1 = 1 / np.cosh(z1) ** 2
            d2 = 1 / np.cosh(np.tanh(z1) @ w2.T + b2) ** 2
        return (d1 * ((d2 * a) @ w2)) @ w1

    def hess(x):
        d1, dd1, dd2, v1 = parts(x)
        j = w2 @ (d1[:, None] * w1)  # d z2 / d x
        return w1.T @ ((dd1 * v1)[:, None] * w1) + j.T @ ((dd2 * a)[:, None] * j)

    return grad, hess


def _grid_scipy_search(grad, hess, lo, hi, n_grid):
    """Seeds at the grid's local minima of |grad f|, refined by scipy's `hybr` (a small initial
    step bound, `factor=0.01`, so that each seed converges to its nearby zero)."""
    xs = np.linspace(lo, hi, n_grid)
    grid = np.stack(np.meshgrid(xs, xs, indexing="ij"), -1)
    g = np.linalg.norm(grad(grid), axis=-1)
    seeds = grid[g == scipy.ndimage.minimum_filter(g, size=3, mode="nearest")]
    points = []
    for s in seeds:
        sol = scipy.optimize.root(
            grad, s, jac=hess, method="hybr", tol=1e-14, options={"factor": 0.01}
        )
        x = sol.x
        if np.linalg.norm(grad(x)) < 1e-10 and np.all(np.abs(x) <= hi):
            if not any(np.allclose(x, p, atol=1e-7) for p in points):
                points.append(x)
    return np.array(points)


def _winding_number(grad, lo, hi, n):
    """Degree of grad f / |grad f| along the boundary of the square, by unwrapping its angle."""
    t = np.linspace(lo, hi, n)
    one = np.ones_like(t)
    loop = np.concatenate(
        [
            np.stack([t, lo * one], 1),
            np.stack([hi * one, t], 1),
            np.stack([t[::-1], hi * one], 1),
            np.stack([lo * one, t[::-1]], 1),
        ]
    )
    g = grad(loop)
    angle = np.unwrap(np.arctan2(g[:, 1], g[:, 0]))
    # The unwrapping is unambiguous when consecutive angles differ by well under pi.
    assert np.abs(np.diff(angle)).max() < np.pi / 4
    assert np.linalg.norm(g, axis=1).min() > 1e-4  # no critical point on the boundary
    return (angle[-1] - angle[0]) / (2 * np.pi)


def test_morse_count_and_scipy(getkey):
    """Morse count on the square D = [-3, 3]^2 (Poincare-Hopf / Kronecker): the indices of the
    zeros of grad f in D, sign det hess f = (-1)^(Morse index) at non-degenerate points, add up to
    the winding number of grad f along the boundary. The winding number is computed independently
    (numpy gradient on 4 x 4000 boundary points). The same critical points, with the same indices,
    come out of an independent dense-grid + scipy search."""
    net = jm.random_mlp(jr.key(3), [2, 16, 16, 1], weight_scale=3.0)
    # Newton alone (a cheaper compilation): the points of a Morse function are its basins' limits.
    cps = search(net, jr.key(1), BOX2, k=2048, max_points=32, fallback=None)
    d = cps.as_numpy()
    assert len(d["points"]) >= 10 and not d["degenerate"].any()
    assert cps.result == jm.RESULTS.successful
    grad, hess = _numpy_derivatives(net)
    winding = _winding_number(grad, -3.0, 3.0, 4000)
    assert abs(winding - round(winding)) < 1e-9
    assert int(cps.euler_characteristic()) == round(winding)

    # An `eqx.nn.MLP` with the same weights is accepted as it is: each point, certified on the
    # equinox module, has the same residual, Hessian spectrum and index.
    mlp = eqx.nn.MLP(2, "scalar", 16, 2, activation=jnp.tanh, key=jr.key(0))
    for i in range(3):
        for name in ("weight", "bias"):
            mlp = eqx.tree_at(
                lambda m, i=i, name=name: getattr(m.layers[i], name),
                mlp,
                getattr(net.layers[i], name).reshape(getattr(mlp.layers[i], name).shape),
            )
    cert = jax.vmap(lambda p: jm.certify_critical_point(mlp, p))(jnp.asarray(d["points"]))
    assert (cert.gradient_norm < 1e-12).all()
    np.testing.assert_array_equal(cert.index, d["index"])
    np.testing.assert_allclose(cert.eigenvalues, d["eigenvalues"], rtol=1e-10, atol=1e-12)

    ref = _grid_scipy_search(grad, hess, -3.0, 3.0, 241)
    assert len(ref) == len(d["points"])
    for p, idx in zip(d["points"], d["index"]):
        dist = np.linalg.norm(ref - p, axis=1)
        j = np.argmin(dist)
        # Both searches converge quadratically: the points agree to rounding.
        assert dist[j] < 1e-9
        assert np.sum(np.linalg.eigvalsh(hess(ref[j])) < 0) == idx


@pytest.mark.slow
def test_vmap_over_networks_matches_loop(getkey):
    nets = [jm.random_mlp(jr.key(s), [2, 8, 1], weight_scale=3.0) for s in range(3)]
    batch = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *nets)
    starts = jm.uniform_starts(getkey(), *BOX2, K)

    def run(net):
        return jm.find_critical_points(
            net, starts, lower=BOX2[0], upper=BOX2[1], max_points=16, throw=False
        )

    batched = eqx.filter_vmap(run)(batch)
    for i, net in enumerate(nets):
        single = run(net)
        assert int(batched.count[i]) == int(single.count)
        m = np.asarray(single.mask)
        np.testing.assert_allclose(batched.points[i][m], single.points[m], atol=1e-12)
        np.testing.assert_array_equal(batched.index[i], single.index)


@pytest.mark.slow
def test_critical_point_gradient_wrt_weights(getkey):
    """d x*/d theta through the solvers' implicit adjoints equals the implicit-function-theorem
    value -H^{-1} d(grad f)/d theta and a central difference of the whole search."""
    net = jm.random_mlp(jr.key(2), [2, 8, 1], weight_scale=3.0)
    starts = jm.uniform_starts(getkey(), *BOX2, K)

    def first_point(b):
        moved = eqx.tree_at(lambda m: m.layers[0].bias, net, b)
        cps = jm.find_critical_points(
            moved, starts, lower=BOX2[0], upper=BOX2[1], max_points=16, throw=False
        )
        return cps.points[0]

    b0 = net.layers[0].bias
    x0 = first_point(b0)
    assert bool(jnp.all(jnp.isfinite(x0)))
    jac = jax.jacrev(first_point)(b0)

    def grad_f(x, b):
        return eqx.tree_at(lambda m: m.layers[0].bias, net, b).gradient(x)

    ift = -jnp.linalg.solve(jax.jacfwd(grad_f)(x0, b0), jax.jacfwd(grad_f, argnums=1)(x0, b0))
    np.testing.assert_allclose(jac, ift, rtol=1e-9, atol=1e-10)
    v = jr.normal(getkey(), b0.shape)
    h = 1e-5
    fd = (first_point(b0 + h * v) - first_point(b0 - h * v)) / (2 * h)
    # Central difference with h = 1e-5 on a smooth map: error ~h^2 |x'''| ~ 1e-9.
    np.testing.assert_allclose(jac @ v, fd, rtol=1e-6, atol=1e-8)


def test_critical_point_derivative_implicit_function_theorem():
    """A cheap default-suite case of `d x* / d theta`: the search restarted from a known critical
    point (one start, Newton only, no box; `residual_tol` given, since the gradient scale at that
    start is zero), differentiated in forward mode with respect to the
    first-layer bias along `v` (through optimistix's implicit adjoint), equals the implicit
    function theorem `-H^{-1} (d grad f / d theta) v` and the central difference of re-solved
    critical points at `theta +- h v`."""
    net = jm.random_mlp(jr.key(2), [2, 8, 1], weight_scale=3.0)
    x0 = search(net, jr.key(0), BOX2).points[0]
    b0 = net.layers[0].bias
    v = jnp.linspace(-1.0, 1.0, b0.shape[0])

    def moved(b):
        return eqx.tree_at(lambda m: m.layers[0].bias, net, b)

    def point(b):
        cps = jm.find_critical_points(
            moved(b), x0[None], fallback=None, max_points=1, residual_tol=1e-10
        )
        return cps.points[0]

    # One compilation: the primal output of the JVP gives the re-solved points too.
    point_and_tangent = jax.jit(lambda b: jax.jvp(point, (b,), (v,)))
    x_star, dx = point_and_tangent(b0)
    np.testing.assert_allclose(x_star, x0, atol=1e-12)
    hess = jax.hessian(lambda x: moved(b0)(x))(x0)
    mixed = jax.jvp(lambda b: moved(b).gradient(x0), (b0,), (v,))[1]
    ift = -np.linalg.solve(hess, mixed)
    np.testing.assert_allclose(dx, ift, rtol=1e-9, atol=1e-12)
    h = 1e-5
    fd = (point_and_tangent(b0 + h * v)[0] - point_and_tangent(b0 - h * v)[0]) / (2 * h)
    # Central difference with h = 1e-5 of points located to rounding: error ~h^2 |D^3 x*| ~ 1e-9.
    np.testing.assert_allclose(dx, fd, rtol=1e-6, atol=1e-8)


def _callbacks(jaxpr):
    """The host-callback primitives of `jaxpr` and of every sub-jaxpr (`eqx.error_if`)."""
    found = [e.primitive.name for e in jaxpr.eqns if "callback" in e.primitive.name]
    for eqn in jaxpr.eqns:
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            found += _callbacks(sub)
    return found


def _strong_float64(jaxpr):
    """The primitives of `jaxpr` (and of every sub-jaxpr) that produce a strongly typed float64
    value; weakly typed ones (Python scalars) take the dtype of what they meet."""
    found = []
    for eqn in jaxpr.eqns:
        found += [
            eqn.primitive.name
            for v in eqn.outvars
            if v.aval.dtype == jnp.float64 and not v.aval.weak_type
        ]
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            found += _strong_float64(sub)
    return found


def test_float32_search_stays_float32():
    """Under `jax_enable_x64`, a float32 map and box give float32 starts and a search whose
    program holds no float64 value at all (no silent promotion by a float64 constant, e.g.
    optimistix's `jnp.array(1.0)` trust-region step size), and float32 results. Traced only: the
    float32 answers are compared with float64 in the slow `test_float32`.

    The starts are concrete: checked in Python, so the program (with `throw=False`) holds no host
    callback and JAX's persistent compilation cache can store it."""
    net = jm.random_mlp(jr.key(0), [2, 8, 1], weight_scale=3.0, dtype=jnp.float32)
    lo, hi = -3 * jnp.ones(2, jnp.float32), 3 * jnp.ones(2, jnp.float32)
    starts = jm.uniform_starts(jr.key(1), lo, hi, 16)
    assert starts.dtype == jnp.float32
    closed = jax.make_jaxpr(
        lambda: jm.find_critical_points(net, starts, lower=lo, upper=hi, max_points=4, throw=False)
    )()
    assert _strong_float64(closed.jaxpr) == []
    assert _callbacks(closed.jaxpr) == []
    floats = [a for a in closed.out_avals if jnp.issubdtype(a.dtype, jnp.floating)]
    assert floats and all(a.dtype == jnp.float32 for a in floats)


@pytest.mark.slow
def test_float32(getkey):
    net64 = jm.random_mlp(jr.key(0), [2, 8, 1], weight_scale=3.0)
    net32 = jax.tree_util.tree_map(
        lambda x: x.astype(jnp.float32) if eqx.is_inexact_array(x) else x, net64
    )
    box32 = tuple(b.astype(jnp.float32) for b in BOX2)
    d64 = search(net64, jr.key(1), BOX2).as_numpy()
    cps32 = search(net32, jr.key(1), box32)
    d32 = cps32.as_numpy()
    for leaf in (cps32.points, cps32.values, cps32.certificate.eigenvalues, cps32.residual_tol):
        assert leaf.dtype == jnp.float32
    assert len(d32["points"]) == len(d64["points"]) >= 1
    np.testing.assert_array_equal(d32["index"], d64["index"])
    assert not d32["degenerate"].any()
    # Float32 rounding of the weights, of `z = W x + b` (error `eps32 (|W_j|_1 |x|_inf + |b_j|)`)
    # and of the sums perturbs `grad f = sum_j w_j tanh'(z_j) W_j` by at most about `eps32 R_g`
    # and `hess f = sum_j w_j tanh''(z_j) W_j W_j^T` by about `eps32 R_H`, with the term scales
    # `R_g = sum_j |w_j| |W_j| (|tanh'| + |tanh''| dz_j)` and
    # `R_H = sum_j |w_j| |W_j|^2 (|tanh''| + |tanh'''| dz_j)`. A non-degenerate point then moves
    # by `|H^-1|_2 eps32 R_g` and (Weyl) each eigenvalue by `eps32 R_H`; allowed: 4 times that.
    eps32 = float(jnp.finfo(jnp.float32).eps)
    w_in, b_in = np.asarray(net64.layers[0].weight), np.asarray(net64.layers[0].bias)
    w_out = np.abs(np.asarray(net64.layers[1].weight)[0])
    row = np.linalg.norm(w_in, axis=1)
    for p32, p64, lam32, lam64 in zip(
        d32["points"], d64["points"], d32["eigenvalues"], d64["eigenvalues"]
    ):
        t = np.tanh(w_in @ p64 + b_in)
        d1, d2, d3 = 1 - t**2, -2 * t * (1 - t**2), -2 * (1 - t**2) * (1 - 3 * t**2)
        dz = np.abs(w_in).sum(1) * np.abs(p64).max() + np.abs(b_in)
        r_g = np.sum(w_out * row * (np.abs(d1) + np.abs(d2) * dz))
        r_h = np.sum(w_out * row**2 * (np.abs(d2) + np.abs(d3) * dz))
        h_inv = np.linalg.norm(np.linalg.inv(jax.hessian(net64)(jnp.asarray(p64))), 2)
        np.testing.assert_allclose(p32, p64, rtol=0, atol=4 * eps32 * h_inv * r_g)
        np.testing.assert_allclose(lam32, lam64, rtol=0, atol=4 * eps32 * r_h)


def test_failure_paths(getkey):
    net = jm.random_mlp(getkey(), [2, 8, 1], weight_scale=3.0)
    starts = jm.uniform_starts(getkey(), *BOX2, K)
    kw = dict(lower=BOX2[0], upper=BOX2[1], max_points=16, throw=False)
    # A vector instead of a (k, n) batch: our ValueError, or jaxtyping's TypeError when active.
    with pytest.raises((ValueError, TypeError), match=r"shape \(k, n\)|starts"):
        jm.find_critical_points(net, starts[0])
    with pytest.raises(TypeError):
        jm.find_critical_points(net, jnp.ones((4, 2), int))
    with pytest.raises(ValueError, match="inputs"):
        jm.find_critical_points(net, jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="both"):
        jm.find_critical_points(net, starts, lower=BOX2[0])
    with pytest.raises(ValueError, match="max_points"):
        jm.find_critical_points(net, starts, max_points=0)
    # Concrete starts are checked before compiling (a traced NaN start: below).
    with pytest.raises(ValueError, match="A start point is not finite"):
        jm.find_critical_points(net, starts.at[3, 1].set(jnp.nan), **kw)
    with pytest.raises(ValueError, match="upper > lower"):
        jm.uniform_starts(getkey(), jnp.ones(2), jnp.zeros(2), 10)
    # Traced bounds: the same words from the program (no silently flipped box).
    traced = jax.jit(lambda lo, hi: jm.uniform_starts(jr.key(0), lo, hi, 10))
    with pytest.raises(Exception, match="upper > lower"):
        jax.block_until_ready(traced(jnp.ones(2), jnp.zeros(2)))
    assert traced(jnp.zeros(2), jnp.ones(2)).shape == (10, 2)
    with pytest.raises(ValueError, match="at least one start"):
        jm.find_critical_points(net, jnp.ones((0, 2)))
    with pytest.raises(ValueError, match="box is empty"):
        jm.find_critical_points(net, starts, lower=BOX2[1], upper=BOX2[0])
    with pytest.raises(TypeError, match="fallback"):  # ours, or jaxtyping's when active
        jm.find_critical_points(net, starts, fallback=False)
    # A continuum of critical points (bottleneck): its own result code and message, not an
    # overflow of the slots.
    bottleneck = jm.random_mlp(jr.key(0), [2, 1, 4, 1], weight_scale=2.0)
    box4 = (-4.0 * jnp.ones(2), 4.0 * jnp.ones(2))
    cps = search(bottleneck, jr.key(10), box4)
    assert cps.result == jm.RESULTS.non_isolated and int(cps.count) == 16
    assert cps.mask.all() and bool(cps.degenerate.all())
    with pytest.raises(Exception, match="not isolated"):  # the message `throw=True` raises
        cps.result.error_if(cps, cps.result != jm.RESULTS.successful)
    # More distinct (isolated) points than slots: a result code with throw=False, an error with
    # throw=True.
    with pytest.raises(Exception, match="max_points"):
        search(cubic_saddle, jr.key(0), BOX2, max_points=1, throw=True, fallback=None)


def test_nonfinite_map_and_empty_box(getkey):
    """NaN weights (NaN gradients) or a NaN readout bias (NaN values, finite gradients) are
    reported, not answered with "0 critical points"; so is an empty box given inside `jit`, where
    its bounds are traced and cannot be checked at trace time."""
    net = jm.random_mlp(jr.key(0), [2, 8, 1], weight_scale=3.0)
    w, c = net.layers[0].weight, net.layers[1].bias
    nan_weight = eqx.tree_at(lambda m: m.layers[0].weight, net, w.at[0, 0].set(jnp.nan))
    nan_value = eqx.tree_at(lambda m: m.layers[1].bias, net, jnp.full_like(c, jnp.nan))
    for bad in (nan_weight, nan_value):
        cps = search(bad, getkey(), BOX2)
        assert cps.result == jm.RESULTS.nonfinite_map
        with pytest.raises(Exception, match="not finite"):
            cps.result.error_if(cps, cps.result != jm.RESULTS.successful)
    with pytest.raises(ValueError, match="not finite"):
        jm.classify(nan_weight)
    starts = jm.uniform_starts(getkey(), *BOX2, K)

    @eqx.filter_jit
    def run(net, starts, lo, hi):
        return jm.find_critical_points(net, starts, lower=lo, upper=hi, max_points=16, throw=False)

    assert run(net, starts, BOX2[1], BOX2[0]).result == jm.RESULTS.empty_box
    assert run(net, starts, BOX2[0], BOX2[0].at[1].set(jnp.nan)).result == jm.RESULTS.empty_box
    assert run(nan_weight, starts, *BOX2).result == jm.RESULTS.nonfinite_map
    assert run(net, starts, *BOX2).result == jm.RESULTS.successful
    # Traced starts are checked in the program, whatever `throw`.
    with pytest.raises(eqx.EquinoxRuntimeError, match="A start point is not finite"):
        run(net, starts.at[3, 1].set(jnp.inf), *BOX2)


def test_completeness_check_and_more_starts():
    """The morse notebook's network: 256 Newton starts miss points, and Poincare-Hopf says so:
    the index sum differs from the winding number of grad f on the boundary of [-3, 3]^2 (1,
    recomputed independently from a fine numpy sampling: a saddle just outside the left edge turns
    grad f fast there). `find_all_critical_points` doubles the starts until the check holds: all 15
    points (the independent scipy search below finds the same 15), index sum 1, every basin hit at
    least twice."""
    net = jm.random_mlp(jr.key(3), [2, 16, 16, 1], weight_scale=3.0)
    lo, hi = BOX2
    few = jm.uniform_starts(jr.key(1), lo, hi, 2048)[:256]
    cps = jm.find_critical_points(net, few, lower=lo, upper=hi, max_points=32, fallback=None)
    grad, _ = _numpy_derivatives(net)
    winding = _winding_number(grad, -3.0, 3.0, 40_000)
    assert abs(winding - 1) < 1e-9
    assert abs(float(cps.winding_number) - 1) < 1e-9
    assert int(cps.index_sum) != 1 and cps.check == jm.RESULTS.incomplete
    assert not bool(cps.complete)

    refine = jm.DoublingStarts(num_starts=256, max_starts=2048)
    assert refine.rounds() == [256, 512, 1024, 2048]
    full = jm.find_all_critical_points(
        net, jr.key(1), lo, hi, refinement=refine, max_points=32, fallback=None
    )
    assert full.check == jm.RESULTS.successful and bool(full.complete)
    assert int(full.num_starts) == 2048  # first complete at 2048: no later round to confirm it
    assert int(full.count) == 15 and int(full.index_sum) == 1
    assert int(full.hits.sum()) == int(full.num_converged) and int(full.hits[full.mask].min()) >= 2
    np.testing.assert_array_equal(full.index_counts(), [3, 7, 5])
    # The saddle the notebook's 1,024 starts missed, near (-1.36, 0.52).
    d = full.as_numpy()
    near = np.linalg.norm(d["points"] - np.array([-1.36, 0.52]), axis=1) < 0.05
    assert near.sum() == 1 and d["index"][near][0] == 1


def test_rare_basin_check_in_1d():
    """Away from 2-D the check asks every point to be reached by two starts at least.
    `sin(3 x)` on [-3, 3] has its critical points at `x = (pi / 2 + j pi) / 3`, `j = -3 .. 2`
    (minima where `sin = -1`): 4 starts leave some reached once; the refinement goes on until the
    check holds and a doubling finds no new point (32 starts reach five points twice each and miss
    the sixth, which 64 find), and returns all six."""

    def f(x):
        return jnp.sin(3 * x[0])

    lo, hi = -3.0 * jnp.ones(1), 3.0 * jnp.ones(1)
    refine = jm.DoublingStarts(num_starts=4, max_starts=256)
    first = jm.find_all_critical_points(
        f, jr.key(0), lo, hi, refinement=jm.DoublingStarts(4, 4), fallback=None, max_points=8
    )
    assert first.check == jm.RESULTS.rare_basin and jnp.isnan(first.winding_number)
    full = jm.find_all_critical_points(
        f, jr.key(0), lo, hi, refinement=refine, fallback=None, max_points=8
    )
    assert full.check == jm.RESULTS.successful and int(full.num_starts) < 256
    d = full.as_numpy()
    exact = (np.pi / 2 + np.pi * np.arange(-3, 3)) / 3
    np.testing.assert_allclose(np.sort(d["points"][:, 0]), exact, atol=1e-12)
    np.testing.assert_array_equal(d["index"], (np.sin(3 * d["points"][:, 0]) > 0).astype(int))


def test_aligned_isolated_degenerate_points_are_not_a_continuum(getkey):
    """`(x^2 - 1)^3 + y^2`: degenerate critical points at `(+-1, 0)` (`f_xx = 0`, null direction
    `x`, along which they lie from each other) and a minimum at the origin. Two aligned points are
    not a continuum: the result stays successful."""

    def f(x):
        return (x[0] ** 2 - 1) ** 3 + x[1] ** 2

    cps = search(f, getkey(), BOX2)
    d = cps.as_numpy()
    assert cps.result == jm.RESULTS.successful
    # |f_x| ~ 24 (x -+ 1)^2 accepts points within sqrt(residual_tol / 24) ~ 5e-5 of (+-1, 0): near
    # misses there may count as extra (non-degenerate) points, but never as a continuum.
    exact = np.array([[-1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    dist = np.linalg.norm(d["points"][:, None] - exact[None], axis=-1)
    assert (dist.min(axis=1) < 1e-4).all() and (dist.min(axis=0) < 1e-4).all()
    np.testing.assert_array_equal(d["degenerate"][dist[:, 1] < 1e-4], [False])
    assert d["degenerate"].sum() >= 2


@pytest.mark.parametrize("least_squares", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_lane_schedule_matches_vmapped_solves(least_squares):
    """`_lane_solve` (a lane whose solve ends takes the next start) gives every start the iterates
    and the success flag of its own `optimistix` solve: against `vmap` of `optx.root_find` /
    `optx.least_squares` on `grad f = 0`, `f = sin x0 cos x1 + x0^2 / 10` (Newton converges,
    escapes the guard region, or hits the step cap), with inactive starts and 8 lanes for 96
    starts."""
    import optimistix as optx

    from jaxstat.morse._critical import _guard, _lane_solve

    def grad(y, args):
        return jax.grad(lambda x: jnp.sin(x[0]) * jnp.cos(x[1]) + x[0] ** 2 / 10)(y)

    lo, hi = -4.5 * jnp.ones(2), 4.5 * jnp.ones(2)
    base = optx.LevenbergMarquardt(1e-10, 1e-10) if least_squares else optx.Newton(1e-10, 1e-10)
    solver = _guard(base, lo, hi)
    starts = jm.uniform_starts(jr.key(0), *BOX2, 96)
    active = jnp.arange(96) % 5 != 2
    max_steps = 20 if least_squares else 6

    def one(y0, on):
        region = (jnp.where(on, lo, jnp.inf), jnp.where(on, hi, -jnp.inf))
        guarded = _guard(base, *region)
        solve = optx.least_squares if least_squares else optx.root_find
        sol = solve(grad, guarded, y0, max_steps=max_steps, throw=False)
        return sol.value, on & (sol.result == optx.RESULTS.successful)

    ys_ref, ok_ref = jax.jit(jax.vmap(one))(starts, active)
    ys, ok = jax.jit(lambda s, a: _lane_solve(grad, solver, s, a, max_steps, 8))(starts, active)
    # Newton: every outcome occurs (converged, failed while active, inactive).
    assert 0 < int(jnp.sum(ok_ref)) and (
        least_squares or int(jnp.sum(ok_ref)) < int(jnp.sum(active))
    )
    np.testing.assert_array_equal(ok, ok_ref)
    np.testing.assert_allclose(ys, ys_ref, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(ys[~active], starts[~active])
