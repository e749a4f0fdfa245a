"""The host's LAPACK route of Benettin's QR recursion (gradscope.engine._benettin) against NumPy float64
Householder QR (Benettin et al. 1980): graded Jacobians with a wide exponent spread, any k, warm-up, chunks
and worker counts."""

import numpy as np
import pytest

from gradscope.engine import _benettin
from gradscope.engine._blas import small_lapack


def graded(B, T, d, spread, seed=0):
    """Step Jacobians U diag(e^{-spread·i/(d−1)}) Vᵀ with random orthogonal U, V: singular values over
    e^spread per step, exponents spread over [−spread, 0] and beyond once they mix."""
    rng = np.random.default_rng(seed)
    s = np.exp(-spread * np.arange(d) / (d - 1))
    J = np.empty((B, T, d, d))
    for b in range(B):
        for t in range(T):
            U, _ = np.linalg.qr(rng.standard_normal((d, d)))
            V, _ = np.linalg.qr(rng.standard_normal((d, d)))
            J[b, t] = (U * s) @ V.T
    return J


def reference(J, k, warmup):
    """Running sums of log|diag R_t| by NumPy float64 QR of J_t Q (Q formed), the textbook recursion."""
    B, T, d = J.shape[:3]
    out = np.empty((B, T - warmup, k))
    for b in range(B):
        Q, acc = np.eye(d, k), np.zeros(k)
        for t in range(T):
            Q, R = np.linalg.qr(J[b, t] @ Q)
            if t >= warmup:
                acc = acc + np.log(np.abs(np.diag(R)))
                out[b, t - warmup] = acc
    return out


def sums(J, k, warmup, chunk=None):
    B, T, d = J.shape[:3]
    L = T if chunk is None else chunk
    chunks = (J[:, t0 : t0 + L] for t0 in range(0, T, L))
    with small_lapack(d):
        return _benettin.log_r_sums(chunks, T, k, warmup)


def bound(T, dtype, spread):
    """How far two backward-stable QR recursions may drift apart in the sums after T steps: the smallest
    R_ii of a step is σ_min ≈ e^−spread·‖A‖, and a backward error of c·ε·‖A‖ moves it by a relative c·ε·e^spread
    (so its log by as much); c = 50 covers the constants of d = 40–48 Householder steps with room."""
    return T * 50 * np.finfo(dtype).eps * np.exp(spread)


@pytest.mark.parametrize("k", [40, 17, 1])
def test_float64_matches_numpy_householder(k):
    # spread e^12 per step, far above float32's precision: float64 LAPACK (geqrt/gemqrt, Q never formed)
    # against NumPy's QR with Q formed
    J = graded(3, 50, 40, 12.0)
    got, ref = sums(J, k, warmup=7), reference(J, k, warmup=7)
    assert got.shape == (3, 43, k) and got.dtype == np.float64
    np.testing.assert_allclose(got, ref, rtol=0, atol=bound(50, np.float64, 12.0))  # 4.5e-8; seen 1.2e-9


def test_float32_within_its_rounding():
    # float32 QR of the float32-rounded Jacobians against float64 QR of the same numbers; spread e^4 per step
    J = graded(2, 80, 48, 4.0, seed=1).astype(np.float32)
    got, ref = sums(J, 48, 0), reference(J.astype(np.float64), 48, 0)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=0, atol=bound(80, np.float32, 4.0))  # 0.026; seen 6e-4
    assert np.max(np.abs(got - ref)) > 1e-6  # really float32, not float64 in disguise


@pytest.mark.parametrize("chunk", [1, 7, 13])
def test_chunks_and_workers_give_the_same_bits(monkeypatch, chunk):
    # each sequence is one thread's recursion on one BLAS thread: no dependence on how J arrives or on the
    # number of workers
    J = graded(5, 26, 24, 6.0, seed=2).astype(np.float32)
    whole = sums(J, 24, 3)
    np.testing.assert_array_equal(sums(J, 24, 3, chunk=chunk), whole)
    monkeypatch.setattr(_benettin, "usable_cpus", lambda: 1)
    np.testing.assert_array_equal(sums(J, 24, 3, chunk=chunk), whole)
    monkeypatch.setattr(_benettin, "usable_cpus", lambda: 4)
    np.testing.assert_array_equal(sums(J, 24, 3, chunk=chunk), whole)


def test_zero_r_diagonal_is_minus_inf():
    # a Jacobian with a zero column at the first step: R_00 = 0 exactly, log 0 = −inf (as the JAX route)
    J = graded(1, 4, 6, 1.0, seed=3)
    J[0, 0, :, 0] = 0.0
    got = sums(J, 6, 0)
    assert got[0, 0, 0] == -np.inf and np.all(np.isfinite(got[0, 0, 1:]))


def test_available_dtypes():
    assert _benettin.available(np.float32) and _benettin.available(np.float64)
    assert not _benettin.available(np.complex64) and not _benettin.available(np.float16)


def test_unexpected_signature_is_not_called(monkeypatch):
    # a SciPy whose Cython LAPACK differs from the signatures known here: the route is unavailable
    monkeypatch.setitem(_benettin._SIGNATURES, "geqrt", "void (int *)")
    _benettin._routines.cache_clear()
    try:
        assert not _benettin.available(np.float32)
    finally:
        monkeypatch.undo()
        _benettin._routines.cache_clear()
    assert _benettin.available(np.float32)


def test_worker_exception_reaches_the_caller(monkeypatch):
    def boom(self, J):
        raise ValueError("bad chunk")

    monkeypatch.setattr(_benettin._Sequence, "feed", boom)
    with pytest.raises(ValueError, match="bad chunk"):
        sums(graded(3, 2, 4, 1.0), 4, 0)


def test_non_finite_jacobians_give_nan_not_a_crash():
    # a diverged rollout's NaN or inf reaches LAPACK: the sums from that step on are NaN, as in the JAX route
    J = graded(2, 6, 5, 1.0, seed=4)
    J[0, 2, 1, 3], J[1, 3, 0, 0] = np.nan, np.inf
    got = sums(J, 5, 0)
    assert np.all(np.isfinite(got[0, :2])) and np.all(np.isnan(got[0, 2:]))
    assert np.all(np.isfinite(got[1, :3])) and np.all(np.isnan(got[1, 3:]))
