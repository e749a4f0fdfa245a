"""One BLAS thread for stages made of many small LAPACK factorisations.

On the CPU, JAX's QR and SVD are LAPACK calls into the OpenBLAS that jaxlib shares with SciPy. A
Lyapunov spectrum factorises one d × d (or d × k) matrix per step, T steps in sequence; for such small
matrices OpenBLAS's own worker threads cost more than they give: they are woken and put back to sleep on
every call, and they compete with XLA's thread pool for the same cores. Measured on the reference 2-core
CPU (2026-12-06, a JAX scan of ``qr(J_t Q)``, float32): d = 128 0.295 → 0.075 s with one thread, d = 256
0.166 → 0.086 s, d = 512 0.200 → 0.134 s, d = 1024 0.89 → 0.69 s; a gradscope Lyapunov spectrum of an LSTM
with n = 64 (d = 128), T = 200, B = 4: 1.23 → 0.34 s; its per-step singular values 0.62 → 0.46 s.

`on_one_thread` runs such a stage inside `small_lapack`, which sets OpenBLAS to one thread (through
threadpoolctl; the previous count is restored when the last stage running in any thread exits, exceptions
included), and waits for the stage's results inside it (`ready`), since JAX returns before its computation
has run. Matrices wider
than `SMALL`, other backends, and calls inside a user's ``jit`` (nothing runs there) are left alone; so is a
process without threadpoolctl. Seen here (threadpoolctl 3.8, SciPy's OpenBLAS): a limit set from a thread
other than the main one after the main thread had set a count explicitly did not take effect; that costs
speed only, never a result.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import jax

from gradscope._xla import traced

#: the widest factorised matrix for which one BLAS thread is used (on bigger machines threads may pay
#: off sooner than on the reference 2-core CPU, where one thread was faster up to 1024)
SMALL = 512


_lock = threading.Lock()
_depth = 0  # stages inside `small_lapack` now, over all threads
_limits: Any = None  # the threadpoolctl limiter of the outermost one, which restores the count


@contextlib.contextmanager
def small_lapack(d: int) -> Iterator[None]:
    """One OpenBLAS thread while the block runs, for factorisations of matrices at most `SMALL` wide on
    the CPU; otherwise nothing. The previous thread count is restored when the last such block (over all
    threads of the process) exits, exceptions included."""
    global _depth, _limits
    if d > SMALL or jax.default_backend() != "cpu":
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a declared dependency; without it nothing is limited
        yield
        return
    with _lock:
        if _depth == 0:
            # a fresh limiter (~1 ms): it lists the BLAS libraries loaded by then, jaxlib's included
            _limits = threadpool_limits(limits=1, user_api="blas")
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _limits.restore_original_limits()
                _limits = None


def ready(tree: Any) -> Any:
    """``tree`` once its arrays are computed (`jax.block_until_ready`); tracers are returned as they are."""
    if traced(tree):
        return tree
    return jax.block_until_ready(tree)


def on_one_thread(d: int, program: Callable[..., Any], *args: Any, **options: Any) -> Any:
    """``program(*args, **options)``, computed with one OpenBLAS thread for factorisations ``d`` wide
    (`small_lapack`; its results awaited inside, `ready`)."""
    with small_lapack(d):
        return ready(program(*args, **options))
