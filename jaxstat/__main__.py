"""Command line: `python -m jaxstat tour` (a tour of every capability at small sizes) and
`python -m jaxstat bench [names] [--quick]` (the benchmarks, from a source checkout)."""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import time


def _tour_stationary() -> None:
    import jax.numpy as jnp
    import jax.random as jr
    import numpy as np

    import jaxstat.graphs as jg
    import jaxstat.stationary as js

    # A Kerr dimer driven in its bistable range: three stationary states, the middle one unstable.
    gamma, kappa, delta, drive = 0.1, -1.0, 1.0, 0.05
    g = jg.from_edges([[0, 1]], [2.0], potential=delta * jnp.ones(2))
    model = js.DrivenDampedModel(gamma=gamma, kappa=kappa)
    s = np.sqrt(drive) * jnp.ones(2, jnp.complex64)
    # Intensities I solving I (gamma^2 + (delta + kappa I)^2) = |s|^2, used as warm starts.
    roots = np.sort(np.roots([kappa**2, 2 * delta * kappa, delta**2 + gamma**2, -drive]).real)
    for intensity in roots:
        guess = 1.05 * s / (gamma + 1j * (delta + kappa * intensity))
        sol = js.solve(model, g, s, guess, throw=False)
        stable = "stable" if bool(sol.stability.stable) else "UNSTABLE"
        print(
            f"  branch |psi|^2 = {float(jnp.abs(sol.value[0]) ** 2):.4f} "
            f"(closed form {intensity:.4f}): "
            f"spectral abscissa {float(sol.stability.abscissa):+.3f}, {stable}"
        )
    # A differentiable graph-stationary layer on a random graph.
    import equinox as eqx

    graph = jg.random_graph(jr.key(0), 1000, 5000)
    layer = js.feature_layer(graph, js.GradientModel(js.Quartic(1.0, 0.5)), 8, 8, key=jr.key(1))
    x = jr.normal(jr.key(2), (1000, 8))
    grads = eqx.filter_grad(lambda lay: jnp.mean(lay(x) ** 2))(layer)
    norm = float(jnp.linalg.norm(grads.graph.weights))
    print(f"  stationary layer on 1000 nodes: |d loss / d edge weights| = {norm:.3e}")


def _tour_morse() -> None:
    import jax
    import jax.numpy as jnp
    import jax.random as jr

    import jaxstat.morse as jm

    # Critical points of a random tanh MLP R^2 -> R, Morse for almost every weight. float64: the
    # degeneracy test and the winding number need it at this weight scale.
    with jax.enable_x64(True):
        net = jm.random_mlp(jr.key(3), [2, 16, 16, 1], weight_scale=3.0)
        print("  " + str(jm.classify(net)).replace("\n", "\n  "))
        lo, hi = -3 * jnp.ones(2), 3 * jnp.ones(2)
        # Newton from more and more starts until the Poincare-Hopf check holds twice in a row.
        cps = jm.find_all_critical_points(
            net, jr.key(1), lo, hi, refinement=jm.DoublingStarts(1024, 4096), fallback=None
        )
        status = "holds" if bool(cps.complete) else "FAILS: " + jm.RESULTS[cps.check]
        counts = ", ".join(f"{int(c)} of index {k}" for k, c in enumerate(cps.index_counts()))
        print(
            f"  {int(cps.count)} critical points in [-3, 3]^2 from {int(cps.num_starts)} Newton "
            f"starts: {counts} (index = number of negative Hessian eigenvalues); degenerate: "
            f"{int(cps.degenerate.sum())}"
        )
        print(
            f"  Poincare-Hopf: sum of (-1)^index = {int(cps.index_sum)}, winding number of grad f "
            f"along the boundary = {float(cps.winding_number):.0f}; completeness check {status}"
        )


def _tour_graphons() -> None:
    import jax.numpy as jnp
    import jax.random as jr

    import jaxstat.graphons as gn

    W = gn.FunctionGraphon(lambda x, y: 0.15 + 0.7 * x * y)
    A = gn.sample_graph(jr.key(0), W, 300, sort=True)
    print(f"  t(C4, G(300, W)) = {float(gn.homomorphism_density(gn.Pattern.cycle(4), A)):.4f}")
    F = -gn.HomomorphismDensity(gn.Pattern.cycle(3)) + 0.5 * gn.HomomorphismDensity([(0, 1)])
    Wn, sol = gn.graphon_flow(F, W, 0.5, n=64)
    at_one = float(jnp.mean(sol.ys[-1] == 1.0))
    print(f"  graphon flow to t = 0.5: fraction of weights at 1 = {at_one:.3f}")


def _tour_strata() -> None:
    import jax.numpy as jnp
    import optax

    import jaxstat.strata as st

    # One natural-gradient step under the shifted entropic metric: dw = -lr (w + eps) g, clipped at
    # 0. The edge at 0 with an inward gradient is born; the one pushed below 0 dies.
    w, g = jnp.array([0.5, 0.0, 0.02]), jnp.array([-1.0, -2.0, 10.0])
    tx = st.natural_gradient(0.1, st.ShiftedEntropy(0.01))
    u, state = tx.update(g, tx.init(w), w)
    print(f"  weights {optax.apply_updates(w, u)}; {st.stratum(state).summary()}")


def _tour_supragraph() -> None:
    import jax.numpy as jnp
    import jax.random as jr

    import jaxstat.graphs as jg
    import jaxstat.stationary as js
    import jaxstat.supragraph as sg

    # A three-layer Kerr network solved as one global system, against the layer-by-layer pass.
    g = jg.random_graph(jr.key(0), 30, 90)
    net = sg.feature_network(g, js.DrivenDampedModel(1.0, 0.3), [4, 8, 4], key=jr.key(1))
    x = jr.normal(jr.key(2), (30, 4))
    sol = sg.solve(net, x)
    gap = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(sol.value, net.states(x)))
    S = sg.supragraph(net)
    print(f"  global solve vs sequential pass: max difference {gap:.1e}")
    print(
        f"  supra-graph: {S.num_intra_edges} intra-layer + {S.num_inter_edges} inter-layer edges; "
        f"Jacobian nonzeros {S.jacobian_pattern().nnz} vs dense {S.dense_size()}"
    )


def _tour_pde() -> None:
    import jax.numpy as jnp

    import jaxstat.pde as jp

    # Burgers from sin x + 1/2: a shock forms at t* = 1 and moves at the Rankine-Hugoniot speed 1/2.
    grid = jp.UniformGrid(0.0, 2 * jnp.pi, 256)
    p0 = grid.cell_averages(lambda x: jnp.sin(x) + 0.5)
    sol = jp.solve(jp.Burgers(grid), p0, jnp.array([0.0, 1.6]), 0.0)  # WENO5, Godunov, SSPRK3
    shocks = jp.detect_shocks(sol.ys[-1], grid)
    t_star = float(jp.shock_formation(jnp.sin, 0.0, 2 * jnp.pi).time)
    where = float(shocks.position[shocks.valid][0])
    speed = float(shocks.speed[shocks.valid][0])
    print(f"  shock time t* = {t_star:.4f} (closed form 1)")
    print(f"  shock at t = 1.6: x = {where:.4f} (exact {jnp.pi + 0.8:.4f}), RH speed {speed:.3f}")


TOUR = {
    "stationary": ("graph-stationary layers (graphs, stationary)", _tour_stationary),
    "supragraph": ("stationary networks as one global system (supragraph)", _tour_supragraph),
    "strata": ("learning the graph on its stratified space (strata)", _tour_strata),
    "pde": ("viscous Burgers / Hamilton-Jacobi finite volumes and shocks (pde)", _tour_pde),
    "morse": ("critical points of network input-output maps (morse)", _tour_morse),
    "graphons": ("homomorphism densities and graphon flows (graphons)", _tour_graphons),
}


def tour(names: list[str]) -> None:
    """Run the tour parts `names` (all when empty), in the order of `TOUR`."""
    for name, (title, fn) in TOUR.items():
        if names and name not in names:
            continue
        print(f"== {name}: {title}", flush=True)
        t0 = time.perf_counter()
        fn()
        print(f"   ({time.perf_counter() - t0:.1f} s)", flush=True)


def _checkout_runner() -> pathlib.Path | None:
    """`benchmarks/run.py` of the source checkout this package was imported from, if any."""
    script = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"
    return script if script.exists() else None


def bench(args: list[str]) -> int:
    """Run `benchmarks/run.py` (one process per benchmark) with `args`; it validates the names."""
    script = _checkout_runner()
    if script is None:
        sys.exit(
            "`jaxstat bench` needs a source checkout of jaxstat: the benchmarks, their peers and "
            "their results table live in the repository's benchmarks/ folder, not in the installed "
            "package. Clone the repository, `pip install -e \".[bench]\"` there, and run "
            "`jaxstat bench` (or `python benchmarks/run.py`) from it."
        )
    return subprocess.run([sys.executable, str(script), *args]).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jaxstat", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("tour", help="run a short demonstration of every capability")
    t.add_argument("names", nargs="*", help=f"parts to run (default all): {', '.join(TOUR)}")
    b = sub.add_parser(
        "bench", help="run the benchmarks (source checkout): [names] [--quick] [--list]"
    )
    b.add_argument("args", nargs="*", help="benchmark names (default all)")
    ns, extra = parser.parse_known_args(argv)
    if ns.command == "tour":
        unknown = [n for n in ns.names if n not in TOUR]
        if unknown or extra:
            parser.error(f"unknown tour part(s) {unknown + extra}; choose from: {', '.join(TOUR)}")
        tour(ns.names)
        return 0
    return bench(ns.args + extra)


if __name__ == "__main__":
    sys.exit(main())
