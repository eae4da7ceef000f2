"""Our restarted GMRES (`jaxstat.GMRES`) against `lineax.GMRES` on the same systems, at the same
requested tolerance and at equal achieved residual.

The systems are those an implicit layer solves: `(gamma + i H) psi = s` (the linear driven-damped
layer, complex, non-Hermitian) and `(H + mu I) psi = s` (the quadratic gradient layer, real
symmetric), `H` the sparse Hamiltonian of a random graph with n nodes and 5n edges, float32, 16
features per node solved as one vector, restart 20. The achieved residual of every run is the
relative 2-norm `|b - A x|_2 / |b|_2`, computed afterwards; the time is the median of repeated
calls of a jitted solve.

Rows, per system:
- `jaxstat.GMRES` at `rtol = 1e-5` (its stopping rule is this 2-norm residual);
- `lineax.GMRES` at the same `rtol = 1e-5`: its stopping rule (elementwise max-norm tests, the
  residual relative to each `|b_i|` and the last update relative to each `|x_i|`, checked between
  restart cycles only) runs at least two full cycles and lands far below the requested residual;
- `lineax.GMRES, equal residual`: lineax's `rtol` loosened as far as it goes while its achieved
  residual stays at most ours: a sweep over `rtol` (a grid of half decades from 1e-5 to 1e3, then
  a bisection in `log rtol`, residuals only, untimed) finds the loosest such `rtol`, and this run
  is timed: the cheapest lineax run at least as accurate as ours, so its `ratio` is jaxstat's
  time over lineax's at equal residual. lineax's work comes in whole restart cycles, so its
  residual jumps as `rtol` grows; the row `next looser rtol` is the first run past the jump (its
  residual above ours), for context. Interpolating between the two would be meaningless: no
  lineax run lies between them.

`operator products` counts matrix-vector products: jaxstat's from its statistics, lineax's from its
number of restart cycles `c` (the first a pass on a dummy zero residual) as `1 + (c - 1)(m + 1)`,
`m` the restart length (exact without breakdown). `ratio` is jaxstat's time over the row's time
(below 1: jaxstat faster); `ms per product` compares the cost of one Arnoldi step.
"""

import math

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
from _common import main, Table, timeit

import jaxstat
import jaxstat.graphs as jg


RESTART = 20
RTOL = 1e-5


def _solver_fn():
    """A jitted solve whose solver is an argument: `rtol` as an array is traced, so a sweep over it
    compiles once."""

    @eqx.filter_jit
    def solve(solver, op, b):
        sol = lx.linear_solve(op, b, solver, throw=False)
        return sol.value, sol.stats["num_steps"]

    return solve


def _residual(op, b, x) -> float:
    return float(jnp.linalg.norm(op.mv(x) - b) / jnp.linalg.norm(b))


def lineax_at_equal_residual(solve, op, b, target: float, rtols, bisections: int):
    """Evaluate lineax's achieved residual over `rtols` (increasing), then bisect in `log rtol`
    between the loosest rtol with residual <= `target` and the next one above it.

    Returns `(below, above, evaluated)`: the loosest rtol found with residual <= target, the
    tightest rtol above it with residual > target (None if every rtol met the target), and the
    dict `rtol -> residual` of every evaluation.
    """
    evaluated = {}

    def residual_at(rtol):
        if rtol not in evaluated:
            solver = lx.GMRES(rtol=jnp.asarray(rtol), atol=0.0, restart=RESTART, max_steps=2000)
            x, _ = solve(solver, op, b)
            evaluated[rtol] = _residual(op, b, x)
        return evaluated[rtol]

    for rtol in rtols:
        if residual_at(rtol) > target:
            break

    def bracket():
        ok = [r for r, res in evaluated.items() if res <= target]
        if not ok:
            raise RuntimeError(
                f"lineax.GMRES did not reach the residual {target:.3e} at rtol {min(evaluated)}"
            )
        lo = max(ok)
        above = [r for r, res in evaluated.items() if r > lo and res > target]
        return lo, (min(above) if above else None)

    for _ in range(bisections):
        lo, hi = bracket()
        if hi is None:
            break
        residual_at(math.sqrt(lo * hi))
    lo, hi = bracket()
    return lo, hi, evaluated


def run(quick: bool = False) -> Table:
    n = 10_000 if quick else 40_000
    repeat = 2 if quick else 5
    table = Table(
        name="krylov",
        title=f"GMRES: jaxstat vs lineax, n = {n:,} nodes, E = 5n, 16 float32 features",
        description=__doc__,
        columns=[
            "system",
            "solver",
            "rtol",
            "operator products",
            "time (ms)",
            "ms per product",
            "relative residual",
            "ratio",
        ],
    )
    g = jg.random_graph(jr.key(0), n, 5 * n, dtype=jnp.float32)
    s = jr.normal(jr.key(1), (n, 16), jnp.float32)
    H = g.assemble()
    systems = {
        "(gamma + iH) psi = s, gamma = 1": (
            lx.FunctionLinearOperator(
                lambda v: v + 1j * H.mv(v), jnp.zeros((n, 16), jnp.complex64)
            ),
            s.astype(jnp.complex64),
        ),
        "(H + mu) psi = s, mu = 1": (
            lx.FunctionLinearOperator(lambda v: v + H.mv(v), s),
            s,
        ),
    }
    # Half decades from RTOL up to 1e3 (quick: whole decades, one bisection).
    rtols = [RTOL * 10 ** (k / (1 if quick else 2)) for k in range(9 if quick else 17)]
    bisections = 1 if quick else 4
    solve = _solver_fn()

    def measure(solver, op, b):
        x, steps = solve(solver, op, b)
        t = timeit(solve, solver, op, b, repeat=repeat)
        return t, int(steps), _residual(op, b, x)

    def lineax_products(cycles: int) -> int:
        return 1 + (cycles - 1) * (RESTART + 1)

    summary = []
    for name, (op, b) in systems.items():
        ours = jaxstat.GMRES(rtol=RTOL, atol=0.0, restart=RESTART, max_steps=2000)
        t_ours, p_ours, res_ours = measure(ours, op, b)
        rows = [("jaxstat.GMRES", RTOL, p_ours, t_ours, res_ours)]

        def lineax_row(label, rtol):
            solver = lx.GMRES(rtol=jnp.asarray(rtol), atol=0.0, restart=RESTART, max_steps=2000)
            t, cycles, res = measure(solver, op, b)
            rows.append((label, rtol, lineax_products(cycles), t, res))
            return t, res

        lineax_row("lineax.GMRES", RTOL)
        lo, hi, evaluated = lineax_at_equal_residual(
            solve, op, b, res_ours, rtols, bisections=bisections
        )
        lineax_row("lineax.GMRES, equal residual", lo)
        if hi is not None:
            lineax_row("lineax.GMRES, next looser rtol (residual above ours)", hi)
        for label, rtol, products, t, res in rows:
            table.add(name, label, rtol, products, 1e3 * t, 1e3 * t / products, res, t_ours / t)
        t_eq = rows[2][3]
        sweep = ", ".join(f"{r:.3g}: {res:.2e}" for r, res in sorted(evaluated.items()))
        table.notes.append(f"{name}: lineax rtol -> achieved residual: {sweep}.")
        summary.append(f"{t_ours / t_eq:.3g} ({name})")
    table.notes.append(
        "At equal achieved residual (lineax's cheapest run at least as accurate as ours) "
        "jaxstat's time over lineax's: " + "; ".join(summary) + "."
    )
    return table


if __name__ == "__main__":
    main(run)
