"""An ensemble of viscous Burgers solves split over every device of every process.

The same script runs on one process (a laptop, one GPU, or several host CPU devices) and on
several processes (one per host, or one per GPU), started with `jax.distributed.initialize()`:

    # one process, four host CPU devices:
    XLA_FLAGS=--xla_force_host_platform_device_count=4 python examples/multihost.py

    # two processes (on two hosts, or twice on this one), process i of 2:
    python examples/multihost.py --coordinator HOST0:1234 --num-processes 2 --process-id i

    # (CPU processes exchange data through gloo: set JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo;
    # GPUs use NCCL, TPUs their interconnect, with nothing to set.)

    # under SLURM, Open MPI or on a Cloud TPU slice the cluster is detected:
    srun python examples/multihost.py --distributed

Each process builds only the rows of the batch that live on its own devices
(`jax.make_array_from_callback`), the jitted, vmapped solve runs where the rows are, and each
process checks its own rows against the exact Cole-Hopf solution; no process ever holds the whole
batch. The script exits with status 1 if a row misses the exact solution.
"""

import argparse
import sys

import jax


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--coordinator", help="address:port of process 0")
    parser.add_argument("--num-processes", type=int)
    parser.add_argument("--process-id", type=int)
    parser.add_argument(
        "--distributed", action="store_true", help="initialise from the cluster environment"
    )
    parser.add_argument("--batch-per-device", type=int, default=2)
    parser.add_argument("--cells", type=int, default=128)
    args = parser.parse_args(argv)

    if args.coordinator is not None:
        # Before any other JAX call: every process then sees every device (`jax.devices()`),
        # its own ones in `jax.local_devices()`.
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    elif args.distributed:
        jax.distributed.initialize()
    jax.config.update("jax_enable_x64", True)

    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P

    import jaxstat.pde as pde

    # One mesh axis over every device of every process. `jax.make_mesh` gives it the explicit
    # sharding type (the default of current JAX); the library's entry points handle both kinds.
    mesh = jax.make_mesh((jax.device_count(),), ("batch",))
    sharding = NamedSharding(mesh, P("batch"))
    batch = args.batch_per_device * jax.device_count()

    grid = pde.UniformGrid(0.0, 2 * jnp.pi, args.cells)
    equation = pde.Burgers(grid)
    ts = jnp.array([0.0, 0.5])
    nu = 0.1
    amplitudes = np.linspace(0.5, 1.5, batch)

    def rows(index):
        # The rows of the global batch this device holds: p0 = a sin x (cell averages).
        a = jnp.asarray(amplitudes[index[0]])
        return a[:, None] * grid.cell_averages(jnp.sin)[None, :]

    y0 = jax.make_array_from_callback((batch, args.cells), sharding, rows)

    solve = jax.jit(jax.vmap(lambda y: pde.solve(equation, y, ts, nu).ys[-1]))
    with jax.set_mesh(mesh):
        y1 = solve(y0)
    assert y1.sharding.spec[0] == "batch", y1.sharding  # the batch stayed split

    # Each process checks the rows it holds against Cole-Hopf (p = du/dx, u0 = -a cos x), in
    # cell averages like the solver's states.
    def exact(a):
        def p(x):
            return pde.cole_hopf(lambda y: -a * jnp.cos(y), x, ts[-1], nu, half_width=8.0)[1]

        return grid.cell_averages(p)

    worst = 0.0
    for shard in y1.addressable_shards:
        rows_here = range(*shard.index[0].indices(batch))
        for i, row in zip(rows_here, np.asarray(shard.data)):
            worst = max(worst, float(np.max(np.abs(row - exact(float(amplitudes[i]))))))
    # WENO5 in space, SSPRK3 at CFL 0.4 in time: the error falls faster than h^3 at these sizes
    # (8e-5 at 64 cells, 7e-6 at 128).
    ok = worst < 5e-5 * (128 / args.cells) ** 3
    print(
        f"process {jax.process_index()} of {jax.process_count()}: {len(jax.local_devices())} of "
        f"{jax.device_count()} devices, {batch} solves, output split as {y1.sharding.spec}; "
        f"max |p - Cole-Hopf| over this process's rows = {worst:.2e} ({'ok' if ok else 'FAILED'})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
