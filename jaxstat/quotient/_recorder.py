r"""A crash-safe, append-only on-disk record of training observables.

A `Recorder` runs beside a training loop: each step it receives a pytree of observables (arrays
of fixed shapes), buffers `interval` steps, and writes them as one chunk, a NumPy `.npz` file
holding one array per observable (leading axis: the steps), the step numbers, and the
observables' names. Nothing is pickled (`np.load(..., allow_pickle=False)` reads it). A chunk is
written to a temporary file in the same directory, flushed to disk (`fsync`) and renamed into
place with `os.replace`, which is atomic: a chunk file is either absent or complete. A run killed
at any point therefore loses at most the steps of the interval it had not yet written.

Re-opening the directory resumes: the chunks there are read, a chunk that cannot be read (a
truncated or corrupt file, e.g. copied from an interrupted transfer) is set aside as
`*.corrupt` with a warning, and recording continues at the step after the last one on disk.
`read_record(directory)` returns one array per observable, the chunks concatenated in step order.

Observable names are the pytree paths joined by `/` (`{"layers": [{"norm": x}]}` gives
`layers/0/norm`).
"""

import os
import re
import tempfile
import warnings
from collections.abc import Mapping

import jax.tree_util as jtu
import numpy as np


_CHUNK = re.compile(r"^chunk_(\d{12})\.npz$")
_KEYS = "__keys__"
_STEP = "step"


def _name(path) -> str:
    return jtu.keystr(path, simple=True, separator="/") or "value"


def _flatten(observables) -> dict[str, np.ndarray]:
    leaves = jtu.tree_flatten_with_path(observables)[0]
    flat = {}
    for path, leaf in leaves:
        name = _name(path)
        if name in flat or name in (_STEP, _KEYS):
            raise ValueError(f"two observables (or a reserved name) share the name {name!r}.")
        flat[name] = np.asarray(leaf)
    if not flat:
        raise ValueError("the observables pytree has no leaves.")
    return flat


def _read_chunk(path: str) -> dict[str, np.ndarray]:
    """The arrays of one chunk; raises on any inconsistency."""
    with np.load(path, allow_pickle=False) as data:
        names = [str(n) for n in data[_KEYS]]
        steps = np.asarray(data[_STEP])
        out = {_STEP: steps}
        for i, name in enumerate(names):
            array = np.asarray(data[f"k{i}"])
            if array.shape[:1] != steps.shape:
                raise ValueError(
                    f"observable {name!r} has {array.shape[:1]} steps, expected {steps.shape}."
                )
            out[name] = array
    if steps.ndim != 1 or steps.size == 0 or np.any(np.diff(steps) <= 0):
        raise ValueError("the step numbers are not increasing.")
    return out


def _scan(directory: str, *, quarantine: bool) -> list[dict[str, np.ndarray]]:
    """The readable chunks in step order; unreadable ones warned about (and renamed aside)."""
    chunks = []
    for entry in sorted(os.listdir(directory)):
        if not _CHUNK.match(entry):
            continue
        path = os.path.join(directory, entry)
        try:
            chunks.append(_read_chunk(path))
        except Exception as error:  # a truncated zip, a missing array, a bad header...
            action = "set aside as .corrupt" if quarantine else "ignored"
            warnings.warn(
                f"unreadable chunk {path} ({error}); {action}.", RuntimeWarning, stacklevel=3
            )
            if quarantine:
                os.replace(path, path + ".corrupt")
    last = -1
    kept = []
    for chunk in chunks:
        if chunk[_STEP][0] <= last:
            warnings.warn(
                f"chunk starting at step {chunk[_STEP][0]} overlaps the steps before it; ignored.",
                RuntimeWarning,
                stacklevel=3,
            )
            continue
        kept.append(chunk)
        last = int(chunk[_STEP][-1])
    return kept


def read_record(directory: str | os.PathLike) -> dict[str, np.ndarray]:
    r"""Read a record written by `Recorder`: `{name: array}` with the steps along axis 0.

    `"step"` holds the step numbers. Unreadable chunks are skipped with a `RuntimeWarning`.

    **Example:** `series = read_record("run/observables"); plt.plot(series["step"], series["loss"])`
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"no record at {directory!r}.")
    chunks = _scan(directory, quarantine=False)
    if not chunks:
        return {}
    names = list(chunks[0])
    out = {}
    for name in names:
        parts = [c[name] for c in chunks if name in c]
        if len(parts) != len(chunks):
            raise ValueError(f"observable {name!r} is missing from some chunks.")
        out[name] = np.concatenate(parts, axis=0)
    return out


class Recorder:
    r"""Write a pytree of observables per step to `directory`, one atomic chunk per `interval`.

    Not a JAX transformation: it runs in Python beside the (jitted) training step and copies
    each step's observables to host memory (`np.asarray`). Use it as a context manager, or call
    `close()`: the last, partial interval is written then. A killed process loses at most the
    steps recorded since the last chunk.

    **Arguments:**

    - `directory`: created if needed; if it holds a record, recording resumes after its last step.
    - `interval`: steps per chunk (the most a crash can lose).

    **Attributes:** `next_step`, the step number the next `record` call gets.

    **Example:**

    ```python
    import jax.numpy as jnp
    import tempfile
    from jaxstat.quotient import Recorder, read_record

    directory = tempfile.mkdtemp()  # a run's folder

    def train_step(params, opt_state, batch):  # stands for a real jitted step
        params = params - 0.1 * (params - batch)
        return params, opt_state, {"loss": jnp.sum((params - batch) ** 2)}

    params, opt_state, num_steps = jnp.zeros(3), None, 500
    batches = jnp.ones((num_steps, 3))
    with Recorder(directory, interval=100) as recorder:
        for step in range(recorder.next_step, num_steps):
            params, opt_state, observables = train_step(params, opt_state, batches[step])
            recorder.record(observables)
    series = read_record(directory)  # {"step": ..., "loss": ...}, what was recorded
    ```
    """

    def __init__(self, directory: str | os.PathLike, *, interval: int = 100):
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f"`interval` must be a positive int, got {interval!r}.")
        self.directory = os.fspath(directory)
        self.interval = interval
        os.makedirs(self.directory, exist_ok=True)
        chunks = _scan(self.directory, quarantine=True)
        self.next_step = int(chunks[-1][_STEP][-1]) + 1 if chunks else 0
        self._schema: dict[str, tuple[tuple[int, ...], np.dtype]] | None = None
        if chunks:
            last = chunks[-1]
            self._schema = {k: (v.shape[1:], v.dtype) for k, v in last.items() if k != _STEP}
        self._buffer: list[dict[str, np.ndarray]] = []
        self._steps: list[int] = []

    def _check(self, flat: Mapping[str, np.ndarray]):
        schema = {k: (v.shape, v.dtype) for k, v in flat.items()}
        if self._schema is None:
            self._schema = schema
        elif schema != self._schema:
            raise ValueError(
                "the observables changed names, shapes or dtypes since the record began: "
                f"expected {self._schema}, got {schema}."
            )

    def record(self, observables, step: int | None = None) -> int:
        """Append one step's observables (a pytree of arrays); returns its step number.

        `step` defaults to `next_step`; an explicit one must exceed the last recorded step.
        """
        flat = _flatten(observables)
        self._check(flat)
        if step is None:
            step = self.next_step
        if step < self.next_step:
            raise ValueError(
                f"step {step} is not after the last recorded step {self.next_step - 1}."
            )
        self._buffer.append(flat)
        self._steps.append(int(step))
        self.next_step = int(step) + 1
        if len(self._buffer) >= self.interval:
            self.flush()
        return int(step)

    def record_many(self, observables) -> None:
        """Append several steps at once: every leaf has the steps along axis 0 (e.g. the stacked
        output of a `lax.scan` over training steps)."""
        flat = _flatten(observables)
        lengths = {v.shape[0] if v.ndim else None for v in flat.values()}
        if len(lengths) != 1 or None in lengths:
            raise ValueError("every observable needs the same number of steps along axis 0.")
        for i in range(lengths.pop()):
            self.record({k: v[i] for k, v in flat.items()})

    def flush(self) -> None:
        """Write the buffered steps as one chunk (atomically); a no-op when nothing is buffered."""
        if not self._buffer:
            return
        names = list(self._buffer[0])
        arrays = {f"k{i}": np.stack([b[n] for b in self._buffer]) for i, n in enumerate(names)}
        arrays[_STEP] = np.asarray(self._steps, dtype=np.int64)
        arrays[_KEYS] = np.asarray(names, dtype=np.str_)
        final = os.path.join(self.directory, f"chunk_{self._steps[0]:012d}.npz")
        fd, temporary = tempfile.mkstemp(prefix=".partial-", suffix=".npz", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as file:
                np.savez(file, **arrays)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, final)
        except BaseException:
            if os.path.exists(temporary):
                os.remove(temporary)
            raise
        _fsync_directory(self.directory)
        self._buffer, self._steps = [], []

    def close(self) -> None:
        """Write the last, partial interval."""
        self.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        return f"Recorder({self.directory!r}, interval={self.interval}, next_step={self.next_step})"


def _fsync_directory(directory: str) -> None:
    """Persist the rename itself (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
