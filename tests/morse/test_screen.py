"""Start screens of the critical-point search: the neighbour-minimum rule against a brute-force
numpy implementation, the descent chains, completeness against the unscreened search (a
trigonometric map with 16 critical points, a neural ODE), what the screen can miss (two critical
points closer than its radius: Poincare-Hopf flags it), its slot overflow and the model's
default."""

import math

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import jaxstat.morse as jm
from jaxstat.morse._screen import roots

from ..helpers import augmented_node


BOX = (-3.0 * jnp.ones(2), 3.0 * jnp.ones(2))


def brute_force_parents(starts, norms, active, r):
    """`p(i)`: the active start within `r` of start `i` with the smallest `(|grad f|, index)`."""
    k = len(starts)
    parent = np.arange(k)
    for i in range(k):
        if not active[i]:
            continue
        best = i
        for j in range(k):
            if active[j] and np.sum((starts[j] - starts[i]) ** 2) <= r**2:
                if (norms[j], j) < (norms[best], best):
                    best = j
        parent[i] = best
    return parent


def test_neighbour_minima_rule_and_radius():
    """`vol(B_r) = neighbours * vol(box) / k` (k the active starts), and the parents of the rule
    against brute force, with inactive starts (never a parent) among them."""
    lo, hi = jnp.array([0.0, -1.0]), jnp.array([2.0, 2.0])
    starts = jm.uniform_starts(jr.key(0), lo, hi, 300)
    x = np.asarray(starts)
    norms = np.abs(np.sin(2 * x[:, 0]) * np.cos(3 * x[:, 1]))  # many valleys
    active = np.arange(300) % 7 != 3
    screen = jm.NeighbourMinima(neighbours=9.0)
    r = float(screen.radius(starts, jnp.asarray(active), lo, hi))
    assert r == pytest.approx(math.sqrt(9.0 * 2 * 3 / (active.sum() * math.pi)), rel=1e-12)
    # Without a box: the bounding box of the active starts.
    ext = np.ptp(x[active], axis=0)
    r_free = float(screen.radius(starts, jnp.asarray(active), None, None))
    assert r_free == pytest.approx(math.sqrt(9.0 * ext.prod() / (active.sum() * math.pi)))
    parent = screen.parents(starts, jnp.asarray(norms), jnp.asarray(active), lo, hi, 64)
    expected = brute_force_parents(x, norms, active, r)
    np.testing.assert_array_equal(parent, expected)
    kept = active & (np.asarray(roots(parent)) == np.arange(300))
    assert 1 <= kept.sum() < active.sum() // 4
    # A start's neighbourhood holds `neighbours` starts on average (uniform starts, away from the
    # boundary).
    inner = np.all((x > np.asarray(lo) + r) & (x < np.asarray(hi) - r), axis=1) & active
    d2 = np.sum((x[:, None] - x[None]) ** 2, -1)
    counts = np.sum((d2 <= r**2) & active[None], axis=1)[inner] - 1
    assert abs(counts.mean() - 9.0) < 1.5


def test_roots_follow_the_chains():
    rng = np.random.default_rng(0)
    k = 1000
    # A random forest whose parents have lower indices (as lower (|grad f|, index) does).
    parent = np.array([rng.integers(0, i + 1) if rng.random() < 0.9 else i for i in range(k)])
    expected = parent.copy()
    for i in range(k):
        while expected[expected[i]] != expected[i]:
            expected[i] = expected[expected[i]]
    np.testing.assert_array_equal(roots(jnp.asarray(parent)), expected)
    chain = np.maximum(np.arange(k) - 1, 0)  # 0 <- 1 <- 2 <- ... : the longest chain
    np.testing.assert_array_equal(roots(jnp.asarray(chain)), np.zeros(k))


def trig(x):
    """`sin(x0) sin(x1) + 0.1 x0`: five non-degenerate critical points in [-3, 3]^2:
    `(0, -asin 0.1)`, and `(x, +-pi/2)` with `cos x = -+0.1`."""
    return jnp.sin(x[0]) * jnp.sin(x[1]) + 0.1 * x[0]


K = 512
KW = dict(lower=BOX[0], upper=BOX[1], max_points=16, throw=False)


def test_screen_finds_every_point():
    """The five closed-form points and a passing Poincare-Hopf check, Newton from a few percent
    of the starts; every start counts for the point its representative reached."""
    starts = jm.uniform_starts(jr.key(1), *BOX, K)
    screened = jm.find_critical_points(trig, starts, screen=jm.NeighbourMinima(), **KW)
    assert screened.check == jm.RESULTS.successful and screened.result == jm.RESULTS.successful
    assert int(screened.num_searched) < K // 10
    e = screened.as_numpy()
    x = np.arccos(0.1)
    closed = [[0, -np.arcsin(0.1)], [x, -np.pi / 2], [-x, -np.pi / 2], [np.pi - x, np.pi / 2]]
    closed = np.array(closed + [[x - np.pi, np.pi / 2]])
    dist = np.max(np.abs(e["points"][:, None] - closed[None]), axis=-1)
    assert dist.shape == (5, 5) and np.all(dist.min(axis=0) < 1e-10)
    assert int(screened.hits.sum()) == int(screened.num_converged) >= K // 2
    assert int(screened.index_sum) == int(round(float(screened.winding_number))) == 3


def pair(x):
    """`x0^3 - e^2 x0 + x1^2` with `e = 0.02`: a minimum at `(e / sqrt 3, 0)` and a saddle at
    `(-e / sqrt 3, 0)`, 0.023 apart; no other critical point (winding number 0 on a box around
    them)."""
    return x[0] ** 3 - 0.02**2 * x[0] + x[1] ** 2


def test_screen_misses_close_pair_and_poincare_hopf_says_so():
    """Two critical points closer than the radius `r`: one start stands for both valleys, so one
    point is lost, and the index sum no longer matches the winding number."""
    starts = jm.uniform_starts(jr.key(2), *BOX, K)
    screen = jm.NeighbourMinima()
    assert float(screen.radius(starts, jnp.ones(K, bool), *BOX)) > 0.1  # >> 0.023
    screened = jm.find_critical_points(pair, starts, screen=screen, **KW)
    assert int(screened.count) == 1 and screened.check == jm.RESULTS.incomplete


@pytest.mark.slow
def test_screen_agrees_with_full_search():
    """Newton from every start (no screen) finds what the screen finds: the trigonometric map,
    the close pair (both points without the screen), a neural ODE (its default screen)."""
    for fn, count in ((trig, 5), (pair, 2)):
        starts = jm.uniform_starts(jr.key(1), *BOX, K)
        full = jm.find_critical_points(fn, starts, screen=jm.AllStarts(), **KW)
        assert int(full.count) == count and full.check == jm.RESULTS.successful
        if fn is trig:
            screened = jm.find_critical_points(fn, starts, screen=jm.NeighbourMinima(), **KW)
            np.testing.assert_allclose(
                screened.as_numpy()["points"], full.as_numpy()["points"], atol=1e-10
            )
    # An augmented neural ODE as in benchmarks/bench_morse.py (seven critical points in the box).
    node = augmented_node()
    starts = jm.uniform_starts(jr.key(0), *BOX, 2048)
    full = jm.find_critical_points(node, starts, screen=jm.AllStarts(), **KW)
    screened = jm.find_critical_points(node, starts, **KW)
    assert int(screened.num_searched) < int(full.num_searched) // 10
    assert int(full.count) == 7 and screened.check == full.check == jm.RESULTS.successful
    d, e = full.as_numpy(), screened.as_numpy()
    np.testing.assert_allclose(e["points"], d["points"], atol=1e-9)
    np.testing.assert_array_equal(e["index"], d["index"])


def test_screen_overflow_and_errors():
    starts = jm.uniform_starts(jr.key(3), *BOX, K)
    cps = jm.find_critical_points(trig, starts, screen=jm.NeighbourMinima(max_kept=4), **KW)
    assert cps.result == jm.RESULTS.screen_overflow and int(cps.num_searched) == 4
    with pytest.raises(TypeError, match="AbstractStartScreen"):
        jm.find_critical_points(trig, starts, screen="neighbours", **KW)
    with pytest.raises(ValueError, match="positive"):
        jm.NeighbourMinima(neighbours=0.0)


def test_model_default_screen():
    """The neural ODE screens by default (its Newton steps are dear), networks do not."""
    net = jm.random_mlp(jr.key(0), [2, 4, 1])
    node = jm.random_node(jr.key(0), 2, 3, width=4)
    assert isinstance(node.start_screen, jm.NeighbourMinima)
    assert isinstance(net.start_screen, jm.AllStarts)
