"""Pascanu et al. (2013 §2.1) bound ‖∂h_t/∂h_k‖₂ ≤ (γ σ_max(W))^(t−k) and the IndRNN bound, checked
against the measured lag profile (Pascanu et al. 2013 §2.1; Li et al. 2018 eq. 4; see docs/references.md)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _engine_ref import build, inputs

from gradscope import engine
from gradscope.cells import make


@pytest.mark.parametrize("act,gamma", [("tanh", 1.0), ("sigmoid", 0.25), ("relu", 1.0)])
@pytest.mark.parametrize("gain", [0.7, 3.0])
def test_pascanu_bound_never_violated(act, gamma, gain):
    cell = make(f"rnn-{act}", 3, 6, key=jax.random.key(2), dtype=jnp.float64, recurrent_init="gaussian", gain=gain)
    b = engine.bound(cell)
    smax = np.linalg.svd(np.asarray(cell.weight_hh), compute_uv=False)[0]
    assert b["kind"] == "pascanu" and b["gamma"] == gamma
    assert b["sigma_max"] == pytest.approx(smax, rel=1e-12)
    assert b["log10_per_step"] == pytest.approx(np.log10(gamma * smax), rel=1e-12)
    T = 30
    xs = inputs(T, 3, B=3, seed=3, scale=2.0)
    lp = engine.lag_profile(cell, xs)
    lags = np.arange(T, 0, -1)
    assert np.all(np.asarray(lp.log10_spectral) <= lags * b["log10_per_step"] + 1e-10)


def test_bound_is_tight_for_linear_orthogonal():
    cell = make("rnn-linear", 2, 5, key=jax.random.key(0), dtype=jnp.float64, recurrent_init="orthogonal", gain=1.1)
    b = engine.bound(cell)
    lp = engine.lag_profile(cell, inputs(20, 2))
    np.testing.assert_allclose(np.asarray(lp.log10_spectral), np.arange(20, 0, -1) * b["log10_per_step"], atol=1e-10)


def test_indrnn_bound():
    cell = make("indrnn", 3, 5, key=jax.random.key(1), dtype=jnp.float64, u_min=-1.3, u_max=1.1)
    b = engine.bound(cell)
    u = np.asarray(cell.weight_hh_diag)
    assert b["kind"] == "indrnn" and b["sigma_max"] == pytest.approx(np.abs(u).max())
    lp = engine.lag_profile(cell, inputs(25, 3, seed=4))
    assert np.all(np.asarray(lp.log10_spectral) <= np.arange(25, 0, -1) * b["log10_per_step"] + 1e-10)


def test_no_bound_for_gated_cells():
    assert engine.bound(build("lstm")) is None
    assert engine.bound(build("gru")) is None


def test_zero_recurrence_bound_is_minus_infinity():
    cell = build("rnn-tanh")
    cell = dataclasses.replace(cell, weight_hh=jnp.zeros_like(cell.weight_hh))
    assert engine.bound(cell)["log10_per_step"] == -np.inf
