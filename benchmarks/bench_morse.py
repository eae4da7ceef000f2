"""Critical-point search: jaxstat.morse against an independent dense-grid + scipy search.

Two maps on the square [-3, 3]^2:

- a [2, 16, 16, 1] tanh MLP (Gaussian weights, scale 3);
- an augmented neural ODE with a 3-dimensional phase space, `f(x) = a^T phi_1(W x)`, `W` of
  shape (3, 2) close to [I; 0], `a` close to e_3, vector field an `eqx.nn.MLP` 3 -> 16 -> 3
  (tanh), time-1 map by Tsit5 with 32 steps.

jaxstat: `find_critical_points` from 10,000 uniform starts (Newton on grad f = 0 vmapped over 256
lanes, a lane taking the next start as soon as its solve ends, with a Levenberg-Marquardt
fallback), timed after ahead-of-time compilation. The neural ODE's default start screen
(`NeighbourMinima`: |grad f| at every start, one solve with the first variational equation each;
Newton only from the starts where |grad f| is smallest within a radius holding 16 starts on
average, over 64 lanes) decides which starts Newton runs from; the MLP searches from every
start. `Newton starts` is the number it ran from.

Peer (numpy + scipy, sharing no code with jaxstat): grad f and hess f derived by hand (backprop for
the MLP; the first and second variational equations integrated by `scipy.integrate.solve_ivp`
(DOP853, rtol 1e-11) for the neural ODE), |grad f| on a dense grid, seeds at the grid's local
minima of |grad f|, refined by `scipy.optimize.root` (hybr), deduplicated.

Agreement: points matched within 1e-6 (the neural ODE's Tsit5 map differs from the exact flow by
~1e-9, which moves its critical points by ~1e-8), Morse indices compared on matched points.
"""

import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import scipy.integrate
import scipy.ndimage
import scipy.optimize
from _common import main, Table

import jaxstat.morse as jm


jax.config.update("jax_enable_x64", True)

LO, HI = -3.0, 3.0
MATCH = 1e-6
# Newton (and the Levenberg-Marquardt fallback) stop after this many steps: a start that has not
# converged by then is almost always wandering in a saturated region (default 100).
MAX_STEPS = 30


# ---------------------------------------------------------------------------------------------
# The peer: numpy derivatives, dense grid, scipy root finding.


def mlp_peer(net):
    w1, b1 = np.asarray(net.layers[0].weight), np.asarray(net.layers[0].bias)
    w2, b2 = np.asarray(net.layers[1].weight), np.asarray(net.layers[1].bias)
    a = np.asarray(net.layers[2].weight[0])

    def grad(xs):  # (N, 2) -> (N, 2), backprop by hand
        z1 = xs @ w1.T + b1
        with np.errstate(over="ignore"):
            d1 = 1 / np.cosh(z1) ** 2
            d2 = 1 / np.cosh(np.tanh(z1) @ w2.T + b2) ** 2
        return (d1 * ((d2 * a) @ w2)) @ w1

    def hess(x):
        z1 = w1 @ x + b1
        z2 = w2 @ np.tanh(z1) + b2
        with np.errstate(over="ignore"):
            d1, d2 = 1 / np.cosh(z1) ** 2, 1 / np.cosh(z2) ** 2
        dd1, dd2 = -2 * np.tanh(z1) * d1, -2 * np.tanh(z2) * d2
        v1 = w2.T @ (d2 * a)
        j = w2 @ (d1[:, None] * w1)
        return w1.T @ ((dd1 * v1)[:, None] * w1) + j.T @ ((dd2 * a)[:, None] * j)

    return grad, hess


def node_peer(node):
    """grad f and hess f of the neural ODE from the variational equations, integrated by scipy."""
    mlp = node.field.mlp
    w1, b1 = np.asarray(mlp.layers[0].weight), np.asarray(mlp.layers[0].bias)
    w2, b2 = np.asarray(mlp.layers[1].weight), np.asarray(mlp.layers[1].bias)
    wx, bx = np.asarray(node.weight), np.asarray(node.bias)
    a = np.asarray(node.readout)
    m, n = wx.shape
    opts = dict(method="DOP853", rtol=1e-11, atol=1e-12)

    def grad(xs):  # (N, n): y' = F(y), Y' = DF(y) Y for every point at once
        k = xs.shape[0]

        def rhs(t, s):
            y = s[: k * m].reshape(k, m)
            dy = s[k * m :].reshape(k, m, n)
            z = y @ w1.T + b1
            d = 1 / np.cosh(z) ** 2
            fy = np.tanh(z) @ w2.T + b2
            jac = np.einsum("ij,kj,jl->kil", w2, d, w1)  # DF(y) per point
            return np.concatenate([fy.ravel(), np.einsum("kil,kln->kin", jac, dy).ravel()])

        y0 = xs @ wx.T + bx
        s0 = np.concatenate([y0.ravel(), np.broadcast_to(wx, (k, m, n)).ravel()])
        sol = scipy.integrate.solve_ivp(rhs, (0.0, node.t1), s0, **opts)
        dy = sol.y[k * m :, -1].reshape(k, m, n)
        return np.einsum("kmn,m->kn", dy, a)

    def hess(x):  # one point: y, Y, and Z' = DF Z + D2F[Y, Y]
        def rhs(t, s):
            y, dy, ddy = s[:m], s[m : m + m * n].reshape(m, n), s[m + m * n :].reshape(m, n, n)
            z = w1 @ y + b1
            d = 1 / np.cosh(z) ** 2
            dd = -2 * np.tanh(z) * d
            jac = w2 @ (d[:, None] * w1)
            u = w1 @ dy  # (width, n)
            second = np.einsum("hw,w,wi,wj->hij", w2, dd, u, u)
            out = [np.tanh(z) @ w2.T + b2, jac @ dy, np.einsum("hm,mij->hij", jac, ddy) + second]
            return np.concatenate([o.ravel() for o in out])

        s0 = np.concatenate([wx @ x + bx, wx.ravel(), np.zeros(m * n * n)])
        sol = scipy.integrate.solve_ivp(rhs, (0.0, node.t1), s0, **opts)
        ddy = sol.y[m + m * n :, -1].reshape(m, n, n)
        return np.einsum("m,mij->ij", a, ddy)

    return grad, hess


def grid_scipy_search(grad, hess, n_grid):
    xs = np.linspace(LO, HI, n_grid)
    grid = np.stack(np.meshgrid(xs, xs, indexing="ij"), -1)
    g = np.linalg.norm(grad(grid.reshape(-1, 2)), axis=1).reshape(n_grid, n_grid)
    seeds = grid[g == scipy.ndimage.minimum_filter(g, size=3, mode="nearest")]

    def g1(x):
        return grad(x[None, :])[0]

    points = []
    for s in seeds:
        sol = scipy.optimize.root(g1, s, jac=hess, method="hybr", options={"factor": 0.01})
        x = sol.x
        if np.linalg.norm(g1(x)) < 1e-8 and np.all((x >= LO) & (x <= HI)):
            if not any(np.max(np.abs(x - p)) < MATCH for p in points):
                points.append(x)
    points = np.array(points).reshape(-1, 2)
    index = np.array([np.sum(np.linalg.eigvalsh(hess(p)) < 0) for p in points], int)
    return points, index, len(seeds)


# ---------------------------------------------------------------------------------------------


def augmented_node(key):
    """An augmented neural ODE in the style of Dupont et al.: the input padded by one zero
    coordinate (plus a small perturbation, so that W and a are generic), the readout mostly on the
    augmented coordinate, a random tanh field 3 -> 16 -> 3 with first-layer weights scaled by 3."""
    kf, kw, ka = jr.split(key, 3)
    mlp = eqx.nn.MLP(3, 3, 16, 1, activation=jnp.tanh, key=kf)
    mlp = eqx.tree_at(lambda m: m.layers[0].weight, mlp, 3.0 * mlp.layers[0].weight)
    weight = jnp.concatenate([jnp.eye(2), jnp.zeros((1, 2))]) + 0.1 * jr.normal(kw, (3, 2))
    readout = jnp.array([0.0, 0.0, 1.0]) + 0.1 * jr.normal(ka, (3,))
    return jm.NeuralODE(mlp, weight, jnp.zeros(3), readout)


def compare(ours, ours_index, ref, ref_index):
    matched, worst, agree = 0, 0.0, True
    for p, i in zip(ours, ours_index):
        if len(ref) == 0:
            break
        dist = np.max(np.abs(ref - p), axis=1)
        j = int(np.argmin(dist))
        if dist[j] < MATCH:
            matched += 1
            worst = max(worst, float(dist[j]))
            agree &= bool(ref_index[j] == i)
    return matched, worst, agree


def run(quick: bool = False) -> Table:
    k = 1000 if quick else 10_000
    table = Table(
        name="morse",
        title="Critical points: batched Newton search vs dense grid + scipy",
        description=__doc__.split("\n\n", 1)[1],
        columns=[
            "map",
            "starts",
            "Newton starts",
            "jaxstat [s]",
            "compile [s]",
            "peer [s]",
            "ratio jaxstat/peer",
            "points jaxstat",
            "points peer",
            "matched",
            "max distance",
            "indices agree",
        ],
    )
    lo, hi = LO * jnp.ones(2), HI * jnp.ones(2)
    starts = jm.uniform_starts(jr.key(1), lo, hi, k)
    net = jm.random_mlp(jr.key(3), [2, 16, 16, 1], weight_scale=3.0)
    node = augmented_node(jr.key(5))
    cases = [
        ("MLP [2, 16, 16, 1] tanh", net, mlp_peer(net), 121 if quick else 241),
        ("neural ODE, phase dim 3", node, node_peer(node), 61 if quick else 121),
    ]
    for name, model, (grad, hess), n_grid in cases:
        search = eqx.filter_jit(
            lambda m, s: jm.find_critical_points(
                m, s, lower=lo, upper=hi, max_points=64, max_steps=MAX_STEPS
            )
        )
        # Compiled ahead of time, then one timed call whose result is the one compared (the
        # neural-ODE search over 10,000 starts takes minutes on 2 CPU cores).
        t0 = time.perf_counter()
        compiled = search.lower(model, starts).compile()
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        cps = jax.block_until_ready(compiled(model, starts))
        t_ours = time.perf_counter() - t0
        d = cps.as_numpy()
        t0 = time.perf_counter()
        ref, ref_index, n_seeds = grid_scipy_search(grad, hess, n_grid)
        t_peer = time.perf_counter() - t0
        matched, worst, agree = compare(d["points"], d["index"], ref, ref_index)
        table.add(
            name,
            k,
            int(cps.num_searched),
            t_ours,
            compile_s,
            t_peer,
            t_ours / t_peer,
            len(d["points"]),
            len(ref),
            matched,
            worst,
            agree,
        )
        table.notes.append(
            f"{name}: peer grid {n_grid} x {n_grid} ({n_seeds} seeds); jaxstat index counts "
            f"{np.bincount(d['index'], minlength=3).tolist()}, "
            f"{int(np.sum(d['degenerate']))} degenerate; hits {d['hits'].tolist()}; "
            f"completeness check {'passed' if cps.complete else 'failed'}, winding number "
            f"{float(cps.winding_number):.3f}, index sum {int(cps.index_sum)}."
        )
    table.notes.append(
        "`compile`: tracing and XLA compilation of the whole search (ahead of time). Newton and "
        f"Levenberg-Marquardt capped at {MAX_STEPS} steps. One timed call per search; the machine "
        "may have been shared."
    )
    return table


if __name__ == "__main__":
    main(run)
