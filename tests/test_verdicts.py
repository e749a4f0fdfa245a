"""Verdicts from per-step rates (`gradscope.analysis.verdict`): the same network gets the same verdict at
T = 50, 200 and 1000 (or `inconclusive` at the shortest); a net decaying faster than the threshold is never
"stable"; exploding nets and overflowing states are "exploding" (the overflow step checked against a NumPy
float32 rollout); exact zeros from dead units are named as such; NaN inputs are refused with their position.
Rates are checked against NumPy float64 Benettin products of the analytic Jacobians, the standard error
against NumPy's own least-squares covariance."""

import dataclasses
import json
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from gradscope import cli
from gradscope._errors import ConfigError, GradscopeError
from gradscope.analysis import analyse
from gradscope.analysis import verdict as V
from gradscope.cells import make
from gradscope.experiments.sweep.config import Config, build_model, config_inputs, config_keys

LIGHT: dict[str, Any] = {"spectra": False, "paths": False}
EPS = V.RATE_THRESHOLD


def _uniform(B, T, m=2, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (B, T, m))


def _tanh_rate_np(cell, xs):
    """Largest Lyapunov exponent (decades/step) by Benettin's QR in NumPy float64, from the analytic tanh
    Jacobians J_t = diag(1 − h_t²) W_hh along a float64 NumPy rollout."""
    W = np.asarray(cell.weight_hh, np.float64)
    U = np.asarray(cell.weight_ih, np.float64)
    b = np.asarray(cell.bias_ih, np.float64) + np.asarray(cell.bias_hh, np.float64)
    rates = []
    for seq in np.asarray(xs, np.float64):
        h, Q, acc = np.zeros(W.shape[0]), np.eye(W.shape[0]), 0.0
        for x in seq:
            h = np.tanh(U @ x + W @ h + b)
            Q, R = np.linalg.qr((1 - h**2)[:, None] * W @ Q)
            acc += math.log(abs(R[0, 0]))
        rates.append(acc / len(seq) / math.log(10))
    return float(np.mean(rates))


def test_ols_rate_matches_numpy_least_squares_and_inflates_for_correlated_residuals():
    x = np.arange(1, 41, dtype=np.float64)
    y = 0.3 - 0.05 * x + 0.01 * (-1.0) ** x  # alternating residuals: ρ < 0, clipped to 0 → plain OLS se
    b, se = V.ols_rate(y)
    p, cov = np.polyfit(x, y, 1, cov=True)
    assert b == pytest.approx(p[0], rel=1e-12) and se == pytest.approx(math.sqrt(cov[0, 0]), rel=1e-9)
    assert V.ols_rate(-0.05 * x) == pytest.approx((-0.05, 0.0), abs=1e-15)  # a straight line: exact
    smooth = -0.05 * x + 0.01 * np.sin(x / 6)  # slowly varying residuals: ρ > 0 inflates the error
    rho_free = math.sqrt(np.polyfit(x, smooth, 1, cov=True)[1][0, 0])
    assert V.ols_rate(smooth)[1] > 2 * rho_free
    assert math.isnan(V.ols_rate([1.0, 2.0])[0])  # too few lags


@pytest.mark.slow  # three lengths, one compile each (about 7 s)
def test_tanh_rnn_gets_the_same_verdict_at_every_length():
    cell = make("rnn-tanh", 2, 4, key=jax.random.key(0), gain=0.9)
    verdicts = {}
    for T in (50, 200, 1000):
        xs = _uniform(2, T)
        s = analyse(cell, xs, **LIGHT).summary
        verdicts[T] = s["verdict"]
        assert s["decay_per_step"] + V.CONFIDENCE_Z * s["decay_per_step_stderr"] < -EPS
        assert T < 200 or _tanh_rate_np(cell, xs) < -EPS  # the independent rate is below the threshold too
        assert s["horizon_censored"] is False and "decades/step" in s["verdict_reason"]
    assert verdicts[200] == verdicts[1000] == "vanishing" and verdicts[50] in ("vanishing", "inconclusive")


def test_lstm_losing_0036_decades_per_step_is_vanishing_not_stable_at_t50():
    cell = make("lstm", 2, 4, key=jax.random.key(0), forget_bias=1.75)
    a = analyse(cell, _uniform(2, 50), **LIGHT)
    s = a.summary
    assert -0.05 < s["decay_per_step"] < -0.025  # about 0.036 decades per step
    assert s["log10_norm_max_lag"] > -3  # the old rule (norm at lag T above 10^-3) called it "stable"
    assert s["verdict"] == "vanishing"
    assert a.to_dict()["verdict_rule"]["rate_threshold"] == EPS


@pytest.mark.slow  # four float64 compiles (about 9 s)
def test_exploding_net_and_stable_net_at_every_length():
    lin = make("rnn-linear", 2, 4, key=jax.random.key(1), dtype=jnp.float64, recurrent_init="orthogonal", gain=1.2)
    irnn: Any = make("irnn", 2, 4, key=jax.random.key(0), dtype=jnp.float64)
    irnn = dataclasses.replace(irnn, weight_ih=jnp.abs(irnn.weight_ih) + 0.1)  # every unit active: J = I
    for T in (50, 200):
        s = analyse(lin, _uniform(1, T), **LIGHT).summary
        assert s["verdict"] == "exploding" and s["decay_per_step"] == pytest.approx(math.log10(1.2), rel=1e-9)
        assert s["lyapunov_max"] == pytest.approx(math.log(1.2), rel=1e-9)
        s = analyse(irnn, np.abs(_uniform(1, T)) + 0.1, **LIGHT).summary
        assert s["verdict"] == "stable" and s["horizon"] == T and s["horizon_censored"] is True


def test_short_sequences_are_inconclusive_with_the_reason():
    # a rate near the threshold cannot be told apart from it in 12 steps
    s = V.classify(-0.012 * np.arange(12, 0, -1) + 0.02 * np.sin(np.arange(12)))
    assert s["verdict"] == "inconclusive" and "cannot be told apart" in s["verdict_reason"]
    assert V.classify(np.zeros(2))["verdict"] == "inconclusive"  # too few lags to fit
    # the Lyapunov rate contradicting the decay: inconclusive
    trace = np.full((40, 1), 0.5)  # λ = +0.5 nats/step exactly
    s = V.classify(-0.1 * np.arange(40, 0, -1), lyapunov_trace=trace)
    assert s["verdict"] == "inconclusive" and "disagree" in s["verdict_reason"]


def _relu_config(T):
    cfg = Config(name="relu-g3", cell="rnn-relu", options={"gain": 3.0}, hidden=32, length=T, batch=2)
    k_model, k_input = config_keys(0)
    model = build_model(cfg, k_model)
    return model, config_inputs(cfg, k_input, 2)


def _overflow_step_np(model: Any, xs):
    """The first step t whose float32 state S_t holds inf/NaN, by a NumPy float32 rollout."""
    f = np.float32
    W, U = np.asarray(model.weight_hh, f), np.asarray(model.weight_ih, f)
    b = np.asarray(model.bias_ih, f) + np.asarray(model.bias_hh, f)
    first = []
    for seq in np.asarray(xs, f):
        h = np.zeros(W.shape[0], f)
        with np.errstate(all="ignore"):
            for t, x in enumerate(seq, 1):
                h = np.maximum(U @ x + W @ h + b, f(0))
                if not np.isfinite(h).all():
                    first.append(t)
                    break
    return min(first) if first else None


def test_overflowing_relu_rnn_is_exploding_with_the_overflow_step():
    model, xs = _relu_config(300)
    expected = _overflow_step_np(model, xs)
    assert expected is not None and expected < 300
    a = analyse(model, xs, **LIGHT)
    s = a.summary
    assert s["verdict"] == "exploding" and s["overflow_step"] == expected
    assert f"step {expected}" in s["verdict_reason"] and s["lyapunov_max"] > 0  # measured before the overflow
    assert s["log10_norm_max_lag"] != s["log10_norm_max_lag"]  # NaN: not a number of zero Jacobians
    assert "chaos" in [f.id for f in a.findings]
    json.dumps(a.to_dict(), allow_nan=False)


@pytest.mark.slow  # the whole CLI analysis (about 20 s)
def test_cli_relu_gain_3_reports_exploding_with_the_overflow_step(tmp_path):
    out = tmp_path / "r"
    res = CliRunner().invoke(
        cli.app, ["analyse", "--cell", "rnn-relu", "--gain", "3", "--length", "5000", "--out", str(out), "--quiet"]
    )
    assert res.exit_code == 0, res.output
    s = json.loads((out / "report.json").read_text())["analyses"][0]["summary"]
    assert s["verdict"] == "exploding" and 0 < s["overflow_step"] < 5000


def test_dead_units_are_named_in_the_reason_and_exact_zeros_are_not_a_decay():
    # IndRNN with 2 of 6 units dead (negative input weights and bias on positive inputs)
    cell: Any = make("indrnn", 2, 6, key=jax.random.key(0), dtype=jnp.float64, u_min=0.99, u_max=1.0)
    w = np.abs(np.asarray(cell.weight_ih)) + 0.1
    w[:2] *= -1
    bias = np.where(np.arange(6) < 2, -1.0, 0.0)
    cell = dataclasses.replace(cell, weight_ih=jnp.asarray(w), bias=jnp.asarray(bias))
    xs = np.abs(_uniform(2, 60)) + 0.1
    a = analyse(cell, xs, **LIGHT)
    ids = [f.id for f in a.findings]
    dead = next(f for f in a.findings if f.id == "dead-units")
    assert "dead-units" in ids and dead.evidence["dead_fraction"] == pytest.approx(2 / 6)
    assert "dead" in a.summary["verdict_reason"]
    # a relu RNN whose units are all switched off: the gradient is exactly zero, "vanishing" for that reason
    relu: Any = make("rnn-relu", 3, 4, key=jax.random.key(0), dtype=jnp.float64)
    relu = dataclasses.replace(relu, weight_ih=-jnp.abs(relu.weight_ih), bias_ih=-jnp.ones(4), bias_hh=jnp.zeros(4))
    s = analyse(relu, np.abs(_uniform(1, 10, 3)), **LIGHT).summary
    assert s["verdict"] == "vanishing" and s["zero_lag"] == 1 and "dead units" in s["verdict_reason"]


def test_nan_and_inf_inputs_are_refused_with_their_position():
    cell = make("rnn-tanh", 2, 4, key=jax.random.key(0))
    xs = _uniform(3, 10)
    xs[1, 4, 1] = np.nan
    with pytest.raises(ConfigError, match=r"xs\[batch=1, t=4, feature=1\] is nan"):
        analyse(cell, xs)
    one = _uniform(1, 10)[0]
    one[7, 0] = -np.inf
    with pytest.raises(GradscopeError, match=r"xs\[t=7, feature=0\] is -inf"):
        analyse(cell, one)
    one[7, 0] = 1e40  # finite in float64, overflows the float32 model
    with pytest.raises(ConfigError, match="overflows float32"):
        analyse(cell, one)
