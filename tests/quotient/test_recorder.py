"""The crash-safe recorder: interrupted, resumed and corrupted runs against an uninterrupted one."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import jax.numpy as jnp
import numpy as np
import pytest

import jaxstat.quotient as jq


def _observables(step):
    """Deterministic observables of a step: a scalar, a per-layer vector, a nested matrix."""
    rng = np.random.default_rng(step)
    return {
        "loss": np.float64(1.0 / (1 + step)),
        "norms": [rng.normal(size=3), jnp.arange(2.0) * step],
        "attention": {"spectrum": rng.normal(size=(2, 2)).astype(np.float32)},
    }


def _record(directory, steps, interval, *, close=True):
    recorder = jq.Recorder(directory, interval=interval)
    start = recorder.next_step
    for step in range(start, start + steps):
        recorder.record(_observables(step))
    if close:
        recorder.close()
    return recorder


def test_roundtrip_names_and_steps(tmp_path):
    with jq.Recorder(tmp_path, interval=4) as recorder:
        for step in range(10):
            assert recorder.record(_observables(step)) == step
    series = jq.read_record(tmp_path)
    assert sorted(series) == ["attention/spectrum", "loss", "norms/0", "norms/1", "step"]
    np.testing.assert_array_equal(series["step"], np.arange(10))
    np.testing.assert_array_equal(series["loss"], [1.0 / (1 + s) for s in range(10)])
    np.testing.assert_array_equal(
        series["norms/0"], np.stack([_observables(s)["norms"][0] for s in range(10)])
    )
    assert series["attention/spectrum"].dtype == np.float32
    assert series["attention/spectrum"].shape == (10, 2, 2)
    # Three chunks (4 + 4 + 2 steps), no temporary files left behind.
    assert sorted(os.listdir(tmp_path)) == [f"chunk_{s:012d}.npz" for s in (0, 4, 8)]


def test_crash_loses_at_most_the_last_interval_and_resume_appends(tmp_path):
    # Uninterrupted: 23 steps. Interrupted: 13 steps recorded, the process "dies" without
    # closing (the buffered steps 10-12 are lost, the chunks of steps 0-9 are on disk). A new
    # Recorder resumes at step 10; the final series equals the uninterrupted one.
    full, broken = tmp_path / "full", tmp_path / "broken"
    _record(full, 23, interval=5)
    crashed = _record(broken, 13, interval=5, close=False)
    del crashed  # no flush on garbage collection: a kill writes nothing either
    assert jq.read_record(broken)["step"].tolist() == list(range(10))
    resumed = jq.Recorder(broken, interval=5)
    assert resumed.next_step == 10
    for step in range(10, 23):
        resumed.record(_observables(step))
    resumed.close()
    a, b = jq.read_record(full), jq.read_record(broken)
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_corrupt_trailing_chunk_is_ignored_with_a_warning(tmp_path):
    _record(tmp_path, 10, interval=5)
    good = (tmp_path / "chunk_000000000005.npz").read_bytes()
    # A truncated chunk after the last good one, and a stray temporary file of a killed write.
    (tmp_path / "chunk_000000000010.npz").write_bytes(good[: len(good) // 2])
    (tmp_path / ".partial-abc.npz").write_bytes(good[:100])
    with pytest.warns(RuntimeWarning, match="unreadable chunk"):
        series = jq.read_record(tmp_path)
    np.testing.assert_array_equal(series["step"], np.arange(10))
    with pytest.warns(RuntimeWarning, match="set aside"):
        recorder = jq.Recorder(tmp_path, interval=5)
    assert recorder.next_step == 10
    assert (tmp_path / "chunk_000000000010.npz.corrupt").exists()
    for step in range(10, 15):
        recorder.record(_observables(step))
    recorder.close()
    np.testing.assert_array_equal(jq.read_record(tmp_path)["step"], np.arange(15))


def test_record_many_and_errors(tmp_path):
    stacked = {"a": np.arange(6.0), "b": np.ones((6, 2))}
    with jq.Recorder(tmp_path, interval=4) as recorder:
        recorder.record_many(stacked)
        with pytest.raises(ValueError, match="changed"):
            recorder.record({"a": 1.0})
        with pytest.raises(ValueError, match="not after"):
            recorder.record({"a": np.float64(1.0), "b": np.ones(2)}, step=3)
    series = jq.read_record(tmp_path)
    np.testing.assert_array_equal(series["a"], np.arange(6.0))
    with pytest.raises(ValueError, match="interval"):
        jq.Recorder(tmp_path, interval=0)
    with pytest.raises(FileNotFoundError):
        jq.read_record(tmp_path / "missing")
    # A resumed recorder refuses observables of another shape than the record on disk.
    with pytest.raises(ValueError, match="changed"):
        jq.Recorder(tmp_path, interval=4).record({"a": np.float64(0.0), "b": np.ones(3)})


_CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from jaxstat.quotient._recorder import Recorder
    recorder = Recorder(sys.argv[1], interval=7)
    step = recorder.next_step
    while True:
        rng = np.random.default_rng(step)
        recorder.record({"x": rng.normal(size=1000), "step_sq": np.float64(step) ** 2})
        step += 1
        if step % 7 == 0:
            print(step, flush=True)
        time.sleep(0.001)
    """
)


@pytest.mark.slow  # starts Python twice (about 10 s each on a loaded machine)
def test_sigkill_mid_run_then_resume(tmp_path):
    # A child process records forever; it is killed with SIGKILL at an arbitrary moment, twice
    # (once per run). Every chunk on disk is complete, the steps are 0, 1, ... without gaps, and
    # the values equal what an uninterrupted run writes.
    for _ in range(2):
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(5):  # wait for five chunks, then kill mid-interval
            child.stdout.readline()
        time.sleep(0.0123)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    series = jq.read_record(tmp_path)
    steps = series["step"]
    assert len(steps) >= 2 * 5 * 7 - 7 and len(steps) % 7 == 0
    np.testing.assert_array_equal(steps, np.arange(len(steps)))
    np.testing.assert_array_equal(series["step_sq"], steps.astype(float) ** 2)
    np.testing.assert_array_equal(
        series["x"][-1], np.random.default_rng(int(steps[-1])).normal(size=1000)
    )


def test_interrupted_write_leaves_no_partial_chunk(tmp_path, monkeypatch):
    # A write that dies half-way (here: the serialiser writes a few bytes, then the process is
    # interrupted) leaves the record as it was: the chunk appears whole or not at all.
    recorder = jq.Recorder(tmp_path, interval=2)
    recorder.record(_observables(0))
    recorder.record(_observables(1))

    def dying_savez(file, **arrays):
        file.write(b"PK\x03\x04 half a chunk")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", dying_savez)
    recorder.record(_observables(2))
    with pytest.raises(KeyboardInterrupt):
        recorder.record(_observables(3))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["chunk_000000000000.npz"]
    np.testing.assert_array_equal(jq.read_record(tmp_path)["step"], [0, 1])
    assert jq.Recorder(tmp_path, interval=2).next_step == 2
