"""Burgers and Hamilton-Jacobi finite volumes against PyClaw, exponax and hj_reachability.

Same grid, same final time, same float64 arithmetic, in one run.

- Inviscid Burgers, `p0 = sin x` and `p0 = sin x + 1/2` (a moving shock; with `sin x` alone the
  shock sits still on a cell face) on `[0, 2 pi)` periodic, to `t = 1.5` (past the shock time 1),
  `N = 512 .. 8192`. jaxstat WENO5 + Godunov + SSPRK3 (CFL 0.4) against PyClaw SharpClaw (WENO5,
  its default SSP104 time stepping, Fortran kernels), and jaxstat MUSCL(MC) + Godunov + SSPRK2
  (CFL 0.5) against PyClaw classic (wave propagation with the MC limiter, CFL 0.9, Fortran).
  Error: L1 distance of the cell averages from the exact entropy solution's cell averages (from
  the Hopf-Lax potential: `(u(x_{i+1/2}) - u(x_{i-1/2})) / h`).
- Viscous Burgers, `nu = 0.01`, `p0 = sin x + 1/2`, `t = 1.5`: jaxstat WENO5 with the fourth-order
  viscous flux, explicit (SSPRK3, steps limited by `h^2 / nu`) and implicit-explicit (IMEXSSP3
  with its defaults: stages in the Fourier basis where the viscous term is diagonal; where
  viscosity is above half the hyperbolic rate, steps at twice the hyperbolic CFL step of
  `CFLStep(0.4)`, else explicit SSPRK3 steps), and WENO5Z with IMEXSSP3, against exponax's
  Fourier pseudo-spectral ETDRK2 stepper (dt at CFL 0.5), error against Cole-Hopf (cell
  averages for jaxstat, point values at exponax's nodes). The rows "at exponax's L1 error"
  interpolate jaxstat's time (log-log over N) at each of exponax's errors.
- Ensemble: 1,024 random smooth initial conditions, `N = 512`, inviscid to `t = 1`, solved with
  `jax.vmap` in batches of 1 to 1,024: throughput (cell updates per second) against the batch,
  and against PyClaw SharpClaw looping over the initial conditions (its time per initial
  condition, measured on 8 of them, times the batch).
- Hamilton-Jacobi 2-D: `u_t + |grad u|^2 / 2 = 0` on the periodic square, non-separable
  `u0 = -cos x - cos(y) / 2 - 0.3 sin(x + y)` to `t = 1` (past the first kink at 0.72), against
  hj_reachability (WENO5 + global Lax-Friedrichs + TVD-RK3, CFL 0.75): error (mean absolute) against
  the Hopf-Lax solution at each solver's own nodes.

"cell updates / s" counts time steps times cells (a multi-stage step counts once). The last
column divides jaxstat's wall time by the peer's for the matching scheme (< 1: jaxstat faster).
"""

import math
import sys
import time

import jax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402
from _common import main, Table, timeit  # noqa: E402

import jaxstat.pde as jp  # noqa: E402


TWO_PI = 2 * np.pi
CASES = {
    "sin x": (lambda x: jnp.sin(x), lambda y: -jnp.cos(y[0])),
    "sin x + 1/2": (lambda x: jnp.sin(x) + 0.5, lambda y: -jnp.cos(y[0]) + 0.5 * y[0]),
}


def _exact_inviscid(grid, u0, t):
    u, _ = jp.hopf_lax(u0, grid.faces()[:, None], t, half_width=2.5, num_nodes=1001)
    return np.asarray(jnp.diff(u) / grid.spacing[0])


def _jaxstat(grid, p0, t, nu, equation, solver, step, max_steps=60000):
    ts = jnp.array([0.0, t])
    fn = jax.jit(
        lambda p: jp.solve(equation, p, ts, nu, solver=solver, step=step, max_steps=max_steps)
    )
    sol = jax.block_until_ready(fn(p0))  # compiles
    seconds = timeit(fn, p0, repeat=_repeats(grid), warmup=0)
    return seconds, int(sol.stats["num_steps"]), np.asarray(sol.ys[-1])


def _repeats(grid):
    """Median of 3 runs on small grids; one run on large ones (seconds each, little noise)."""
    return 3 if math.prod(grid.shape) <= 2048 else 1


def _pyclaw(n, averages, t, kind):
    from clawpack import pyclaw, riemann

    def build():
        if kind == "classic":
            solver = pyclaw.ClawSolver1D(riemann.burgers_1D)
            solver.limiters = pyclaw.limiters.tvd.MC
        else:
            solver = pyclaw.SharpClawSolver1D(riemann.burgers_1D)
            solver.weno_order = 5
        solver.kernel_language = "Fortran"
        solver.bc_lower[0] = pyclaw.BC.periodic
        solver.bc_upper[0] = pyclaw.BC.periodic
        domain = pyclaw.Domain(pyclaw.Dimension(0.0, TWO_PI, n, name="x"))
        state = pyclaw.State(domain, 1)
        state.q[0, :] = averages
        state.problem_data["efix"] = True
        claw = pyclaw.Controller()
        claw.tfinal = t
        claw.num_output_times = 1
        claw.solution = pyclaw.Solution(state, domain)
        claw.solver = solver
        claw.output_format = None
        claw.keep_copy = True
        claw.verbosity = 0
        return claw

    times = []
    for _ in range(3 if n <= 2048 else 1):
        claw = build()
        t0 = time.perf_counter()
        claw.run()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), int(claw.solver.status["numsteps"]), claw.frames[-1].q[0]


def _exponax(n, p0, t, nu):
    import exponax

    h = TWO_PI / n
    steps = math.ceil(t / (0.5 * h / 1.5))
    stepper = exponax.stepper.Burgers(1, TWO_PI, n, t / steps, diffusivity=nu)
    x = jnp.arange(n) * h
    u0 = p0(x)[None, :]
    fn = jax.jit(exponax.repeat(stepper, steps))
    out = jax.block_until_ready(fn(u0))  # compiles
    seconds = timeit(fn, u0, repeat=3 if n <= 2048 else 1, warmup=0)
    return seconds, steps, x, np.asarray(out[0])


def _burgers_rows(table, ns, quick):
    for name, (p0, u0) in CASES.items():
        for n in ns:
            grid = jp.UniformGrid(0.0, TWO_PI, n)
            averages = grid.cell_averages(p0)
            exact = _exact_inviscid(grid, u0, 1.5)
            h = grid.spacing[0]

            def error(y):
                return float(np.sum(np.abs(np.asarray(y) - exact)) * h)

            ours = {}
            for label, eq, solver, step in (
                ("jaxstat WENO5-Godunov-SSPRK3", jp.Burgers(grid), jp.SSPRK3(), jp.CFLStep(0.4)),
                (
                    "jaxstat MUSCL(MC)-Godunov-SSPRK2",
                    jp.Burgers(grid, reconstruction=jp.MUSCL(jp.MonotonizedCentral())),
                    jp.SSPRK2(),
                    jp.CFLStep(0.5),
                ),
            ):
                seconds, steps, y = _jaxstat(grid, averages, 1.5, 0.0, eq, solver, step)
                ours[label] = seconds
                table.add(name, n, label, steps, seconds, n * steps / seconds, error(y), "-")
            for kind, label, match in (
                ("sharpclaw", "PyClaw SharpClaw WENO5 (SSP104)", "jaxstat WENO5-Godunov-SSPRK3"),
                ("classic", "PyClaw classic (MC limiter)", "jaxstat MUSCL(MC)-Godunov-SSPRK2"),
            ):
                try:
                    seconds, steps, y = _pyclaw(n, np.asarray(averages), 1.5, kind)
                except ImportError:
                    table.add(name, n, label, "-", "-", "-", "-", "not installed")
                    continue
                ratio = ours[match] / seconds
                table.add(name, n, label, steps, seconds, n * steps / seconds, error(y), ratio)


def _viscous_rows(table, ns):
    nu, t = 0.01, 1.5
    p0, u0 = CASES["sin x + 1/2"]
    case = "viscous sin x + 1/2"
    # (error, seconds) per method over N, for the comparison at equal error.
    curves = {}
    for n in ns:
        grid = jp.UniformGrid(0.0, TWO_PI, n)
        h = grid.spacing[0]
        faces = grid.faces()[:, None]
        u, _ = jp.cole_hopf(u0, faces, t, nu, half_width=4.5, num_nodes=4001)
        exact = np.asarray(jnp.diff(u) / h)
        eq = jp.Burgers(grid, viscous_order=4)
        # WENO5Z: the WENO-Z weights, fifth order also at critical points (2.6x smaller error
        # than WENO5 here at N = 768 and 1024).
        eq_z = jp.Burgers(grid, reconstruction=jp.WENO5Z(), viscous_order=4)
        for label, eq, solver in (
            ("jaxstat WENO5-Godunov-SSPRK3 (explicit)", eq, jp.SSPRK3()),
            ("jaxstat WENO5-Godunov-IMEXSSP3 (implicit viscosity)", eq, jp.IMEXSSP3()),
            ("jaxstat WENO5Z-Godunov-IMEXSSP3 (implicit viscosity)", eq_z, jp.IMEXSSP3()),
        ):
            seconds, steps, y = _jaxstat(
                grid, grid.cell_averages(p0), t, nu, eq, solver, jp.CFLStep()
            )
            error = float(np.sum(np.abs(y - exact)) * h)
            curves.setdefault(label, []).append((error, seconds))
            table.add(case, n, label, steps, seconds, n * steps / seconds, error, "-")
        try:
            peer_seconds, peer_steps, x, z = _exponax(n, p0, t, nu)
        except ImportError:
            table.add(case, n, "exponax", "-", "-", "-", "-", "not installed")
            continue
        _, p_exact = jp.cole_hopf(u0, x[:, None], t, nu, half_width=4.5, num_nodes=4001)
        peer_error = float(np.sum(np.abs(z - np.asarray(p_exact[:, 0]))) * h)
        curves.setdefault("exponax", []).append((peer_error, peer_seconds))
        table.add(
            case,
            n,
            "exponax Burgers (Fourier, ETDRK2)",
            peer_steps,
            peer_seconds,
            n * peer_steps / peer_seconds,
            peer_error,
            "-",
        )
    _equal_error_rows(table, case, curves)


def _time_at_error(curve, error):
    """Seconds at `error`, interpolated linearly in log-log between the measured points (`None`
    outside their range)."""
    errors, seconds = (np.log(np.array(v)) for v in zip(*sorted(curve)))
    target = np.log(error)
    if not errors[0] <= target <= errors[-1]:
        return None
    return float(np.exp(np.interp(target, errors, seconds)))


def _equal_error_rows(table, case, curves):
    """jaxstat's time over exponax's at exponax's errors (jaxstat interpolated over N)."""
    for peer_error, peer_seconds in curves.get("exponax", []):
        for label, curve in curves.items():
            if label == "exponax":
                continue
            seconds = _time_at_error(curve, peer_error)
            ratio = "outside the measured range" if seconds is None else seconds / peer_seconds
            table.add(
                f"{case}, at exponax's L1 error",
                "interp.",
                label,
                "-",
                "-" if seconds is None else seconds,
                "-",
                peer_error,
                ratio,
            )


def _ensemble_rows(table, batches, quick):
    n, t = 512, 1.0
    grid = jp.UniformGrid(0.0, TWO_PI, n)
    x = grid.faces()
    key = jr.key(0)
    coefficients = 0.3 * jr.normal(key, (max(batches), 3, 2))
    modes = jnp.arange(1, 4)
    # Cell averages of sum_k a_k sin(k x) + b_k cos(k x) + 1/4, exactly, from the primitive.
    primitive = (
        -coefficients[:, :, 0, None] * jnp.cos(modes[:, None] * x) / modes[:, None]
        + coefficients[:, :, 1, None] * jnp.sin(modes[:, None] * x) / modes[:, None]
    ).sum(axis=1)
    p0 = jnp.diff(primitive, axis=1) / grid.spacing[0] + 0.25
    eq = jp.Burgers(grid)
    ts = jnp.array([0.0, t])
    batched = jax.jit(jax.vmap(lambda p: jp.solve(eq, p, ts).stats["num_steps"]))
    single_seconds = None
    for b in batches:
        members = p0[:b]
        compiled = batched.lower(members).compile()
        # Large batches run once: the timed run also gives the step count.
        runs = []
        for _ in range(3 if b < 256 else 1):
            start = time.perf_counter()
            steps = float(jnp.mean(jax.block_until_ready(compiled(members))))
            runs.append(time.perf_counter() - start)
        seconds = float(np.median(runs))
        if b == 1:
            single_seconds = seconds
        note = "-" if single_seconds is None else f"{seconds / (b * single_seconds):.3g} x loop"
        table.add(
            f"ensemble, batch {b}",
            n,
            "jaxstat vmap WENO5",
            steps,
            seconds,
            b * n * steps / seconds,
            "-",
            note,
        )
    try:
        count = 2 if quick else 8
        peer = [_pyclaw(n, np.asarray(p0[i]), t, "sharpclaw") for i in range(count)]
    except ImportError:
        table.add("ensemble", n, "PyClaw SharpClaw", "-", "-", "-", "-", "not installed")
        return
    per_ic = float(np.mean([s for s, _, _ in peer]))
    steps = float(np.mean([k for _, k, _ in peer]))
    b = max(batches)
    table.add(
        f"ensemble, batch {b}",
        n,
        "PyClaw SharpClaw WENO5, loop (extrapolated)",
        steps,
        per_ic * b,
        b * n * steps / (per_ic * b),
        "-",
        seconds / (per_ic * b),
    )


def _hj_rows(table, ns):
    t = 1.0
    u0 = lambda y: -jnp.cos(y[0]) - 0.5 * jnp.cos(y[1]) - 0.3 * jnp.sin(y[0] + y[1])

    def exact(points):
        u, _ = jp.hopf_lax(u0, points, t, half_width=2.2, num_nodes=61, batch_size=1024)
        return np.asarray(u)

    for n in ns:
        grid = jp.UniformGrid((0.0, 0.0), (TWO_PI, TWO_PI), (n, n))
        points = jnp.moveaxis(grid.mesh(), 0, -1)
        reference = exact(points)
        values = jax.vmap(jax.vmap(u0))(points)
        ours = {}
        for label, numerical in (
            ("jaxstat HJ WENO5-Godunov-SSPRK3", jp.Godunov()),
            ("jaxstat HJ WENO5-LLF-SSPRK3", jp.LocalLaxFriedrichs()),
        ):
            eq = jp.HamiltonJacobi(grid, numerical_hamiltonian=numerical)
            seconds, steps, y = _jaxstat(grid, values, t, 0.0, eq, jp.SSPRK3(), jp.CFLStep())
            ours[label] = seconds
            table.add(
                "HJ 2-D",
                f"{n}^2",
                label,
                steps,
                seconds,
                n * n * steps / seconds,
                float(np.mean(np.abs(y - reference))),
                "-",
            )
        try:
            import hj_reachability as hj
        except ImportError:
            table.add("HJ 2-D", f"{n}^2", "hj_reachability", "-", "-", "-", "-", "not installed")
            continue

        class Quadratic(hj.dynamics.Dynamics):
            def __init__(self):
                pass

            def __call__(self, state, control, disturbance, time):
                raise NotImplementedError

            def optimal_control_and_disturbance(self, state, time, grad_value):
                raise NotImplementedError

            def hamiltonian(self, state, time, value, grad_value):
                return 0.5 * jnp.sum(grad_value**2)

            def partial_max_magnitudes(self, state, time, value, grad_value_box):
                return jnp.maximum(jnp.abs(grad_value_box.lo), jnp.abs(grad_value_box.hi))

        hj_grid = hj.Grid.from_lattice_parameters_and_boundary_conditions(
            hj.sets.Box(np.array([0.0, 0.0]), np.array([TWO_PI, TWO_PI])),
            (n, n),
            periodic_dims=(0, 1),
        )
        settings = hj.SolverSettings.with_accuracy("very_high")
        dynamics = Quadratic()
        hj_values = jax.vmap(jax.vmap(u0))(hj_grid.states)
        times = jnp.array([0.0, t])
        fn = jax.jit(
            lambda v: hj.solve(settings, dynamics, hj_grid, times, v, progress_bar=False)[-1]
        )
        y = jax.block_until_ready(fn(hj_values))  # compiles
        seconds = timeit(fn, hj_values, repeat=3 if n <= 64 else 1, warmup=0)
        error = float(np.mean(np.abs(np.asarray(y) - exact(hj_grid.states))))
        table.add(
            "HJ 2-D",
            f"{n}^2",
            "hj_reachability (WENO5, global LF, CFL 0.75)",
            "n/a",
            seconds,
            "-",
            error,
            ours["jaxstat HJ WENO5-LLF-SSPRK3"] / seconds,
        )


COLUMNS = [
    "case",
    "N",
    "method",
    "steps",
    "time [s]",
    "cell updates / s",
    "L1 error",
    "jaxstat time / peer time",
]


def run_viscous(quick: bool = False) -> Table:
    """The viscous rows alone (`--viscous`): their own table, `pde_viscous`."""
    table = Table(
        name="pde_viscous",
        title="Viscous Burgers nu = 0.01 to t = 1.5: explicit SSPRK3 and IMEX-SSP3 against "
        "exponax at equal error",
        description="The viscous rows of benchmarks/bench_pde.py (_viscous_rows) run on their "
        "own: jaxstat (WENO5; WENO5Z in its own rows) with the explicit SSPRK3 step and with "
        "IMEXSSP3 (defaults: the viscous "
        "term implicit where it is above half the hyperbolic rate, those steps at twice the "
        "hyperbolic CFL step; Fourier-space stages) against exponax (Fourier "
        "ETDRK2) on sin x + 1/2, L1 error against Cole-Hopf; the last rows give jaxstat time at "
        "exponax error (interpolated over N on log-log axes).",
        columns=COLUMNS,
    )
    _viscous_rows(table, [256, 512, 1024] if quick else [256, 512, 1024, 2048])
    return table


def run(quick: bool = False) -> Table:
    table = Table(
        name="pde",
        title="Burgers and Hamilton-Jacobi finite volumes",
        description=__doc__.split("\n\n", 1)[1],
        columns=COLUMNS,
    )
    ns = [512, 1024] if quick else [512, 1024, 2048, 4096, 8192]
    _burgers_rows(table, ns, quick)
    # Explicit viscous steps shrink like h^2 (nu = 0.01: 16,000 steps at N = 2048): up to 2048.
    _viscous_rows(table, [256, 512, 1024] if quick else [256, 512, 1024, 2048])
    _ensemble_rows(table, [1, 8, 64] if quick else [1, 16, 128, 1024], quick)
    _hj_rows(table, [32, 64] if quick else [64, 128, 256])
    table.notes += [
        "All solvers in float64 on the same grid and final time; timings are medians of 3 runs "
        "after a compiling warm-up (one run for N > 2048 and for 2-D grids above 64^2; PyClaw: "
        "Controller.run only).",
        "Steps: CFL-limited time steps. SharpClaw's default SSP104 takes 10 stages per step at "
        "CFL 2.45, jaxstat's SSPRK3 3 stages at CFL 0.4; PyClaw classic 1 step at CFL 0.9.",
        "HJ error: mean absolute error at the solver's nodes against Hopf-Lax; the ratio compares "
        "jaxstat's LLF scheme with hj_reachability's global Lax-Friedrichs (hj_reachability does "
        "not report its number of steps).",
        "Ensemble ratio: batched time divided by batch x single-IC time (the loop); PyClaw row: "
        "jaxstat's batch time over PyClaw's extrapolated loop time.",
    ]
    return table


if __name__ == "__main__":
    # --viscous: only the viscous rows (table pde_viscous); --no-save: print the rows, write
    # nothing to results/ (trial runs on a loaded machine).
    chosen = run_viscous if "--viscous" in sys.argv[1:] else run
    if "--no-save" in sys.argv[1:]:
        chosen("--quick" in sys.argv[1:])
    else:
        main(chosen)
