"""The log-space product on its own (gradscope.engine.logspace), against NumPy float64 and closed forms.

Closed forms used:
* a product of scaled orthogonal matrices ``c_t Q_t`` is ``(∏ c_t) · Q`` with Q orthogonal, so all its
  singular values equal ∏ c_t and ``‖P‖_F = √d ∏ c_t``;
* complex multipliers λ on ``[Re h, Im h]`` act as ``|λ| R(arg λ)``, and ``∏ |λ_j| R(θ_j) = |∏ λ_j| R(Σ θ_j)``.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradscope.engine import logspace


def _orthogonal(rng, d):
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def _scan_product(Js, left=False):
    """Run init(I) then update over Js inside lax.scan (as the engine does); return every carry."""
    d = Js.shape[-1]

    def body(P, J):
        P = logspace.update(P, J, left=left)
        return P, P

    return jax.lax.scan(body, logspace.init(jnp.eye(d, dtype=Js.dtype)), Js)[1]


def test_compensated_add_is_exact_where_plain_float32_summation_drifts():
    # 5000 float32 terms: the exact sum of those float32 values is math.fsum in float64
    x = np.random.default_rng(0).uniform(0.05, 0.15, 5000).astype(np.float32)
    ref = math.fsum(x.astype(np.float64))

    def body(c, v):
        return logspace.compensated_add(c[0], c[1], v), None

    (s, c), _ = jax.lax.scan(body, (jnp.float32(0), jnp.float32(0)), jnp.asarray(x))
    naive = np.float32(0)
    for v in x:
        naive = np.float32(naive + v)
    ulp = float(np.spacing(np.float32(ref)))
    assert abs(float(s) - ref) <= ulp  # the sum alone is rounded once
    assert abs(float(s) - float(c) - ref) <= 1e-3 * ulp  # with the compensation: float64-exact here
    assert abs(float(naive) - ref) > 10 * ulp  # and plain float32 summation really does drift


def test_zero_and_infinite_terms():
    s, c = logspace.compensated_add(jnp.float32(2.0), jnp.float32(0.0), -jnp.inf)
    assert float(s) == -np.inf and float(c) == 0.0
    s, c = logspace.compensated_add(s, c, jnp.float32(3.0))  # an exactly zero product stays zero
    assert float(s) == -np.inf and float(c) == 0.0
    P = logspace.update(logspace.init(jnp.eye(3)), jnp.zeros((3, 3)))
    assert float(logspace.log10_frobenius(P)) == -np.inf and not np.any(np.isnan(np.asarray(P.matrix)))
    P = logspace.update(P, jnp.eye(3))
    assert float(logspace.log10_frobenius(P)) == -np.inf and not np.any(np.isnan(np.asarray(P.matrix)))


@pytest.mark.parametrize("left", [False, True])
def test_products_of_random_matrices_match_numpy_float64(left):
    rng = np.random.default_rng(1)
    T, d = 12, 4
    Js = rng.normal(size=(T, d, d)) * 1.7
    Ps = _scan_product(jnp.asarray(Js), left=left)
    ref = np.eye(d)
    for t in range(T):
        ref = Js[t] @ ref if left else ref @ Js[t]
        P = jax.tree.map(lambda a: a[t], Ps)
        np.testing.assert_allclose(float(np.linalg.norm(np.asarray(P.matrix))), 1.0, rtol=1e-14)
        np.testing.assert_allclose(float(logspace.log10_frobenius(P)), np.log10(np.linalg.norm(ref)), atol=1e-12)
        np.testing.assert_allclose(
            float(logspace.log10_scaled(P, jnp.linalg.norm(P.matrix, 2))), np.log10(np.linalg.norm(ref, 2)), atol=1e-12
        )
        np.testing.assert_allclose(
            np.asarray(logspace.log10_singular_values(P)), np.log10(np.linalg.svd(ref, compute_uv=False)), atol=1e-10
        )
        # the carry represents the product itself: exp(s − c) · M
        np.testing.assert_allclose(
            np.exp(float(logspace.log_scale(P))) * np.asarray(P.matrix), ref, rtol=1e-11, atol=1e-11 * np.abs(ref).max()
        )


def test_batched_carry_equals_one_product_per_slot():
    rng = np.random.default_rng(2)
    M0 = rng.normal(size=(3, 4, 4))
    J = rng.normal(size=(4, 4))
    batch = logspace.update(logspace.init(jnp.asarray(M0)), jnp.asarray(J), left=True)
    for i in range(3):
        one = logspace.update(logspace.init(jnp.asarray(M0[i])), jnp.asarray(J), left=True)
        np.testing.assert_allclose(np.asarray(batch.matrix[i]), np.asarray(one.matrix), rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(float(logspace.log_scale(batch)[i]), float(logspace.log_scale(one)), atol=1e-14)
        np.testing.assert_allclose(float(logspace.log_scale(one)), np.log(np.linalg.norm(J @ M0[i])), atol=1e-13)


def test_scaled_rotations_closed_form_float64():
    # J_t = c_t Q_t, Q_t orthogonal: ‖∏‖_2 = ∏ c_t, ‖∏‖_F = √d ∏ c_t; c_t ~ 10^U(−2, 4) grows ~10× a step,
    # so the product leaves even float64's range (1e308)
    rng = np.random.default_rng(3)
    T, d = 400, 5
    c = 10.0 ** rng.uniform(-2, 4, T)
    Js = np.stack([c[t] * _orthogonal(rng, d) for t in range(T)])
    P = jax.tree.map(lambda a: a[-1], _scan_product(jnp.asarray(Js)))
    log10_prod = math.fsum(np.log10(c))
    assert log10_prod > 308
    np.testing.assert_allclose(float(logspace.log10_frobenius(P)), log10_prod + 0.5 * np.log10(d), atol=1e-10)
    np.testing.assert_allclose(np.asarray(logspace.log10_singular_values(P)), np.full(d, log10_prod), atol=1e-9)


def _numpy_log_product(Js):
    """Independent float64 reference: renormalise by NumPy's norm, add the logs with math.fsum."""
    M, logs = np.eye(Js.shape[-1]), []
    for J in Js:
        M = M @ J
        f = np.linalg.norm(M)
        M, logs = M / f, logs + [math.log(f)]
    return math.fsum(logs), M


def test_float32_5000_products_of_1e30_scaled_matrices():
    """T = 5000 factors of size 1e±30 in float32: two in a row already overflow (1e60) or underflow (1e−60)
    a plain float32 product; the log-space carry stays finite and matches float64 NumPy and the closed form."""
    rng = np.random.default_rng(4)
    T, d = 5000, 3
    c = np.where(rng.random(T) < 0.5, 1e30, 1e-30) * rng.uniform(0.5, 2.0, T)
    Q = np.stack([_orthogonal(rng, d) for _ in range(T)])
    Js32 = (c[:, None, None] * Q).astype(np.float32)
    with np.errstate(over="ignore", under="ignore"):
        naive = np.eye(d, dtype=np.float32)
        bad = False
        for J in Js32[:50]:
            naive = naive @ J
            bad |= not np.all(np.isfinite(naive)) or np.all(naive == 0)
    assert bad  # the naive float32 product does break down
    P = jax.tree.map(lambda a: a[-1], _scan_product(jnp.asarray(Js32)))
    assert P.matrix.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(P.matrix)))
    got = float(logspace.log10_frobenius(P))
    ref, M = _numpy_log_product(Js32.astype(np.float64))  # the same float32 matrices, in float64
    np.testing.assert_allclose(got, ref / math.log(10), atol=1e-4)
    # closed form for exact scaled rotations (the float32 rounding of Q_t only perturbs it at ~T·1e-7)
    closed = math.fsum(np.log10(c)) + 0.5 * math.log10(d)
    np.testing.assert_allclose(got, closed, atol=1e-3)
    assert abs(closed) > 100  # far outside float32's range (1e±38)


# --- diagonal and complex-diagonal products -----------------------------------------------------------


@pytest.mark.parametrize("parallel", [False, True])
def test_diag_suffix_matches_numpy_real(parallel):
    rng = np.random.default_rng(5)
    T, n = 9, 4
    a = rng.normal(size=(T, n)) * 2
    a[3, 1] = 0.0  # an exactly zero factor: unit 1's products over k ≤ 3 are zero
    with np.errstate(divide="ignore"):
        la = np.log(np.abs(a))
    P = logspace.diag_suffix(jnp.asarray(la), parallel=parallel)
    got = np.asarray(logspace.diag_log_abs(P))
    assert P.phase is None and got.shape == (T, n) and not np.any(np.isnan(got))
    with np.errstate(divide="ignore"):
        for k in range(T):
            np.testing.assert_allclose(got[k], np.log(np.abs(np.prod(a[k:], axis=0))), atol=1e-12)


@pytest.mark.parametrize("parallel", [False, True])
def test_diag_suffix_complex_is_the_product_of_rotation_scalings(parallel):
    rng = np.random.default_rng(6)
    T, n = 40, 3
    lam = rng.uniform(0.5, 1.6, (T, n)) * np.exp(1j * rng.uniform(-np.pi, np.pi, (T, n)))
    P = logspace.diag_suffix(jnp.asarray(np.log(np.abs(lam))), jnp.asarray(np.angle(lam)), parallel=parallel)
    L, ph = np.asarray(logspace.diag_log_abs(P)), np.asarray(P.phase)
    assert np.all(np.abs(ph) <= np.pi + 1e-12)
    for k in range(T):
        for u in range(n):
            # the real 2×2 matrices [[Re λ, −Im λ], [Im λ, Re λ]] multiplied out in NumPy
            M = np.eye(2)
            for j in range(k, T):
                z = lam[j, u]
                M = np.array([[z.real, -z.imag], [z.imag, z.real]]) @ M
            r = np.exp(L[k, u])
            np.testing.assert_allclose(
                r * np.array([[np.cos(ph[k, u]), -np.sin(ph[k, u])], [np.sin(ph[k, u]), np.cos(ph[k, u])]]),
                M,
                rtol=1e-11,
                atol=1e-11 * np.abs(M).max(),
            )


@pytest.mark.slow
def test_diag_parallel_and_sequential_agree_in_float32_over_5000_steps():
    rng = np.random.default_rng(7)
    T, n = 5000, 8
    lam = (10.0 ** rng.uniform(-30, 30, (T, n))) * np.exp(1j * rng.uniform(-np.pi, np.pi, (T, n)))
    la = np.log(np.abs(lam)).astype(np.float32)
    th = np.angle(lam).astype(np.float32)
    ref = np.array([[math.fsum(la[k:, u].astype(np.float64)) for u in range(n)] for k in (0, 1000, 4999)])
    ref_ph = np.array([[math.fsum(th[k:, u].astype(np.float64)) for u in range(n)] for k in (0, 1000, 4999)])
    for parallel in (False, True):
        P = logspace.diag_suffix(jnp.asarray(la), jnp.asarray(th), parallel=parallel)
        L = np.asarray(logspace.diag_log_abs(P), np.float64)[[0, 1000, 4999]]
        np.testing.assert_allclose(L, ref, rtol=1e-6)  # |L| up to ~1e4: 1e-6 relative, vs 5000·ulp plainly
        dph = np.asarray(P.phase, np.float64)[[0, 1000, 4999]] - ref_ph
        np.testing.assert_allclose(np.cos(dph), 1.0, atol=1e-7)  # equal modulo 2π to ~5e-4 rad
