"""gradscope.engine._blas: one OpenBLAS thread around the small-factorisation stages, restored afterwards."""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import gradscope as gs
from gradscope.cells import make
from gradscope.engine import _blas

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu", reason="OpenBLAS threads matter on the CPU only")


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


@pytest.fixture
def two_threads():
    """Every BLAS library at 2 threads for the test (whatever the environment set), restored after."""
    jnp.linalg.qr(jnp.eye(4)).Q.block_until_ready()  # jaxlib's LAPACK loaded
    with threadpool_limits(limits=2, user_api="blas"):
        if not _blas_threads():
            pytest.skip("no BLAS library that threadpoolctl can control")
        yield _blas_threads()


def test_one_thread_inside_and_restored_after(two_threads):
    with _blas.small_lapack(128):
        assert _blas_threads() == [1] * len(two_threads)
    assert _blas_threads() == two_threads


def test_restored_after_an_exception(two_threads):
    with pytest.raises(ZeroDivisionError), _blas.small_lapack(128):
        assert _blas_threads() == [1] * len(two_threads)
        _ = 1 / 0
    assert _blas_threads() == two_threads


def test_interleaved_stages_restore_the_count(two_threads):
    """Two stages that overlap without nesting, as two threads' stages can (A enters, B enters, A leaves
    while B is still inside, B leaves): B keeps one thread after A has left, and the count after B is the
    one from before A (a save/restore per stage would restore A's 2 under B, and then B's saved 1)."""
    a, b = _blas.small_lapack(64), _blas.small_lapack(64)
    a.__enter__()
    b.__enter__()
    a.__exit__(None, None, None)
    assert _blas_threads() == [1] * len(two_threads)
    b.__exit__(None, None, None)
    assert _blas_threads() == two_threads


def test_wide_matrices_left_alone(two_threads):
    with _blas.small_lapack(_blas.SMALL + 1):
        assert _blas_threads() == two_threads


def test_ready_waits_for_arrays_and_passes_tracers():
    x = jnp.arange(3.0)
    assert _blas.ready({"a": x})["a"] is x
    seen = []

    @jax.jit
    def f(x):
        y = _blas.ready(x * 2)  # inside a trace: nothing to wait for, no error
        seen.append(type(y).__name__)
        return y

    np.testing.assert_array_equal(f(x), [0.0, 2.0, 4.0])
    assert seen and "Tracer" in seen[0]


@pytest.fixture
def spy(monkeypatch):
    """Record the width each stage asks `small_lapack` for, and the BLAS threads while the stage ran."""
    calls = []
    real = _blas.small_lapack

    @contextlib.contextmanager
    def recording(d):
        with real(d):
            calls.append((d, _blas_threads()))
            yield

    monkeypatch.setattr(_blas, "small_lapack", recording)  # what `on_one_thread` enters
    return calls


def _lstm(n=6, m=3, T=12, B=2):
    cell = make("lstm", m, n, key=jax.random.key(0))
    xs = jax.random.normal(jax.random.key(1), (B, T, m))
    return cell, xs


def test_lyapunov_and_step_spectra_run_with_one_thread(two_threads, spy):
    cell, xs = _lstm()
    d = 12  # (h, c)
    gs.lyapunov_spectrum(cell, xs)
    gs.step_singular_values(cell, xs)
    steps = gs.engine.trajectory_steps(cell, xs)
    gs.engine.lyapunov_spectrum_of(cell, steps)
    gs.engine.step_singular_values_of(cell, steps)
    assert [c[0] for c in spy] == [d] * 4
    assert all(threads == [1] * len(two_threads) for _, threads in spy)
    assert _blas_threads() == two_threads


def test_thread_count_does_not_change_the_exponents(two_threads, monkeypatch):
    """The same stage with OpenBLAS at 2 threads (limit off) and at one: the same exponents to float32
    rounding (the blocked QR's order of operations may differ with the thread count)."""
    cell, xs = _lstm()
    one = np.asarray(gs.lyapunov_spectrum(cell, xs).exponents)
    monkeypatch.setattr(_blas, "SMALL", 0)
    two = np.asarray(gs.lyapunov_spectrum(cell, xs).exponents)
    np.testing.assert_allclose(one, two, rtol=1e-5, atol=1e-6)
