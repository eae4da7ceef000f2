"""The `jaxstat` command line: parts and benchmarks are validated, the tour runs."""

import os

import pytest

import jaxstat.__main__ as cli


@pytest.mark.parametrize("argv", [["tour", "foo"], ["tour", "PDE"], ["tour", "pde", "nosuch"]])
def test_unknown_tour_part_is_an_error(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown tour part" in err
    for name in cli.TOUR:
        assert name in err  # the valid names are listed


def test_tour_runs_the_named_part_only(tmp_path):
    checks = cli.tour(["strata"], tmp_path)
    assert checks and all(c.part == "strata" for c in checks)
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    assert (tmp_path / "strata_edges.png").stat().st_size > 10_000  # a real figure


def test_bench_validates_names_and_lists(capfd):
    if cli._checkout_runner() is None:
        pytest.skip("not a source checkout")
    assert cli.main(["bench", "nosuch"]) == 2
    assert "unknown benchmark" in capfd.readouterr().out
    assert cli.main(["bench", "--list"]) == 0
    listed = capfd.readouterr().out.split()
    assert "pde" in listed and "graphs" in listed


def test_bench_outside_a_checkout_says_so(monkeypatch):
    monkeypatch.setattr(cli, "_checkout_runner", lambda: None)
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench"])
    assert "source checkout" in str(exc.value.code)


def test_full_tour_runs_and_no_check_fails(tmp_path):
    # The README's main command, in a fresh process (float32 by default, as a user runs it).
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "jaxstat", "tour", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-3000:]
    for name in cli.TOUR:
        assert name in out.stdout
    assert "FAILS" not in out.stdout
    figures = sorted(p.name for p in tmp_path.glob("*.png"))
    assert figures == [
        "graphons_flow.png",
        "morse_critical_points.png",
        "pde_burgers_shock.png",
        "quotient_local_entropy.png",
        "stationary_kerr_bistability.png",
        "strata_edges.png",
    ], figures  # one figure per part, but supragraph (a table of numbers)


@pytest.mark.slow
@pytest.mark.parametrize("part", ["stationary", "supragraph"])
def test_tour_part_compiles_two_solve_programs(part, tmp_path, caplog):
    # Each of these parts needs two solve programs (stationary: the dimer's solve, shared by its
    # three branches, and the layer's loss-and-gradient, shared by the gradient and the central
    # difference; supragraph: the global Newton solve and the layer solve, shared by both layers
    # of the sequential pass); compiling more means a check stopped sharing one.
    import logging

    import jax

    jax.clear_caches()  # programs an earlier test compiled would not be counted
    with jax.log_compiles(True), caplog.at_level(logging.WARNING, logger="jax"):
        checks = cli.tour([part], tmp_path)
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    big = [
        r.getMessage()
        for r in caplog.records
        if r.getMessage().startswith("Finished XLA compilation of")
        and ("solve" in r.getMessage() or "loss_and_grad" in r.getMessage())
    ]
    assert len(big) <= 2, big


@pytest.mark.slow
@pytest.mark.parametrize("part", ["supragraph", "morse", "graphons", "quotient"])
def test_tour_part_has_no_program_with_host_callbacks(part, tmp_path, monkeypatch):
    # JAX's persistent compilation cache never stores a program that calls back to Python (an
    # `eqx.error_if`), so a second `jaxstat tour` would compile it again. These parts have none:
    # their solves run with `throw=False` (results read outside the programs) and the library
    # checks their concrete inputs on the host. (Counted where XLA compiles, a private name.)
    from jax._src import compiler

    original = getattr(compiler, "compile_or_get_cached", None)
    if original is None:
        pytest.skip("jax._src.compiler.compile_or_get_cached moved")
    with_callbacks = []

    def counting(backend, computation, devices, options, host_callbacks, *args, **kwargs):
        if host_callbacks:
            with_callbacks.append(str(computation.operation.attributes["sym_name"]))
        return original(backend, computation, devices, options, host_callbacks, *args, **kwargs)

    monkeypatch.setattr(compiler, "compile_or_get_cached", counting)
    import jax

    jax.clear_caches()  # programs an earlier test compiled would not be counted
    checks = cli.tour([part], tmp_path)
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    assert with_callbacks == [], with_callbacks
