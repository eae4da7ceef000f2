"""Batches and one large graph split over four host CPU devices give the single-device results.

The cases live in `tests/sharding_cases.py`, run in a subprocess of their own: the device count is
fixed when JAX starts (`--xla_force_host_platform_device_count=4`) and this process has one
device. Each case runs under a mesh with explicit axes (`AxisType.Explicit`, the default of
`jax.make_mesh`) and with automatic axes (`AxisType.Auto`), and is compared with the same function
on one device; a split batch must come back split along its leading axis (no gather onto one
device).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


SCRIPT = Path(__file__).with_name("sharding_cases.py")
MESHES = ("explicit", "auto")


def run_cases(*cases, timeout=1200):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(SCRIPT.parent.parent), *filter(None, [env.get("PYTHONPATH")])]
    )
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *cases],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    records = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            records[record["case"], record["mesh"]] = record
    return records, proc


def check(records, proc, case, mesh, split_outputs):
    """The sharded run equals the single-device run to rounding, and each output listed in
    `split_outputs` is split over the mesh along its leading axis."""
    record = records.get((case, mesh))
    assert record is not None, f"no result for {case} on the {mesh} mesh:\n{proc.stderr[-3000:]}"
    assert "exception" not in record, record["exception"] + "\n" + record["traceback"]
    assert record["finite"]
    # The same arithmetic in a different partition: equal up to the order of a few reductions.
    assert record["error"] <= 1e-12 * max(1.0, record["scale"]), record
    for i, spec in enumerate(record["spec"]):
        if i in split_outputs:
            assert spec and spec[0] == "d", f"output {i} is not split over the mesh: {record}"
        else:
            assert spec is None or all(p is None for p in spec), record


DEFAULT = {  # case: the outputs that stay split over the mesh
    "pde_y0": (0,),
    "stationary_layer": (0,),
    "graphon_samples": (0,),
    "critical_points": (),  # the deduplicated points: one set for the whole batch, replicated
}


@pytest.fixture(scope="module")
def default_records():
    return run_cases(*DEFAULT)


@pytest.mark.parametrize("mesh", MESHES)
@pytest.mark.parametrize("case", list(DEFAULT))
def test_batch_split_over_devices(default_records, case, mesh):
    """An ensemble of Burgers solves (batch of initial data), a stationary layer on a batch of
    inputs, edge and triangle densities of a batch of W-random graphs, and a critical-point
    search from a batch of starts, each jitted and vmapped (the search takes the batch itself)."""
    records, proc = default_records
    check(records, proc, case, mesh, DEFAULT[case])
    if DEFAULT[case]:
        # Each device solves its own part of the batch: nothing is gathered across devices.
        assert records[case, mesh]["all_gathers"] == [], records[case, mesh]


@pytest.mark.slow
@pytest.mark.parametrize("mesh", MESHES)
def test_viscosity_ensemble_split_over_devices(mesh):
    records, proc = run_cases(f"pde_nu:{mesh}")
    check(records, proc, "pde_nu", mesh, (0,))


@pytest.mark.slow
@pytest.mark.parametrize("mesh", MESHES)
def test_graph_nodes_split_over_devices(mesh):
    """One graph (1,024 nodes) with its nodes and edges split over four devices: the stationary
    state and the gradient of a loss through the implicit adjoint equal the single-device ones,
    the state stays split, and the solve's temporaries per device are well below one device's
    (split four ways they are about a third, with the vectors the sparse product gathers; a solve
    run replicated on every device needs as much as one device)."""
    records, proc = run_cases(f"graph_nodes:{mesh}")
    # The gradient stays split on both kinds of mesh: the implicit adjoint checks its linear
    # solve on a scalar (`jaxstat._implicit`), not on the gradient (lineax's own check would
    # replicate it on automatic meshes: its callback sits on one device; see the docs page).
    check(records, proc, "graph_nodes", mesh, (0, 1))
    assert records["graph_nodes", mesh]["temp_ratio"] < 0.5, records["graph_nodes", mesh]
