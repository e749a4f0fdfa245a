"""Benettin's QR recursion on the host's LAPACK, one sequence per CPU: the CPU route of a Lyapunov spectrum.

For each sequence, with ``Q_{-1}`` the first k columns of the identity (Benettin et al. 1980)::

    Q_t R_t = J_t Q_{t-1},        sums_t = Σ_{warmup ≤ s ≤ t} log|diag R_s|

Q is never formed. Each step factorises ``A_t = J_t Q_{t-1}`` (d × k) by Householder QR kept in compact WY
form, ``Q_t = I − V_t T_t V_tᵀ`` with T_t upper triangular (Schreiber & Van Loan 1989; LAPACK ``geqrt``, panels
of `PANEL` columns), and the next step's ``J_{t+1} Q_t`` is ``J_{t+1}`` with those reflectors applied from the
right (``gemqrt``), first k columns kept. Both are blocked, level-3 LAPACK, while ``qr`` as JAX calls it
(``geqrf`` + ``orgqr``) runs LAPACK's unblocked code at d ≤ 128 (below its crossover) and multiplies by the
formed Q. It is the same Householder QR, backward stable at any conditioning, in the Jacobians' precision.
Per 128 × 128 float32 step, one BLAS thread, on the reference 2-core CPU (2026-12-06): geqrf + orgqr +
matmul 0.41 ms, geqrf + ormqr 0.29 ms, geqrt(32) + gemqrt 0.21 ms.

The recursion is sequential in t and independent across sequences: the sequences are shared among worker
threads, one per usable CPU. The two routines are called through ctypes, which releases the GIL during
each call (SciPy's Python wrappers of these two hold it: two threads ran no faster than one). An LSTM's
4 sequences of 200 steps (d = 128): 0.186 s on one worker, 0.131 s on two (this VM's two CPUs do not double
level-3 throughput). Each sequence is computed by one thread on one BLAS thread, so the numbers do not depend
on the number of workers or on how the Jacobians arrive (whole, or in chunks: `log_r_sums`).

This runs outside JAX, on NumPy arrays: `gradscope.engine.spectra` keeps its JAX scan for traced calls,
other backends and other dtypes.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import functools
import itertools
import re
from collections.abc import Iterable
from typing import Any

import numpy as np

from gradscope._cpus import usable_cpus
from gradscope.engine._blas import SMALL

#: the panel width of the blocked QR (geqrt's ``nb``): 16–64 ran alike at d = 128, 128 (unblocked) slower
PANEL = 32
#: LAPACK's prefix for each dtype with a route here (real; complex and half precision stay in JAX)
_PREFIX = {np.dtype(np.float32): "s", np.dtype(np.float64): "d"}
#: the C signatures of SciPy's Cython LAPACK functions used here (``X`` the scalar type); anything else is
#: not called
_SIGNATURES = {
    "geqrt": "void (int *, int *, int *, X *, int *, X *, int *, X *, int *)",
    "gemqrt": "void (char *, char *, int *, int *, int *, int *, X *, int *, X *, int *, X *, int *, X *, int *)",
}


@functools.cache
def _routines(prefix: str) -> tuple[Any, Any] | None:
    """``(geqrt, gemqrt)`` of ``prefix`` as ctypes functions of SciPy's LAPACK (`scipy.linalg.cython_lapack`),
    or None where they are missing or their signatures differ. Through ctypes the GIL is released during
    each call (SciPy's Python wrappers of these two keep it), so the worker threads run in parallel."""
    try:
        from scipy.linalg import cython_lapack  # pyright: ignore[reportAttributeAccessIssue]  (a compiled module)
    except ImportError:  # pragma: no cover - SciPy comes with JAX
        return None
    get_name = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(("PyCapsule_GetName", ctypes.pythonapi))
    get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
        ("PyCapsule_GetPointer", ctypes.pythonapi)
    )
    out = []
    for routine, signature in _SIGNATURES.items():
        capsule = getattr(cython_lapack, "__pyx_capi__", {}).get(prefix + routine)
        if capsule is None:
            return None
        name = get_name(capsule)
        if re.sub(r"__pyx_t_\w*cython_lapack_[sd]\b", "X", name.decode()) != signature:
            return None
        nargs = signature.count("*")
        out.append(ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * nargs)(get_pointer(capsule, name)))
    return out[0], out[1]


def available(dtype: Any) -> bool:
    """Whether step Jacobians of ``dtype`` can take this route."""
    prefix = _PREFIX.get(np.dtype(dtype))
    return prefix is not None and _routines(prefix) is not None


class _Sequence:
    """One sequence's recursion, fed its step Jacobians chunk by chunk (`feed`): the last step's reflectors
    and T factor, LAPACK's workspace and the running sums."""

    def __init__(self, d: int, k: int, dtype: np.dtype, warmup: int, out: np.ndarray) -> None:
        routines = _routines(_PREFIX[dtype])
        assert routines is not None  # checked by the caller (`available`)
        self.geqrt, self.gemqrt = routines
        self.k, self.warmup, self.out, self.t = k, warmup, out, 0
        nb = min(PANEL, k)
        # LAPACK's integer arguments, passed by address: d, k, nb, info
        self.ints = np.array([d, k, nb, 0], np.int32)
        self.Tw = np.zeros((k, nb), dtype)  # geqrt's T (nb × k, Fortran order), read by the next gemqrt
        self.work = np.empty(d * nb, dtype)  # enough for both (geqrt: nb·k, gemqrt from the right: d·nb)
        self.acc = np.zeros(k, dtype)
        self.V: np.ndarray | None = None  # the last A factorised: R above the diagonal, reflectors below

    def feed(self, J: np.ndarray) -> None:
        """Advance over the step Jacobians ``J`` (L, d, d) that follow those already fed."""
        d_, k_, nb_, info_ = (self.ints.ctypes.data + 4 * i for i in range(4))
        right, plain = ctypes.c_char_p(b"R"), ctypes.c_char_p(b"N")
        Tw, work, k = self.Tw.ctypes.data, self.work.ctypes.data, self.k
        for Jt in J:
            A = np.array(Jt, order="F")  # a copy (Fortran order): the calls below overwrite it in place
            if self.V is not None:  # A ← J_t Q_{t-1}: the last step's reflectors applied from the right
                V = self.V.ctypes.data
                self.gemqrt(right, plain, d_, d_, k_, nb_, V, d_, Tw, nb_, A.ctypes.data, d_, work, info_)
                _check(self.ints[3], "gemqrt")
            self.geqrt(d_, k_, nb_, A.ctypes.data, d_, Tw, nb_, work, info_)  # QR of its first k columns
            _check(self.ints[3], "geqrt")
            self.V = A
            if self.t >= self.warmup:
                with np.errstate(divide="ignore"):  # an exactly zero R_ii is log 0 = −inf, as in the JAX route
                    self.acc += np.log(np.abs(np.diagonal(A[:, :k])))
                self.out[self.t - self.warmup] = self.acc
            self.t += 1


def _check(info: int, routine: str) -> None:
    if info != 0:  # only for an illegal argument: a bug here, not a property of the Jacobians
        raise RuntimeError(f"LAPACK {routine} returned info={info}")


def log_r_sums(chunks: Iterable[np.ndarray], T: int, k: int, warmup: int) -> np.ndarray:
    """Running sums ``(B, T − warmup, k)`` of ``log|diag R_t|`` after the warm-up, from the step Jacobians
    given in consecutive chunks ``(B, L, d, d)`` (L ≥ 1, T steps in all) of a dtype this route has
    (`available`), on ``min(B, usable CPUs)`` threads (one above `SMALL`). The caller limits BLAS to one
    thread (`gradscope.engine._blas.small_lapack`)."""
    rest = iter(chunks)
    first = next(rest)  # the first chunk sizes everything
    B, d = first.shape[0], first.shape[-1]
    out = np.empty((B, T - warmup, k), first.dtype)
    seqs = [_Sequence(d, k, first.dtype, warmup, out[b]) for b in range(B)]
    # wider matrices keep BLAS's own threads (`small_lapack` leaves them on): one sequence at a time then
    workers = min(B, usable_cpus()) if d <= SMALL else 1
    pool = concurrent.futures.ThreadPoolExecutor(workers, "gradscope-benettin") if workers > 1 else None
    with pool or contextlib.nullcontext():
        for J in itertools.chain([first], rest):
            if pool is None:
                for b in range(B):
                    seqs[b].feed(J[b])
            else:
                for f in [pool.submit(seqs[b].feed, J[b]) for b in range(B)]:
                    f.result()  # re-raises a worker's exception here
    return out
