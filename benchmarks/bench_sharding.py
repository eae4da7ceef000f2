"""Batches split over 1, 2 and 4 devices: time per batch and speed-up over one device.

Each device count runs in a process of its own (the count is fixed when JAX starts): on a CPU
machine with `XLA_FLAGS=--xla_force_host_platform_device_count=D`, where one host's cores are
shared by its D devices, so the figure measures the cost of partitioning (and, on a machine with
more cores than one XLA CPU device uses, the gain of spreading a batch over them), not the scaling
over separate chips; on a GPU machine the process sees the GPUs it is given
(`CUDA_VISIBLE_DEVICES`) and runs only the counts it has.

- Burgers ensemble: `B` viscous Burgers solves (`N` cells, WENO5 + SSPRK3, CFL step sizes) over a
  batch of initial amplitudes, `jax.jit(jax.vmap(solve))`, the batch split over a mesh with an
  explicit axis (`jax.make_mesh` default).
- Stationary layer: a Kerr `StationaryLayer` on a random graph applied to `B` inputs (one Newton
  solve each), vmapped, split likewise.

"max diff" is the largest difference from the single-device result (rounding only).
"""

import json
import os
import subprocess
import sys
import time


def _worker(devices: int, quick: bool) -> None:
    """Runs in the child process: time each workload on a mesh of `devices` devices."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import jax.random as jr
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P

    import jaxstat.graphs as jg
    import jaxstat.pde as pde
    import jaxstat.stationary as js

    assert len(jax.devices()) >= devices, jax.devices()
    mesh = jax.make_mesh((devices,), ("batch",), devices=jax.devices()[:devices])
    sharding = NamedSharding(mesh, P("batch"))
    batch = 8 if quick else 64
    results = []

    def timed(fn, x, repeat=3 if quick else 7):
        x = jax.device_put(x, sharding)
        with jax.set_mesh(mesh):
            t0 = time.perf_counter()
            out = jax.block_until_ready(fn(x))
            first = time.perf_counter() - t0
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                jax.block_until_ready(fn(x))
                times.append(time.perf_counter() - t0)
        assert out.sharding.spec[0] == "batch", out.sharding
        return float(np.median(times)), first, np.asarray(out)

    cells = 64 if quick else 512
    grid = pde.UniformGrid(0.0, 2 * jnp.pi, cells)
    equation = pde.Burgers(grid)
    ts = jnp.array([0.0, 0.5])
    y0 = jnp.linspace(0.5, 1.5, batch)[:, None] * grid.cell_averages(jnp.sin)[None, :]
    solve = jax.jit(jax.vmap(lambda y: pde.solve(equation, y, ts, 0.05).ys[-1]))
    t, first, out = timed(solve, y0)
    results.append(
        {
            "workload": f"Burgers ensemble, B = {batch}, N = {cells}",
            "time": t,
            "compile": first - t,
            "out": out.tolist(),
        }
    )

    n = 64 if quick else 2048
    k1, k2, k3, k4 = jr.split(jr.key(0), 4)
    graph = jg.random_graph(k1, n, 4 * n)
    source = js.NodeSource(0.3 * jr.normal(k2, (n, 4)), 0.1 * jr.normal(k3, (n, 1)))
    layer = js.StationaryLayer(graph, js.DrivenDampedModel(gamma=0.6, kappa=0.4), source, js.ReIm())
    xs = jr.normal(k4, (batch, 4, 2))
    t, first, out = timed(jax.jit(jax.vmap(layer)), xs)
    results.append(
        {
            "workload": f"Stationary layer, B = {batch}, n = {n}",
            "time": t,
            "compile": first - t,
            "out": out.tolist(),
        }
    )
    print("RESULT " + json.dumps(results), flush=True)


def _spawn(devices: int, quick: bool, host_devices: bool):
    env = dict(os.environ)
    if host_devices:
        flags = env.get("XLA_FLAGS", "")
        env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
        env["JAX_PLATFORMS"] = "cpu"
    cmd = [sys.executable, __file__, "--worker", str(devices)] + (["--quick"] if quick else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"worker with {devices} devices failed:\n{proc.stderr[-3000:]}")


def run(quick: bool = False):
    import jax
    import numpy as np
    from _common import Table

    gpus = [d for d in jax.devices() if d.platform == "gpu"]
    host_devices = not gpus
    counts = [1, 2, 4] if host_devices else [c for c in (1, 2, 4, 8) if c <= len(gpus)]
    table = Table(
        name="sharding",
        title="Batches split over devices ("
        + ("host CPU devices sharing one CPU" if host_devices else f"{len(gpus)} GPUs")
        + ")",
        description=__doc__,
        columns=["workload", "devices", "time (ms)", "compile (s)", "speed-up", "max diff"],
    )
    base = None
    for devices in counts:
        results = _spawn(devices, quick, host_devices)
        if base is None:
            base = results
        for r, b in zip(results, base):
            diff = float(np.max(np.abs(np.asarray(r["out"]) - np.asarray(b["out"]))))
            table.add(
                r["workload"], devices, 1e3 * r["time"], r["compile"], b["time"] / r["time"], diff
            )
    table.notes.append(f"{os.cpu_count()} CPU cores visible to each process.")
    return table


if __name__ == "__main__":
    if "--worker" in sys.argv:
        _worker(int(sys.argv[sys.argv.index("--worker") + 1]), "--quick" in sys.argv)
    else:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from _common import main

        main(run)
