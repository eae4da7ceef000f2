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
    """Drop JAX's compiled programs after each test module.

    On the CPU every compiled XLA program keeps several memory mappings of JIT-compiled code
    alive for as long as a jit cache holds it. A test worker compiles thousands of programs, and
    without this it passes the kernel's limit on mappings (`vm.max_map_count`, 65,530 by default)
    about nine minutes into the suite; XLA then dies with a segmentation fault while compiling the
    next program, in whichever test happens to run. Measured: ~3,400 mappings after
    `tests/pde/test_burgers.py` alone, back to ~740 after `jax.clear_caches()`.
    """
    yield
    jax.clear_caches()
    gc.collect()


# The longest single tests (notebooks, the full tour, the multi-device subprocesses, the README
# blocks), run first so that the two workers end together instead of one waiting on a long tail.
_LONG_FIRST = ("test_notebooks", "test_cli.py::test_full_tour", "test_sharding", "test_readme")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: not any(name in item.nodeid for name in _LONG_FIRST))
