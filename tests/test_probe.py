"""Probe mode (Hutchinson) against the exact norms of jax.jacrev products."""

import jax
import numpy as np
import pytest
from _engine_ref import build, inputs, oracle

from gradscope import engine
from gradscope._errors import ConfigError


@pytest.mark.parametrize("name", ["rnn-tanh", "lstm"])
def test_hutchinson_estimate_within_four_standard_errors(name):
    model = build(name, 3, 6, seed=1, **({"gain": 1.5} if name == "rnn-tanh" else {}))
    T = 12
    xs = inputs(T, 3, seed=7)
    _, _, P, _, _ = oracle(model, xs)
    pr = engine.probe_lag_profile(model, xs, probes=64, key=jax.random.key(1))
    assert pr.probes == 64 and pr.log10_frobenius.shape == (T,)
    est, se, low = (
        np.asarray(a, np.float64) for a in (pr.log10_frobenius, pr.log10_frobenius_stderr, pr.log10_spectral_lower)
    )
    for k in range(T):
        exact_f = np.log10(np.linalg.norm(P[T, k]))
        exact_s = np.log10(np.linalg.norm(P[T, k], 2))
        assert se[k] > 0
        assert abs(est[k] - exact_f) <= 4 * se[k], (k, est[k], exact_f, se[k])
        # a probe's ‖zᵀP‖/‖z‖ never exceeds ‖P‖₂
        assert low[k] <= exact_s + 1e-10, (k, low[k], exact_s)
        assert low[k] > exact_s - 1  # and is not absurdly loose with 64 probes in 9 dimensions


def test_probe_standard_error_is_honest_over_keys():
    # across independent probe sets the estimates scatter like their reported standard errors
    model = build("gru", 3, 5, seed=2)
    T = 6
    xs = inputs(T, 3, seed=8)
    _, _, P, _, _ = oracle(model, xs)
    exact = np.log10(np.linalg.norm(P[T, 0]))
    z = []
    for s in range(20):
        pr = engine.probe_lag_profile(model, xs, probes=32, key=jax.random.key(100 + s))
        z.append((float(pr.log10_frobenius[0]) - exact) / float(pr.log10_frobenius_stderr[0]))
    z = np.array(z)
    assert np.all(np.abs(z) < 4.5)
    assert 0.3 < np.std(z) < 2.5


def test_probe_batched_and_bad_options():
    model = build("rnn-tanh", 3, 4)
    xs = inputs(5, 3, B=2, seed=9)
    pr = engine.probe_lag_profile(model, xs, probes=8)
    assert pr.log10_frobenius.shape == (2, 5)
    one = engine.probe_lag_profile(model, xs[1], probes=8)
    np.testing.assert_allclose(np.asarray(pr.log10_frobenius[1]), np.asarray(one.log10_frobenius), atol=1e-12)
    for bad in (1, 0, 2.5, "8"):
        with pytest.raises(ConfigError, match="probes"):
            engine.probe_lag_profile(model, xs, probes=bad)
