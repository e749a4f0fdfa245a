"""Test set-up: float64 is enabled for the whole session so that references can be exact.

Tests that check float32 behaviour create float32 arrays explicitly (cells take ``dtype=``).
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
# The suite compiles thousands of tiny programs, so XLA compile time, not run time, is its cost. JAX's
# switch for that case (LLVM at -O0, no expensive passes) cuts it by about a third. Numerics are IEEE
# either way (XLA:CPU does not enable fast-math) and every comparison is against an independent
# reference. In the environment, so that subprocesses and notebook kernels get it too; the few
# run-time-heavy tests (training) ask for optimised code with the ``optimised`` fixture.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
# The CLI turns on JAX's persistent compilation cache; in-process CLI tests must not change this
# process's JAX configuration or write to the user's cache folder (tests/test_cache.py tests it in
# subprocesses with their own folders).
os.environ["GRADSCOPE_CACHE_DIR"] = "off"

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)


@pytest.fixture
def optimised():
    """Compile with XLA's full optimisations for this test (training loops: run time dominates)."""
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", False)
    yield
    jax.config.update("jax_disable_most_optimizations", before)


def pytest_collection_modifyitems(items):
    """Tests marked ``slow`` (tens of seconds: reproductions, notebooks, subprocess CLI runs) first: with
    ``-n 2 --dist worksteal`` (pyproject's addopts) they start at once and the idle worker steals short
    tests from the end of the queues, so the run does not end with one worker finishing a long test alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
