"""The tour behind `jaxstat tour`: every part at small sizes, each number checked against a
reference (a closed form, an independent computation or a conservation law), figures saved.

Each part is a function `part(out) -> list[Check]` that saves its figure in the folder `out`.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib


@dataclasses.dataclass
class Check:
    """One line of the tour's results table."""

    part: str
    what: str
    value: str
    reference: str
    ok: bool


def _check(part: str, what: str, value: str, reference: str, ok) -> Check:
    return Check(part, what, value, reference, bool(ok))


@functools.cache
def _jit(fn):
    """`eqx.filter_jit(fn)`, one for the process: a part's functions live at module level, so
    that running a part again reuses their compiled programs (a function defined inside the part
    would be a new function, traced and compiled again, at each run)."""
    import equinox as eqx

    return eqx.filter_jit(fn)


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _successful(results, result, what: str) -> None:
    """Raise the library's own message for a solve run with `throw=False` that failed.

    The tour's solves pass `throw=False` and read `result` here, outside their compiled
    programs: a program that raises (`eqx.error_if`) calls back to Python, and JAX's persistent
    compilation cache never stores such a program, so every tour would compile it again."""
    if result != results.successful:
        raise RuntimeError(f"{what}: {results[result]}")


def _rel(a, b) -> float:
    return abs(float(a) - float(b)) / max(abs(float(b)), 1e-30)


def _layer_loss(layer, x, w):
    """`mean(layer(x)^2)` with the graph's weights `w`, its pullback (a pytree: the program
    returns it) and the solve's result code (`throw=False`: read by the caller, outside the
    program). The gradient is then `_pull(pullback)`, a program of its own: the implicit
    adjoint guards its linear solve with a host callback (`jaxstat._implicit`: a gradient has no
    result code to report a failure in), which JAX's persistent cache cannot store, so that
    program, compiled again by every tour, holds the backward pass only."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    def loss(w):
        moved = eqx.tree_at(lambda m: m.graph.weights, layer, w)
        sol = moved.solve(x, throw=False)
        return jnp.mean(moved.readout(sol.value) ** 2), sol.result

    value, pullback, result = jax.vjp(loss, w, has_aux=True)
    return value, pullback, result


def _pull(pullback, value):
    """The gradient from `_layer_loss`'s pullback."""
    import jax.numpy as jnp

    (grad,) = pullback(jnp.ones_like(value))
    return grad


def stationary(out: pathlib.Path) -> list[Check]:
    import jax.random as jr
    import numpy as np

    import jaxstat.graphs as jg
    import jaxstat.stationary as js

    # Host-side arithmetic (guesses, intensities, the finite difference) is numpy: each eager jax
    # operation would compile a small program of its own.
    checks = []
    # A Kerr dimer: edge weight 2, potential delta on both nodes. Driven symmetrically it stays in
    # the symmetric mode (H v = delta v), whose intensity solves the single-node closed form
    # P = I (gamma^2 + (delta + kappa I)^2), P = |s|^2: three states in the bistable range.
    gamma, kappa, delta, drive = 0.1, -1.0, 1.0, 0.05
    g = jg.from_edges([[0, 1]], [2.0], potential=np.full(2, delta, np.float32))
    model = js.DrivenDampedModel(gamma=gamma, kappa=kappa)
    s = np.full(2, np.sqrt(drive), np.complex64)
    roots = np.sort(np.roots([kappa**2, 2 * delta * kappa, delta**2 + gamma**2, -drive]).real)
    solved = []
    for k, intensity in enumerate(roots):
        # The three branches share one compiled solve (same shapes, new values).
        guess = (1.05 * s / (gamma + 1j * (delta + kappa * intensity))).astype(np.complex64)
        sol = js.solve(model, g, s, guess, throw=False)
        value = float(np.abs(np.asarray(sol.value)[0]) ** 2)
        stable = bool(sol.stability.stable)
        solved.append((value, stable))
        checks.append(
            _check(
                "stationary",
                f"Kerr dimer, branch {k + 1}: intensity |psi|^2",
                f"{value:.5f}",
                f"closed-form root {intensity:.5f}",
                _rel(value, intensity) < 1e-3,
            )
        )
        # Along P(I), the middle branch (dP/dI < 0) is the unstable one.
        dP = (
            gamma**2
            + (delta + kappa * intensity) ** 2
            + 2 * kappa * intensity * (delta + kappa * intensity)
        )
        checks.append(
            _check(
                "stationary",
                f"branch {k + 1}: spectral abscissa of the linearised dynamics",
                f"{float(sol.stability.abscissa):+.4f} ({'stable' if stable else 'unstable'})",
                f"{'unstable' if dP < 0 else 'stable'} (sign of dP/dI)",
                stable == (dP > 0),
            )
        )
    plt = _figure()
    intensity = np.linspace(0, 1.6, 800)
    power = intensity * (gamma**2 + (delta + kappa * intensity) ** 2)
    slope = np.gradient(power, intensity)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(np.where(slope > 0, power, np.nan), intensity, "C0", label="stable branch")
    ax.plot(np.where(slope <= 0, power, np.nan), intensity, "C3--", label="unstable branch")
    for value, stable in solved:
        ax.plot(drive, value, "o", color="C0" if stable else "C3", ms=8)
    ax.axvline(drive, color="0.6", lw=0.8)
    ax.set_xlabel(r"drive power $|s|^2$")
    ax.set_ylabel(r"intensity $|\psi|^2$")
    ax.set_title("Kerr bistability: closed form (lines), jaxstat solves (dots)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "stationary_kerr_bistability.png", dpi=120)
    plt.close(fig)

    # A graph-stationary layer on 1,000 nodes: the implicit adjoint against finite differences.
    # (The certificate is shown on the dimer above; this check is about the gradient, so the layer
    # skips it: `stability=None`, less to compile.)
    # (The k-nearest-neighbour graph of 1,000 random points in the plane, built on the host.)
    graph = jg.knn_graph(np.random.default_rng(0).standard_normal((1000, 2)), k=5)
    model = js.GradientModel(js.Quartic(1.0, 0.5))
    layer = js.feature_layer(graph, model, 8, 8, key=jr.key(1), stability=None)
    x = np.random.default_rng(2).standard_normal((1000, 8)).astype(np.float32)

    # The loss (forward solve) in one compiled program, called at w and at w +- h v for the
    # central difference (the weights are an argument, so the three calls share it), and the
    # gradient at w (implicit adjoint) from its pullback.
    w = np.asarray(layer.graph.weights)
    # A relative direction: w +- h v stays >= 0.
    v = w * np.random.default_rng(3).standard_normal(w.shape).astype(w.dtype)
    h = 1e-2
    losses = []
    for weights in (w, w + h * v, w - h * v):
        value, pullback, result = _jit(_layer_loss)(layer, x, weights)
        _successful(js.RESULTS, result, "the layer's solve")
        losses.append(float(value))
        if len(losses) == 1:
            grad = _jit(_pull)(pullback, value)
    directional = float(np.dot(np.asarray(grad, np.float64), v))
    fd = (losses[1] - losses[2]) / (2 * h)
    checks.append(
        _check(
            "stationary",
            "layer on 1,000 nodes: d loss / d edge weights along a direction",
            f"{directional:.5e}",
            f"central difference {fd:.5e}",
            _rel(directional, fd) < 1e-2,
        )
    )
    return checks


def supragraph(out: pathlib.Path) -> list[Check]:
    import jax.random as jr
    import numpy as np

    import jaxstat.graphs as jg
    import jaxstat.stationary as js
    import jaxstat.supragraph as sg

    # A two-layer Kerr network solved as one global system (Newton on all layers' states at
    # once, matrix-free GMRES on the supra-graph Jacobian), against the layer-by-layer pass. (The
    # default solver of a nonlinear network, `BlockTriangular`, is that layer-by-layer pass, so
    # it would agree by construction; Newton is an independent computation.)
    g = jg.random_graph(jr.key(0), 30, 90)
    # (States compared, not certified: `stability=None` on the layers, less to compile.) Input
    # width 8 = the ReIm readout of 4 complex states: both layers' solves in the sequential pass
    # have the same shapes and share one compiled program.
    model = js.DrivenDampedModel(1.0, 0.3)
    net = sg.feature_network(g, model, [8, 4, 4], key=jr.key(1), stability=None)
    x = np.random.default_rng(2).standard_normal((30, 8)).astype(np.float32)
    # `throw=False`, the result read below: a program without the error's host callback, which
    # JAX's persistent compilation cache can store for the next tour.
    sol = sg.solve(net, x, solver=sg.default_root_finder(np.float32), throw=False)
    converged = bool(sol.result == sg.RESULTS.successful)
    # The sequential pass, each layer's solve read the same way.
    sequential = []
    for i, layer_sol in enumerate(net.layer_solutions(x, throw=False)):
        _successful(js.RESULTS, layer_sol.result, f"layer {i + 1} of the sequential pass")
        sequential.append(layer_sol.value)
    gap = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(sol.value, sequential)
    )
    S = sg.supragraph(net)
    nnz, dense = S.jacobian_pattern().nnz, S.dense_size()
    return [
        _check(
            "supragraph",
            "2-layer Kerr network: global Newton solve - sequential pass (max)",
            f"{gap:.1e} ({int(sol.num_steps)} Newton steps"
            + (")" if converged else f", {sg.RESULTS[sol.result]})"),
            "0 (float32: < 1e-4)",
            converged and gap < 1e-4,
        ),
        _check(
            "supragraph",
            "global Jacobian nonzeros (supra-graph sparsity)",
            f"{nnz:,} ({S.num_intra_edges} intra-, {S.num_inter_edges} inter-layer edges)",
            f"dense {dense:,}",
            nnz < dense,
        ),
    ]


def strata(out: pathlib.Path) -> list[Check]:
    import jax
    import numpy as np
    import optax

    import jaxstat.strata as st

    # Natural gradient under the shifted entropic metric G = diag(1 / (w + eps)) on
    # L(w) = 1/2 |w - target|^2: weights whose target is negative reach the face w = 0 in finite
    # time (the edge dies); a weight at 0 with a positive target leaves it (the edge is born).
    w = np.array([1.0, 0.6, 0.0, 0.0, 0.3], np.float32)
    target = np.array([1.5, -0.5, 0.8, -0.2, 0.3], np.float32)
    tx = st.natural_gradient(0.2, st.ShiftedEntropy(0.05))
    state = tx.init(w)

    @jax.jit
    def step(w, state):
        updates, state = tx.update(w - target, state, w)
        return optax.apply_updates(w, updates), state

    path = [w]
    for _ in range(60):
        w, state = step(w, state)
        path.append(np.asarray(w))
    path = np.stack(path)
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 4))
    for e in range(path.shape[1]):
        ax.plot(path[:, e], label=f"edge {e}: target {float(target[e]):+.1f}")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel("natural-gradient step")
    ax.set_ylabel("edge weight $w_e$")
    ax.set_title("Edges die (reach 0) and are born (leave 0) on the stratified orthant")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "strata_edges.png", dpi=120)
    plt.close(fig)
    died = path[-1, [1, 3]]
    born = path[-1, 2]
    return [
        _check(
            "strata",
            "weights with negative targets after 60 steps (edges 1, 3)",
            f"{died[0]:.2g}, {died[1]:.2g}",
            "exactly 0 (the face is reached)",
            bool(np.all(died == 0)),
        ),
        _check(
            "strata",
            "weight started at 0 with target 0.8 (edge 2)",
            f"{born:.4f}",
            "0.8 (the constrained minimum)",
            abs(born - 0.8) < 1e-3,
        ),
        _check(
            "strata",
            "support pattern (stratum) at the end",
            st.stratum(state).summary(),
            "edges 0, 2, 4 alive",
            bool(np.all((path[-1] > 0) == np.array([1, 0, 1, 0, 1]))),
        ),
    ]


def _sin_plus_half(x):
    import jax.numpy as jnp

    return jnp.sin(x) + 0.5


def pde(out: pathlib.Path) -> list[Check]:
    import jax.numpy as jnp
    import numpy as np

    import jaxstat.pde as jp

    # Burgers p_t + (p^2/2)_x = 0 from sin x + 1/2 on a periodic grid (WENO5, Godunov, SSPRK3):
    # the shock forms at t* = -1 / min p0' = 1 and moves at the Rankine-Hugoniot speed 1/2.
    grid = jp.UniformGrid(0.0, 2 * jnp.pi, 256)
    p0 = grid.cell_averages(_sin_plus_half)
    # To t = 0.8, before the shock, then on from there to t = 1.6: two calls of one program
    # (with two save times, `solve`'s program has no host callback: JAX's persistent cache
    # stores it for the next tour).
    eq = jp.Burgers(grid)
    early = jp.solve(eq, p0, np.array([0.0, 0.8]), 0.0, throw=False)
    _successful(jp.RESULTS, early.result, "pde.solve (Burgers) to t = 0.8")
    late = jp.solve(eq, early.ys[-1], np.array([0.8, 1.6]), 0.0, throw=False)
    _successful(jp.RESULTS, late.result, "pde.solve (Burgers) to t = 1.6")
    ts = np.array([0.0, 0.8, 1.6])
    ys = np.concatenate([np.asarray(early.ys), np.asarray(late.ys)[1:]])
    shocks = jp.detect_shocks(late.ys[-1], grid)
    t_star = float(jp.shock_formation(jnp.sin, 0.0, 2 * jnp.pi).time)
    valid = np.asarray(shocks.valid)
    where = float(np.asarray(shocks.position)[valid][0])
    speed = float(np.asarray(shocks.speed)[valid][0])
    x = np.asarray(grid.centres())
    # Before the shock the exact solution follows characteristics: p = p0(x0), x = x0 + t p0(x0).
    x0 = x.copy()
    for _ in range(50):
        x0 = x0 - (x0 + 0.8 * (np.sin(x0) + 0.5) - x) / (1 + 0.8 * np.cos(x0))
    exact = np.sin(x0) + 0.5
    err = float(np.mean(np.abs(ys[1] - exact)))
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, t in enumerate(ts):
        ax.plot(x, ys[k], label=f"jaxstat, t = {t:.1f}")
    ax.plot(x, exact, "k:", label="characteristics, t = 0.8")
    ax.axvline(
        np.pi + 0.8, color="k", lw=0.8, ls="--", label=r"exact shock at t = 1.6: $\pi + 0.8$"
    )
    ax.set_xlabel("$x$")
    ax.set_ylabel("$p(x, t)$ (cell averages)")
    ax.set_title(r"Burgers $p_t + (p^2/2)_x = 0$: a shock forms at $t^* = 1$")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "pde_burgers_shock.png", dpi=120)
    plt.close(fig)
    h = float(grid.spacing[0])
    return [
        _check(
            "pde",
            "shock formation time t*",
            f"{t_star:.4f}",
            "-1 / min p0' = 1",
            abs(t_star - 1) < 1e-3,
        ),
        _check(
            "pde",
            "smooth solution at t = 0.8: mean |p - exact|",
            f"{err:.1e}",
            "characteristics (< 1e-3)",
            err < 1e-3,
        ),
        _check(
            "pde",
            "shock position at t = 1.6",
            f"{where:.4f}",
            f"pi + 0.8 = {np.pi + 0.8:.4f}",
            abs(where - (np.pi + 0.8)) < 2 * h,
        ),
        _check(
            "pde",
            "shock speed",
            f"{speed:.3f}",
            "Rankine-Hugoniot (p_l + p_r) / 2 = 0.5",
            abs(speed - 0.5) < 0.02,
        ),
    ]


def _values(fn, x):
    """`fn` at each row of `x`."""
    import jax

    return jax.vmap(fn)(x)


def morse(out: pathlib.Path) -> list[Check]:
    import jax
    import jax.random as jr
    import numpy as np

    import jaxstat.morse as jm

    # Critical points of a random tanh MLP R^2 -> R (Morse for almost every weight), Newton from
    # more and more starts until the Poincare-Hopf check holds. float64: the degeneracy test and
    # the winding number need it at this weight scale.
    with jax.enable_x64(True):
        net = jm.random_mlp(jr.key(3), [2, 16, 16, 1], weight_scale=3.0)
        verdict = jm.classify(net)
        lo, hi = np.full(2, -3.0), np.full(2, 3.0)
        cps = jm.find_all_critical_points(
            net,
            jr.key(1),
            lo,
            hi,
            refinement=jm.DoublingStarts(1024, 4096),
            fallback=None,
            throw=False,
        )
        _successful(jm.RESULTS, cps.result, "morse.find_all_critical_points")
        d = cps.as_numpy()
        g = np.linspace(-3, 3, 200)
        X, Y = np.meshgrid(g, g)
        Z = np.asarray(_jit(_values)(net, np.stack([X.ravel(), Y.ravel()], -1))).reshape(X.shape)
        counts = [int(c) for c in cps.index_counts()]
        count, starts, degenerate = int(cps.count), int(cps.num_starts), int(cps.degenerate.sum())
        index_sum, winding = int(cps.index_sum), float(cps.winding_number)
        complete = bool(cps.complete)
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    cs = ax.contourf(X, Y, Z, levels=30, cmap="viridis")
    fig.colorbar(cs, ax=ax, label="$f(x)$")
    names = ["minimum (index 0)", "saddle (index 1)", "maximum (index 2)"]
    for k, (marker, colour) in enumerate([("o", "w"), ("x", "r"), ("^", "k")]):
        pts = d["points"][d["index"] == k]
        ax.plot(pts[:, 0], pts[:, 1], marker, color=colour, ls="none", label=names[k])
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    ax.set_title("Critical points of a tanh MLP $\\mathbb{R}^2 \\to \\mathbb{R}$")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(out / "morse_critical_points.png", dpi=120)
    plt.close(fig)
    return [
        _check(
            "morse",
            "architecture theorem for 2 -> 16 -> 16 -> 1 (tanh)",
            verdict.verdict.value,
            "no bottleneck: Morse for almost every weight",
            verdict.verdict == jm.Verdict.GENERICALLY_MORSE,
        ),
        _check(
            "morse",
            f"critical points in [-3, 3]^2 ({starts} Newton starts)",
            f"{count}: {counts[0]} minima, {counts[1]} saddles, {counts[2]} maxima",
            "every point non-degenerate (Hessian)",
            degenerate == 0,
        ),
        _check(
            "morse",
            "Poincare-Hopf: sum of (-1)^index",
            f"{index_sum}",
            f"winding number of grad f on the boundary = {winding:.0f}",
            complete,
        ),
    ]


def _value(objective, graphon):
    """`objective(graphon)` (one compiled program for every graphon of one shape)."""
    return objective(graphon)


def _graphon_w(x, y):
    """W(x, y) = 0.15 + 0.7 x y (at module level: a graphon's function is a static argument of
    its compiled programs, so a new function each run would compile them again)."""
    return 0.15 + 0.7 * x * y


def graphons(out: pathlib.Path) -> list[Check]:
    import diffrax as dfx
    import jax.random as jr
    import numpy as np

    import jaxstat.graphons as gn

    # The 4-cycle density of a W-random graph against t(C4, W) = trace(T_W^4), T_W the integral
    # operator of W, by an independent midpoint rule in numpy.
    W = gn.FunctionGraphon(_graphon_w)
    A = gn.sample_graph(jr.key(0), W, 300, sort=True)
    sampled = float(gn.homomorphism_density(gn.Pattern.cycle(4), A))
    u = (np.arange(400) + 0.5) / 400
    K = (0.15 + 0.7 * np.outer(u, u)) / 400
    exact = float(np.trace(np.linalg.matrix_power(K, 4)))
    # The projected gradient flow of F = -t(K3) + t(K2)/2 (time scaled by n^2): F decreases.
    F = -gn.HomomorphismDensity(gn.Pattern.cycle(3)) + 0.5 * gn.HomomorphismDensity([(0, 1)])
    Wn, sol = gn.graphon_flow(F, W, 0.5, n=64, throw=False)
    _successful(dfx.RESULTS, sol.result, "graphons.graphon_flow")
    end = sol.ys[-1]
    f0, f1 = (float(_jit(_value)(F, graphon)) for graphon in (Wn, gn.StepGraphon(end)))
    end = np.asarray(end)
    at_one = float(np.mean(end == 1.0))
    plt = _figure()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), constrained_layout=True)
    for ax, M, title in [(axes[0], Wn.values, "t = 0"), (axes[1], end, "t = 0.5")]:
        im = ax.imshow(np.asarray(M), vmin=0, vmax=1, origin="lower", extent=(0, 1, 0, 1))
        ax.set_title(f"$W$ at {title}")
        ax.set_xlabel("$x$")
    axes[0].set_ylabel("$y$")
    fig.colorbar(im, ax=axes, label="$W(x, y)$")
    fig.suptitle(r"Projected gradient flow of $-t(K_3) + t(K_2)/2$ on $[0, 1]$-valued graphons")
    fig.savefig(out / "graphons_flow.png", dpi=120)
    plt.close(fig)
    return [
        _check(
            "graphons",
            "t(C4, G(300, W)) of a sampled graph",
            f"{sampled:.4f}",
            f"t(C4, W) = {exact:.4f} (+- 0.005: O(1/n) sampling and non-injective maps)",
            abs(sampled - exact) < 0.005,
        ),
        _check(
            "graphons",
            "objective along the gradient flow",
            f"{f0:.4f} -> {f1:.4f}",
            "decreases",
            f1 < f0,
        ),
        _check(
            "graphons",
            "fraction of weights on the face W = 1 at t = 0.5",
            f"{at_one:.3f}",
            "> 0 (the projected flow reaches the face)",
            at_one > 0,
        ),
    ]


# The quotient part's functions, at module level (see `_jit`).


def _relu_mlp():
    """A ReLU MLP 4 -> 16 -> 16 -> 2, float64, its weights `N(0, 2 / fan_in)` and biases
    `N(0, 0.1^2)` drawn with numpy into the structure of `eqx.nn.MLP` (built abstractly: its own
    initialisation draws every layer's weights apart, a random-bit generation each, which XLA
    takes about 0.2 s apiece to compile)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import jax.random as jr
    import numpy as np

    rng = np.random.default_rng(0)

    def draw(leaf):
        if not isinstance(leaf, jax.ShapeDtypeStruct):
            return leaf
        scale = np.sqrt(2 / leaf.shape[1]) if len(leaf.shape) == 2 else 0.1
        return jnp.asarray(scale * rng.standard_normal(leaf.shape), jnp.float64)

    shapes = eqx.filter_eval_shape(eqx.nn.MLP, 4, 2, 16, 2, activation=jax.nn.relu, key=jr.key(0))
    return jax.tree.map(draw, shapes)


@functools.cache
def _relu_mlp_and_group():
    """The part's ReLU MLP (call under `jax.enable_x64`) and its symmetry group, once per process:
    the group's sites hold selector functions, so a group built again would be a new static
    argument of `_orbit_norms`, compiled again."""
    import jaxstat.quotient as jq

    mlp = _relu_mlp()
    return mlp, jq.symmetry(mlp)


def _orbit_norms(key, params, static, group, x):
    """The model itself first, then 32 random moves along its orbit (one batched program): the
    raw norm, the quotient norm and max |f(g . theta)(x) - f(theta)(x)| of each, and whether
    every quotient norm converged (`orbit_min_norm_result`: read by `group.check_converged` after
    the program, which then has no host callback)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import jax.random as jr

    keys = jr.split(key, 32)
    moves = jax.vmap(lambda k: group.act(params, group.random_element(k, params)))(keys)
    batch = jax.tree.map(lambda p, m: jnp.concatenate([p[None], m]), params, moves)

    def one(p):
        fx = jax.vmap(eqx.combine(p, static))(x)
        raw = jnp.sqrt(sum(jnp.sum(q**2) for q in jax.tree.leaves(p)))
        quo, converged = group.orbit_min_norm_result(p)
        return raw, quo, fx, converged

    raw, quo, fx, converged = jax.vmap(one)(batch)
    return raw, quo, jnp.max(jnp.abs(fx - fx[0]), axis=(1, 2)), converged


def _double_well(y):
    import jax.numpy as jnp

    return jnp.sum((y**2 - 1) ** 2)


def _two_wells(p):
    """A sharp, deeper minimum at 0 and a wide one at 2.5."""
    import jax.numpy as jnp

    y = p["x"]
    return jnp.sum(-1.2 * jnp.exp(-(y**2) / (2 * 0.1**2)) - jnp.exp(-((y - 2.5) ** 2) / 2))


def _train(opt, steps=300):
    """Where `opt` takes x = 0.3 on `_two_wells` in `steps` steps."""
    import jax
    import jax.numpy as jnp
    import optax

    p = {"x": jnp.array([0.3])}

    def step(carry, _):
        p, state = carry
        updates, state = opt.update(jax.grad(_two_wells)(p), state, p, value_fn=_two_wells)
        return (optax.apply_updates(p, updates), state), None

    (p, _), _ = jax.lax.scan(step, (p, opt.init(p)), None, length=steps)
    return p["x"][0]


def _sgd_end():
    import optax

    return _train(optax.chain(optax.identity(), optax.sgd(0.005)))


def _entropy_sgd_end():
    import jax.random as jr
    import optax

    import jaxstat.quotient as jq

    esgd = jq.entropy_sgd(
        langevin_steps=100,
        gamma=0.3,
        scoping=1e-3,
        inner_learning_rate=0.01,
        thermal_noise=0.8,
        averaging=0.05,
        key=jr.key(4),
    )
    return _train(optax.chain(esgd, optax.sgd(1.0)))


def _two_wells_at(y):
    """`_two_wells` of a point `y` of shape `(1,)`."""
    return _two_wells({"x": y})


def _two_wells_line(ys):
    import jax

    return jax.vmap(_two_wells_at)(ys[:, None])


def _local_entropy_lines(ys, scopes):
    """`_two_wells` and its local entropy at each scope in `scopes` (rows), along the points `ys`.

    The local entropies come from one call of `local_entropy` on concrete points (the scopes
    broadcast against them), not from inside a compiled program of the tour: it then reads its
    quadrature checks on the host, after its program, which has no host callback (JAX's
    persistent compilation cache cannot store a program with one)."""
    import numpy as np

    import jaxstat.pde as jp

    points = np.broadcast_to(np.asarray(ys)[:, None], (len(scopes), ys.shape[0], 1))
    gamma = np.asarray(scopes)[:, None]
    F, _ = jp.local_entropy(
        _two_wells_at, points, gamma=gamma, beta=3.0, half_width=12.0, num_nodes=4001
    )
    return _jit(_two_wells_line)(ys), F


def quotient(out: pathlib.Path) -> list[Check]:
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import jax.random as jr
    import numpy as np

    import jaxstat.pde as jp
    import jaxstat.quotient as jq

    with jax.enable_x64(True):
        # 1. Symmetry: a ReLU MLP's group (unit permutations x positive rescalings), derived from
        # the model. Random elements move the raw weight norm but not the function, nor the
        # quotient observable min_g |g . theta|.
        mlp, group = _relu_mlp_and_group()
        params, static = eqx.partition(mlp, eqx.is_inexact_array)
        x = np.random.default_rng(1).normal(size=(128, 4))
        raw, quo, fdiff, converged = _jit(_orbit_norms)(jr.key(2), params, static, group, x)
        raw, quo = np.asarray(raw), np.asarray(group.check_converged(quo, converged))
        raw0, quo0, raw, quo = float(raw[0]), float(quo[0]), raw[1:], quo[1:]
        fdiff, quo_spread = float(np.max(fdiff)), float(np.max(np.abs(quo - quo0)) / quo0)

        # 2. Local entropy F(x; gamma) of a double well: gradient by Metropolis-adjusted Langevin
        # chains against heat-kernel quadrature (the viscous HJ solution at t = 1 / gamma).
        gamma, beta, x0 = 1.5, 4.0, jnp.asarray([0.3])
        _, dF = jp.local_entropy(
            _double_well, np.array([[0.3]]), gamma=gamma, beta=beta, half_width=7.0, num_nodes=2001
        )
        est = jq.local_entropy_gradient(
            _double_well,
            x0,
            gamma=gamma,
            beta=beta,
            key=jr.key(3),
            step_size=0.1,
            num_steps=5000,
            num_chains=32,
            sampler=jq.MetropolisAdjustedLangevin(),
        )
        grad, stderr = float(np.asarray(est.grad)[0]), float(np.asarray(est.grad_stderr)[0])
        exact = float(np.asarray(dF)[0, 0])
        z = abs(grad - exact) / stderr

        # 3. Entropy-SGD (an optax transformation) against SGD on a loss with a sharp, deeper
        # minimum at 0 and a wide one at 2.5, both from x = 0.3 in the sharp basin.
        sgd_end = float(_jit(_sgd_end)())
        esgd_end = float(_jit(_entropy_sgd_end)())
        scopes = (3.0, 0.3)
        ys = np.linspace(-1.5, 4.5, 601)
        f_line, F_lines = _local_entropy_lines(ys, scopes)
        f_line, F_lines = np.asarray(f_line), np.asarray(F_lines)
    plt = _figure()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(ys, f_line, "k", label="loss $f(x)$")
    for g, F in zip(scopes, F_lines):
        ax1.plot(ys, F - F.min() + float(f_line.min()), label=f"local entropy $F(x;\\gamma={g})$")
    ax1.axvline(sgd_end, color="C3", ls=":", label=f"SGD ends at {sgd_end:.2f}")
    ax1.axvline(esgd_end, color="C2", ls="--", label=f"Entropy-SGD ends at {esgd_end:.2f}")
    ax1.set_xlabel("parameter $x$")
    ax1.set_ylabel("value (local entropy shifted to the same minimum)")
    ax1.set_title("Local entropy smooths away the sharp minimum")
    ax1.legend(fontsize=7)
    ax2.plot(raw / raw0, quo / quo0, "o", ms=4)
    ax2.axhline(1.0, color="k", lw=0.8)
    ax2.set_xlabel("raw weight norm $|g \\cdot \\theta| / |\\theta|$")
    ax2.set_ylabel("quotient norm $\\min_h |h g \\cdot \\theta| / \\min_h |h \\cdot \\theta|$")
    ax2.set_title("32 symmetry moves of a ReLU MLP (same function)")
    fig.tight_layout()
    fig.savefig(out / "quotient_local_entropy.png", dpi=120)
    plt.close(fig)
    return [
        _check(
            "quotient",
            "ReLU MLP under 32 random symmetry moves: max |f(g.theta) - f(theta)|",
            f"{fdiff:.1e}",
            "0 (the group is derived from the model; <= 1e-10)",
            fdiff < 1e-10,
        ),
        _check(
            "quotient",
            "raw norm |g.theta| / |theta| vs quotient norm over the moves",
            f"raw {raw.min() / raw0:.2f}-{raw.max() / raw0:.2f}, quotient spread {quo_spread:.1e}",
            "raw moves, quotient invariant (<= 1e-6)",
            quo_spread < 1e-6,
        ),
        _check(
            "quotient",
            "local-entropy gradient by Langevin at x = 0.3 (gamma 1.5, beta 4)",
            f"{grad:.4f} +- {stderr:.4f}",
            f"quadrature {exact:.4f} (within 4 standard errors)",
            z < 4,
        ),
        _check(
            "quotient",
            "end point from x = 0.3: SGD vs Entropy-SGD",
            f"SGD {sgd_end:.3f}, Entropy-SGD {esgd_end:.2f}",
            "SGD in the sharp minimum (0), Entropy-SGD in the wide one (2.5)",
            abs(sgd_end) < 0.01 and 1.5 < esgd_end < 3.5,
        ),
    ]


PARTS = {
    "stationary": ("graph-stationary layers (graphs, stationary)", stationary),
    "supragraph": ("stationary networks as one global system (supragraph)", supragraph),
    "strata": ("learning the graph on its stratified space (strata)", strata),
    "pde": ("viscous Burgers / Hamilton-Jacobi finite volumes and shocks (pde)", pde),
    "morse": ("critical points of network input-output maps (morse)", morse),
    "graphons": ("homomorphism densities and graphon flows (graphons)", graphons),
    "quotient": ("parameter symmetries, local entropy and Entropy-SGD (quotient)", quotient),
}
