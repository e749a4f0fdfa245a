"""Singular-value and Lyapunov spectra against NumPy SVDs of jax.jacrev products and closed forms
(Pascanu et al. 2013; Benettin et al. 1980; Eckmann & Ruelle 1985)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _engine_ref import build, inputs, oracle

from gradscope import engine
from gradscope._errors import ConfigError
from gradscope.cells import make


def _linear(W, m=2):
    n = W.shape[0]
    cell = make("rnn-linear", m, n, key=jax.random.key(0), dtype=jnp.float64)
    return dataclasses.replace(cell, weight_hh=jnp.asarray(W, jnp.float64))


def test_singular_values_match_numpy_svd_of_jacrev_product():
    model = build("lstm", 3, 3)
    T = 7
    xs = inputs(T, 3, seed=5)
    _, _, P, _, _ = oracle(model, xs)
    sp = engine.singular_values(model, xs, ks=[0, 3, 6])
    assert list(sp.ks) == [0, 3, 6]
    for i, k in enumerate(sp.ks):
        ref = np.linalg.svd(P[T, k], compute_uv=False)
        # singular values far below σ_max·eps are rounding noise in both: compare in linear scale
        np.testing.assert_allclose(10.0 ** np.asarray(sp.log10_sv[i]), ref, rtol=1e-9, atol=1e-12 * ref[0])
        np.testing.assert_allclose(
            np.asarray(sp.log10_sv[i])[ref > 1e-8 * ref[0]], np.log10(ref[ref > 1e-8 * ref[0]]), atol=1e-8
        )
    top = engine.singular_values(model, xs, ks=[2], top_k=2)
    np.testing.assert_allclose(
        np.asarray(top.log10_sv[0]), np.log10(np.linalg.svd(P[T, 2], compute_uv=False)[:2]), atol=1e-9
    )


def test_step_singular_values_match_numpy():
    model = build("gru", 3, 4)
    xs = inputs(6, 3, seed=6)
    _, _, _, J, _ = oracle(model, xs)
    ts, sv = engine.step_singular_values(model, xs, steps=[0, 2, 5])
    for i, t in enumerate(ts):
        np.testing.assert_allclose(np.asarray(sv[i]), np.log10(np.linalg.svd(J[t], compute_uv=False)), atol=1e-10)


def test_orthogonal_linear_rnn_has_all_singular_values_one():
    # orthogonal W ⇒ every singular value of ∂h_t/∂h_k = W^(t−k) is 1
    cell = make("rnn-linear", 2, 6, key=jax.random.key(1), dtype=jnp.float64, recurrent_init="orthogonal")
    W = np.asarray(cell.weight_hh)
    np.testing.assert_allclose(W @ W.T, np.eye(6), atol=1e-12)
    sp = engine.singular_values(cell, inputs(60, 2), ks=[0, 10, 30, 59])
    np.testing.assert_allclose(np.asarray(sp.log10_sv), 0.0, atol=1e-10)


@pytest.mark.parametrize("kind", ["triangular", "similar"])
def test_lyapunov_of_non_normal_linear_rnn_is_log_abs_eig(kind):
    # the QR exponents (Benettin et al. 1980) of h_t = W h_{t−1} + … are log|λ_i(W)|, also for non-normal W
    rng = np.random.default_rng(0)
    lam = np.array([1.1, -0.9, 0.6, 0.3])
    if kind == "triangular":
        W = np.diag(lam) + np.triu(rng.normal(size=(4, 4)), 1)
    else:
        Q = rng.normal(size=(4, 4)) + 2 * np.eye(4)
        W = Q @ np.diag(lam) @ np.linalg.inv(Q)
    assert np.linalg.norm(W @ W.T - W.T @ W) > 0.1  # really non-normal
    ly = engine.lyapunov_spectrum(_linear(W), inputs(3000, 2), warmup=200)
    np.testing.assert_allclose(np.asarray(ly.exponents), np.sort(np.log(np.abs(lam)))[::-1], atol=1e-3)
    assert ly.trace.shape == (2800, 4)
    # top-k only: the same leading exponents
    ly2 = engine.lyapunov_spectrum(_linear(W), inputs(3000, 2), k=2, warmup=200)
    np.testing.assert_allclose(np.asarray(ly2.exponents), np.asarray(ly.exponents[:2]), atol=1e-12)


@pytest.mark.parametrize("name", ["rnn-tanh", "lstm"])
def test_lyapunov_sum_rule(name):
    # Eckmann & Ruelle 1985: Σ λ_i = mean_t log|det J_t| (full spectrum, no warm-up): exact up to rounding
    model = build(name, 3, 3, gain=1.5) if name == "rnn-tanh" else build(name, 3, 3)
    xs = inputs(40, 3, seed=9)
    _, _, _, J, _ = oracle(model, xs)
    ly = engine.lyapunov_spectrum(model, xs)
    expect = np.mean([np.linalg.slogdet(j)[1] for j in J])
    np.testing.assert_allclose(float(np.sum(np.asarray(ly.exponents))), expect, atol=1e-10)
    # the running trace ends at the exponents
    np.testing.assert_allclose(np.asarray(ly.trace[-1]), np.asarray(ly.exponents), atol=1e-14)


def test_indrnn_lyapunov_is_mean_log_abs_diagonal():
    model = build("indrnn", 3, 4, activation="tanh", u_min=0.5, u_max=1.2)
    xs = inputs(30, 3, seed=2)
    _, _, _, J, _ = oracle(model, xs)
    expect = np.sort(np.mean(np.log(np.abs(np.diagonal(J, axis1=1, axis2=2)[5:])), axis=0))[::-1]
    ly = engine.lyapunov_spectrum(model, xs, warmup=5)
    np.testing.assert_allclose(np.asarray(ly.exponents), expect, atol=1e-12)


def test_bad_options_raise_config_error():
    model = build("rnn-tanh", 3, 4)
    xs = inputs(5, 3)
    for kw in ({"k": 0}, {"k": 5}, {"k": 1.5}, {"warmup": -1}, {"warmup": 5}):
        with pytest.raises(ConfigError):
            engine.lyapunov_spectrum(model, xs, **kw)
    for kw in ({"ks": [5]}, {"ks": [-1]}, {"ks": []}, {"top_k": 0}, {"top_k": 5}):
        with pytest.raises(ConfigError):
            engine.singular_values(model, xs, **kw)
    with pytest.raises(ConfigError):
        engine.step_singular_values(model, xs, steps=[7])


def _benettin_reference(J, k, warmup):
    """Benettin's recursion in NumPy float64 with Q formed: ``(exponents, trace)`` of one sequence."""
    Q, acc, trace = np.eye(J.shape[-1], k), np.zeros(k), []
    for t, j in enumerate(J):
        Q, R = np.linalg.qr(j @ Q)
        if t >= warmup:
            acc = acc + np.log(np.abs(np.diag(R)))
            trace.append(np.sort(acc / len(trace + [0]))[::-1])
    return trace[-1], np.array(trace)


@pytest.mark.parametrize("name", ["lstm", "bn-lstm", "gru"])
def test_lyapunov_host_route_in_chunks_matches_numpy_over_jacrev(monkeypatch, name):
    # the CPU route (LAPACK on the host, step Jacobians made in chunks): chunks of 2 steps over T = 31 (the
    # last one padded), a BN cell whose Jacobian depends on t, a batch of 3 on 2 worker threads, k < d
    from gradscope.engine import _benettin, jacobians, spectra

    model = build(name, 3, 3)
    d = sum(model.block_sizes)
    k = d - 1
    monkeypatch.setattr(jacobians, "CHUNK_BYTES", 2 * 3 * d * d * 8)
    monkeypatch.setattr(_benettin, "usable_cpus", lambda: 2)
    calls = []
    monkeypatch.setattr(spectra, "_lyapunov", lambda *a, **kw: calls.append(1))  # the JAX route: not taken
    xs = inputs(31, 3, seed=4, B=3)
    ly = engine.lyapunov_spectrum(model, xs, k=k, warmup=3)
    assert not calls and ly.exponents.shape == (3, k) and ly.trace.shape == (3, 28, k)
    for b in range(3):
        _, _, _, J, _ = oracle(model, xs[b])
        ex, trace = _benettin_reference(J, k, 3)
        np.testing.assert_allclose(np.asarray(ly.exponents[b]), ex, atol=1e-12)
        np.testing.assert_allclose(np.asarray(ly.trace[b]), trace, atol=1e-12)


def test_lyapunov_host_and_jax_routes_agree_in_float32():
    # the same float32 LSTM through both routes: the LAPACK route and the JAX scan (traced inside a jit).
    # Both are float32 Householder QR, rounded differently: they agree where float32 resolves the exponents
    # (steps with log κ(J_t) ≤ 11 here; seen 2.7e-5). Against float64 both are off by the same 0.46 nats in
    # the smallest exponent, the float32 Jacobians' own limit, not a route's.
    model = build("lstm", 3, 6, dtype=jnp.float32)
    xs = jnp.asarray(inputs(120, 3, seed=8, B=2, scale=0.5), jnp.float32)
    host = engine.lyapunov_spectrum(model, xs, warmup=10)
    traced = jax.jit(lambda m, x: engine.lyapunov_spectrum(m, x, warmup=10).exponents)(model, xs)
    assert host.exponents.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(host.exponents), np.asarray(traced), atol=3e-4)
    assert np.all(np.diff(np.asarray(host.exponents), axis=-1) <= 0)  # sorted descending
