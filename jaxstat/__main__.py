"""Command line: `python -m jaxstat tour` (a tour of every capability at small sizes) and
`python -m jaxstat bench [names] [--quick]` (the benchmarks, from a source checkout)."""

from __future__ import annotations

import argparse
import pathlib
import runpy
import sys
import time


def _tour_stationary() -> None:
    import jax.numpy as jnp
    import jax.random as jr

    import jaxstat.graphs as jg
    import jaxstat.stationary as js

    # A Kerr dimer driven in its bistable range: three stationary states, the middle one unstable.
    import numpy as np

    gamma, kappa, delta, drive = 0.1, -1.0, 1.0, 0.05
    g = jg.from_edges([[0, 1]], [2.0], potential=delta * jnp.ones(2))
    model = js.DrivenDampedModel(gamma=gamma, kappa=kappa)
    s = np.sqrt(drive) * jnp.ones(2, jnp.complex64)
    # Intensities I solving I (gamma^2 + (delta + kappa I)^2) = |s|^2, used as warm starts.
    roots = np.sort(np.roots([kappa**2, 2 * delta * kappa, delta**2 + gamma**2, -drive]).real)
    for I in roots:
        guess = 1.05 * s / (gamma + 1j * (delta + kappa * I))
        sol = js.solve(model, g, s, guess, throw=False)
        stable = "stable" if bool(sol.stability.stable) else "UNSTABLE"
        print(
            f"  branch |psi|^2 = {float(jnp.abs(sol.value[0]) ** 2):.4f} (closed form {I:.4f}): "
            f"spectral abscissa {float(sol.stability.abscissa):+.3f}, {stable}"
        )
    # A differentiable graph-stationary layer on a random graph.
    import equinox as eqx

    graph = jg.random_graph(jr.key(0), 1000, 5000)
    layer = js.feature_layer(graph, js.GradientModel(js.Quartic(1.0, 0.5)), 8, 8, key=jr.key(1))
    x = jr.normal(jr.key(2), (1000, 8))
    grads = eqx.filter_grad(lambda l: jnp.mean(l(x) ** 2))(layer)
    norm = float(jnp.linalg.norm(grads.graph.weights))
    print(f"  stationary layer on 1000 nodes: |d loss / d edge weights| = {norm:.3e}")


TOUR = {
    "stationary": ("graph-stationary layers (graphs, stationary)", _tour_stationary),
}


def tour(names: list[str]) -> None:
    for name, (title, fn) in TOUR.items():
        if names and name not in names:
            continue
        print(f"== {name}: {title}", flush=True)
        t0 = time.perf_counter()
        fn()
        print(f"   ({time.perf_counter() - t0:.1f} s)", flush=True)


def bench(args: list[str]) -> None:
    script = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"
    if not script.exists():
        sys.exit("`jaxstat bench` runs benchmarks/run.py from a source checkout of jaxstat")
    sys.argv = [str(script), *args]
    runpy.run_path(str(script), run_name="__main__")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="jaxstat", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("tour", help="run a short demonstration of every capability")
    t.add_argument("names", nargs="*", help=f"parts to run (default all): {', '.join(TOUR)}")
    b = sub.add_parser("bench", help="run the benchmarks (source checkout)")
    b.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args(argv)
    if ns.command == "tour":
        tour(ns.names)
    else:
        bench(ns.args)


if __name__ == "__main__":
    main()
