import gc
import os


# Tests are compile-bound (small programs): a lighter LLVM pipeline compiles faster and does not
# change floating-point semantics. Set before JAX starts; notebook kernels inherit it.
os.environ.setdefault(
    "XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
)

import jax  # noqa: E402
import jax.random as jr
import pytest


# Correctness tests run in float64; scale and dtype tests ask for float32 explicitly.
jax.config.update("jax_enable_x64", True)


@pytest.fixture
def getkey():
    """A fresh PRNG key on every call, from a fixed seed (reproducible)."""
    key = jr.key(5678)

    def _getkey():
        nonlocal key
        key, subkey = jr.split(key)
        return subkey

    return _getkey


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after a test module once they hold many memory mappings.

    On the CPU every compiled XLA program keeps several memory mappings of JIT-compiled code
    alive for as long as a jit cache holds it. A test worker compiles thousands of programs, and
    without a release it passes the kernel's limit on mappings (`vm.max_map_count`, 65,530 by
    default) about nine minutes into the suite; XLA then dies with a segmentation fault while
    compiling the next program, in whichever test happens to run. Measured: ~3,400 mappings after
    `tests/pde/test_burgers.py` alone, back to ~740 after `jax.clear_caches()`. Clearing after
    every module recompiled the programs that modules share (`tests/stationary`, one worker:
    2,125 compilations with a clear after every module, 1,803 with this threshold, ending at
    6,900 mappings), so the caches are cleared only past `_MAX_MAPPINGS` (or always, where
    `/proc/self/maps` cannot be read).
    """
    yield
    if _mappings() > _MAX_MAPPINGS:
        jax.clear_caches()
        gc.collect()


_MAX_MAPPINGS = 20_000


def _mappings() -> int:
    """The number of memory mappings of this process (Linux); unknown elsewhere: very many."""
    try:
        with open("/proc/self/maps") as f:
            return sum(1 for _ in f)
    except OSError:
        return 1 << 30


# The longest single tests (notebooks, the full tour, the multi-device subprocesses, the README
# blocks), run first so that the two workers end together instead of one waiting on a long tail.
_LONG_FIRST = ("test_notebooks", "test_cli.py::test_full_tour", "test_sharding", "test_readme")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: not any(name in item.nodeid for name in _LONG_FIRST))
