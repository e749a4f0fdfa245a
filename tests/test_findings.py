"""Findings (`gradscope.analysis.findings`): each rule fires on a model built to trigger it and stays quiet on a
healthy one, and its evidence equals numbers computed here without the engine — `jax.jacrev` of the unrolled
map for the curse of memory, closed-form Lyapunov exponents for chaos, NumPy float64 rollouts of the relu and
LSTM cells for dead units and forget gates. Then the record contract (fields, JSON, schema), and the CLI."""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from gradscope import cli
from gradscope.analysis import analyse
from gradscope.analysis import findings as F
from gradscope.cells import make
from gradscope.cells._base import flatten_state, unflatten_state
from gradscope.nets import Stack

LIGHT = {"spectra": False, "paths": False}  # stages no rule reads (less to compile)


def _ids(a):
    return [f.id for f in a.findings]


def _one(a, fid):
    (f,) = [f for f in a.findings if f.id == fid]
    return f


# --- curse of memory -----------------------------------------------------------------------------


def _lru(normalise, r_min, r_max, max_phase):
    return make(
        "lru",
        1,
        4,
        key=jax.random.key(0),
        dtype=jnp.float64,
        r_min=r_min,
        r_max=r_max,
        max_phase=max_phase,
        normalise=normalise,
    )


@jax.jit
def _jacrev_norms(model, xs):
    """log10 ‖∂S_t/∂θ‖_F over every leaf and log10 ‖S_t‖₂ for t = 1..T of one sequence: reverse-mode
    autodiff of a plain scan of ``model.step`` (no engine code)."""
    s0 = jnp.zeros((model.state_size,), model.dtype)

    def run(m):
        def body(s, xj):
            x, j = xj
            s2 = flatten_state(m.step(x, unflatten_state(m, s), j)[0])
            return s2, s2

        ss = jax.lax.scan(body, s0, (xs, jnp.arange(xs.shape[0])))[1]
        return ss, ss

    D, ss = jax.jacrev(run, has_aux=True)(model)
    sq = sum(jnp.sum(l.reshape(l.shape[0], -1) ** 2, axis=1) for l in jax.tree.leaves(D))
    return 0.5 * jnp.log10(sq), jnp.log10(jnp.linalg.norm(ss, axis=1))


def _log_mean_norm(L):
    """Batch aggregate of log10 norms: log10 of the mean norm (the analysis's convention)."""
    return np.log10(np.mean(10.0 ** np.asarray(L, np.float64), axis=0))


@pytest.mark.slow
def test_curse_of_memory_fires_for_unnormalised_lru_near_the_unit_circle_and_not_for_a_moderate_normalised_one():
    r"""Zucchet & Orvieto 2024: for h_t = λ h_{t−1} + x_t the RMS ratio ∂h_t/∂λ : h_t tends to
    √(1 + λ²)/(1 − λ²), whatever the input normalisation γ (it scales both). An LRU with |λ| ∈ [0.995, 0.999]
    (and phases up to π, which the exponential phase parameterisation multiplies into ∂λ/∂θ_log) must fire;
    a normalised one with |λ| ∈ [0.5, 0.9] and phases up to π/10 (the paper's long-range setting) must not.
    The evidence must equal the excess computed from `jax.jacrev` of the unrolled map."""
    T, B = 200, 4
    xs = np.random.default_rng(0).normal(size=(B, T, 1))
    cases = {"cursed": _lru(False, 0.995, 0.999, math.pi), "healthy": _lru(True, 0.5, 0.9, math.pi / 10)}
    excess = {}
    for name, model in cases.items():
        a = analyse(model, xs, name=name, sensitivity=True, lyapunov=False, **LIGHT)
        sens, state = zip(*(_jacrev_norms(model, jnp.asarray(xs[b])) for b in range(B)))
        tot, st = _log_mean_norm(sens), _log_mean_norm(state)  # t = 1..T
        excess[name] = (tot[-1] - st[-1]) - (tot[0] - st[0])
        fired = [f for f in a.findings if f.id == "curse-of-memory"]
        assert bool(fired) == (excess[name] > F.CURSE_EXCESS), (name, excess[name])
        if fired:
            ev = fired[0].evidence
            assert ev["t_start"] == 1 and ev["t_end"] == T
            np.testing.assert_allclose(ev["excess_decades"], excess[name], atol=1e-8)
            np.testing.assert_allclose(ev["log10_sensitivity_end"], tot[-1], atol=1e-8)
            np.testing.assert_allclose(ev["log10_state_end"], st[-1], atol=1e-8)
            assert ev["parameter"] in a.sensitivity.by_parameter
    assert excess["cursed"] > 1.5 and excess["healthy"] < 0.5  # well clear of the 1-decade threshold


def test_curse_of_memory_rule_on_records():
    # the rule reads the JSON form: t_start is the first step where both curves are finite (None = −inf)
    sens = {"log10_total": [None, 0.0, 0.5, 2.5], "log10_state": [None, 0.0, 0.2, 0.4], "by_parameter": {}}
    f = F.curse_of_memory({"sensitivity": sens})
    assert f is not None and f.evidence["excess_decades"] == pytest.approx(2.1) and f.evidence["t_start"] == 1
    sens["log10_total"] = [None, None, 0.5, 1.4]  # from t = 2: (1.4 − 0.4) − (0.5 − 0.2) = 0.7
    assert F.curse_of_memory({"sensitivity": sens}) is None
    assert F.curse_of_memory({}) is None  # not computed: no finding


# --- chaos ---------------------------------------------------------------------------------------


def _orthogonal_linear(gain):
    return make("rnn-linear", 2, 4, key=jax.random.key(1), dtype=jnp.float64, recurrent_init="orthogonal", gain=gain)


@pytest.mark.parametrize("gain", [1.1, 0.9])
def test_chaos_fires_exactly_when_the_largest_lyapunov_exponent_is_positive(gain):
    # h_t = g Q h_{t−1} + W x_t with Q orthogonal: every Lyapunov exponent is ln g (closed form)
    T = 40
    a = analyse(_orthogonal_linear(gain), np.random.default_rng(0).normal(size=(T, 2)), gates=False, **LIGHT)
    if gain > 1:
        ev = _one(a, "chaos").evidence
        assert ev["lyapunov_max"] == pytest.approx(math.log(gain), rel=1e-8)
        assert ev["log10_growth_over_length"] == pytest.approx(T * math.log10(gain), rel=1e-8)
        assert ev["threshold"] == F.CHAOS_LAMBDA and ev["length"] == T
    else:
        assert "chaos" not in _ids(a)


def test_chaos_does_not_fire_at_the_edge():
    # an active IRNN is the identity map: λ_max = 0 exactly, below the 0.001 margin
    for lam, fires in ((0.0, False), (F.CHAOS_LAMBDA, False), (2 * F.CHAOS_LAMBDA, True), (None, False)):
        assert (F.chaos({"summary": {"lyapunov_max": lam}, "length": 10}) is not None) == fires, lam


# --- dead units ----------------------------------------------------------------------------------


def _dead_fraction_numpy(cell, xs):
    """Fraction of units with pre-activation ≤ 0 at every step, per sequence, averaged (NumPy float64)."""
    W, U = np.asarray(cell.weight_ih, np.float64), np.asarray(cell.weight_hh, np.float64)
    b = np.asarray(cell.bias_ih, np.float64) + np.asarray(cell.bias_hh, np.float64)
    dead = []
    for seq in np.asarray(xs, np.float64):
        h = np.zeros(U.shape[0])
        off = np.ones(U.shape[0], bool)
        for x in seq:
            a = W @ x + U @ h + b
            off &= a <= 0
            h = np.maximum(a, 0.0)
        dead.append(off.mean())
    return float(np.mean(dead))


def test_dead_units_fires_for_switched_off_relu_units_and_not_for_an_active_irnn():
    xs = np.abs(np.random.default_rng(2).normal(size=(2, 25, 3))) + 0.1  # positive inputs
    cell = make("rnn-relu", 3, 8, key=jax.random.key(3), dtype=jnp.float64)
    # units 0-2 get a bias of −20: with |inputs| < 5 and small weights they never switch on
    cell = dataclasses.replace(cell, bias_ih=cell.bias_ih.at[:3].set(-20.0))
    a = analyse(cell, xs, lyapunov=False, **LIGHT)
    expected = _dead_fraction_numpy(cell, xs)
    assert expected >= 3 / 8
    ev = _one(a, "dead-units").evidence
    assert ev["dead_fraction"] == pytest.approx(expected, abs=1e-12) and ev["gate"] == "relu"

    irnn = make("irnn", 3, 8, key=jax.random.key(0), dtype=jnp.float64)
    irnn = dataclasses.replace(irnn, weight_ih=jnp.abs(irnn.weight_ih) + 0.1)  # every unit driven upwards
    b = analyse(irnn, xs, lyapunov=False, **LIGHT)
    assert _dead_fraction_numpy(irnn, xs) == 0.0
    assert "dead-units" not in _ids(b)


def test_dead_units_threshold_and_worst_layer():
    g = {"layer0.relu": {"dead_fraction": 0.05, "inactive_fraction": 0.3}, "layer1.relu": {"dead_fraction": 0.1}}
    f = F.dead_units({"gates": g})
    assert f is not None and f.evidence["gate"] == "layer1.relu" and "layer1" in f.message
    g["layer1.relu"]["dead_fraction"] = 0.099
    assert F.dead_units({"gates": g}) is None


# --- forget gate ---------------------------------------------------------------------------------


def _forget_mean_numpy(cell, xs):
    """Mean forget gate σ(z_f) of a PyTorch-layout LSTM (gates i, f, g, o) over steps and sequences (NumPy)."""
    W, U = np.asarray(cell.weight_ih, np.float64), np.asarray(cell.weight_hh, np.float64)
    b = np.asarray(cell.bias_ih, np.float64) + np.asarray(cell.bias_hh, np.float64)
    n = U.shape[1]
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    fs = []
    for seq in np.asarray(xs, np.float64):
        h, c = np.zeros(n), np.zeros(n)
        for x in seq:
            z = W @ x + U @ h + b
            i, f, g, o = sig(z[:n]), sig(z[n : 2 * n]), np.tanh(z[2 * n : 3 * n]), sig(z[3 * n :])
            c = f * c + i * g
            h = o * np.tanh(c)
            fs.append(f)
    return float(np.mean(fs))


@pytest.mark.parametrize("opts", [{}, {"forget_bias": 1.0}, {"chrono": 30.0}])
def test_forget_gate_fires_without_forget_bias_and_not_with_bias_1_or_chrono(opts):
    xs = np.random.default_rng(4).normal(size=(2, 30, 3))
    cell = make("lstm", 3, 6, key=jax.random.key(5), dtype=jnp.float64, **opts)
    a = analyse(cell, xs, lyapunov=False, **LIGHT)
    mean = _forget_mean_numpy(cell, xs)
    if not opts:  # σ(0) = 0.5 plus noise
        assert abs(mean - 0.5) < 0.05
        ev = _one(a, "forget-gate").evidence
        assert ev["forget_mean"] == pytest.approx(mean, abs=1e-12)
        assert ev["memory_steps"] == pytest.approx(-1 / math.log(mean), rel=1e-10)
    else:
        assert mean > 0.65
        assert "forget-gate" not in _ids(a)


def test_forget_gate_only_for_lstm_cells_and_per_layer():
    model = {"cell": "stack", "layers": [{"cell": "gru"}, {"cell": "lstm"}]}
    gates = {"layer0.z": {"mean": 0.5}, "layer1.f": {"mean": 0.55}}
    f = F.forget_gate({"gates": gates, "model": model})
    assert f is not None and f.evidence["gate"] == "layer1.f"
    # minGRU's "f" is not an LSTM forget gate; a bidirectional model is walked along fwd./bwd.
    assert F.forget_gate({"gates": {"f": {"mean": 0.5}}, "model": {"cell": "mingru"}}) is None
    bi = {"cell": "bidirectional", "forward": {"cell": "gru"}, "backward": {"cell": "ln-lstm"}}
    f = F.forget_gate({"gates": {"bwd.f": {"mean": 0.3}}, "model": bi})
    assert f is not None and "bwd" in f.message
    assert F.forget_gate({"gates": {"f": {"mean": 0.61}}, "model": {"cell": "lstm"}}) is None


@pytest.mark.slow  # a two-layer stack compiles for several seconds
def test_stack_findings_name_their_layer():
    key = jax.random.key(6)
    k0, k1 = jax.random.split(key)
    model = Stack(
        (make("lstm", 2, 4, key=k0, dtype=jnp.float64, forget_bias=2.0), make("lstm", 4, 4, key=k1, dtype=jnp.float64))
    )
    xs = np.random.default_rng(6).normal(size=(20, 2))
    f = _one(analyse(model, xs, lyapunov=False, **LIGHT), "forget-gate")
    assert f.evidence["gate"] == "layer1.f" and f.evidence["forget_mean"] < F.FORGET_MEAN


# --- the record ----------------------------------------------------------------------------------


def test_findings_are_records_in_to_dict_and_match_the_schema():
    jsonschema = pytest.importorskip("jsonschema")
    from gradscope.report import load_schema

    cell = make("lstm", 3, 6, key=jax.random.key(5), dtype=jnp.float64)
    a = analyse(cell, np.random.default_rng(4).normal(size=(2, 30, 3)), lyapunov=False, **LIGHT)
    d = json.loads(json.dumps(a.to_dict(), allow_nan=False))
    assert [f["id"] for f in d["findings"]] == _ids(a) == ["forget-gate"]
    f = d["findings"][0]
    assert set(f) == {"id", "severity", "message", "evidence", "suggestion", "reference"}
    assert f["severity"] in F.SEVERITIES and "Gers" in f["reference"] and "notebooks/" in f["reference"]
    assert "forget" in f["suggestion"] and all(isinstance(v, (int, float, str)) for v in f["evidence"].values())
    schema = load_schema()
    finding_schema = {"$defs": schema["$defs"], "$ref": "#/$defs/finding"}
    jsonschema.validate(f, finding_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(f | {"severity": "fatal"}, finding_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({k: v for k, v in f.items() if k != "suggestion"}, finding_schema)


def test_rule_registry_and_evaluate():
    assert [r.__name__ for r in F.RULES] == [
        "curse_of_memory",
        "chaos",
        "dead_units",
        "forget_gate",
        "saturated_gates",
        "pascanu_bound",
        "path_split",
        "indrnn_range",
    ]
    d = {"summary": {"lyapunov_max": 0.5}, "length": 10, "gates": {"relu": {"dead_fraction": 0.5}}}
    assert [f.id for f in F.evaluate(d)] == ["chaos", "dead-units"]
    assert F.evaluate({}) == ()  # a record without the sections: nothing fires
    bad = lambda a: F.Finding("x", "fatal", "m", {}, "s", "r")  # noqa: E731
    with pytest.raises(ValueError, match="severity"):
        F.evaluate({}, (bad,))
    assert F.Finding("x", "info", "m", {"v": float("nan")}, "s", "r").to_dict()["evidence"] == {"v": None}


@pytest.mark.slow  # compiles the whole analysis
def test_cli_analyse_sensitivity_prints_findings_and_writes_them(tmp_path):
    out = tmp_path / "r"
    res = CliRunner().invoke(
        cli.app,
        ["analyse", "--cell", "lstm", "--hidden", "4", "--length", "12", "--batch", "2", "--sensitivity", "--out", out],
    )
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    (a,) = report["analyses"]
    assert report["config"]["sensitivity"] is True
    assert len(a["sensitivity"]["log10_total"]) == 13 and a["sensitivity"]["log10_total"][0] is None
    assert "forget-gate" in [f["id"] for f in a["findings"]]  # PyTorch's init: forget gates near 0.5
    assert "findings" in res.stderr and "forget-gate" in res.stderr
    assert (out / "figures" / "lstm_sensitivity.png").is_file()
    assert "### Findings" in (out / "summary.md").read_text()


# --- saturated gates, Pascanu's bound, path split, IndRNN range (gradscope.analysis.rules) ---------


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _gate_lstm(input_gain, n=3):
    """An LSTM whose input gate is σ(input_gain·x_t[0] + 0.5) whatever the state (W_hh = 0); other gates σ(0)."""
    cell = make("lstm", 1, n, key=jax.random.key(0), dtype=jnp.float64)
    w = np.zeros((4 * n, 1))
    w[:n, 0] = input_gain
    b = np.zeros(4 * n)
    b[:n] = 0.5
    return dataclasses.replace(
        cell,
        weight_ih=jnp.asarray(w),
        weight_hh=jnp.zeros_like(cell.weight_hh),
        bias_ih=jnp.asarray(b),
        bias_hh=jnp.zeros_like(cell.bias_hh),
    )


@pytest.mark.parametrize("gain,fires", [(20.0, True), (1.0, False)])
def test_saturated_gates_fraction_equals_the_closed_form(gain, fires):
    xs = np.random.default_rng(3).normal(size=(2, 40, 1))
    a = analyse(_gate_lstm(gain), xs, **LIGHT)
    s = _sigmoid(gain * xs[..., 0] + 0.5)  # NumPy float64: the input gate of every unit
    expected = float(np.mean(s * (1 - s) < 0.01))
    if fires:
        f = _one(a, "saturated-gates")
        assert f.evidence["gate"] == "i" and f.evidence["saturated_fraction"] == pytest.approx(expected, abs=1e-12)
        assert f.evidence["mean"] == pytest.approx(float(s.mean()), abs=1e-12)
    else:
        assert expected < 0.5 and "saturated-gates" not in _ids(a)


@pytest.mark.parametrize("gain,fires", [(0.5, True), (1.5, False)])
def test_pascanu_bound_fires_when_sigma_max_times_gamma_is_below_one(gain, fires):
    cell = make("rnn-tanh", 2, 4, key=jax.random.key(0), dtype=jnp.float64, recurrent_init="orthogonal", gain=gain)
    a = analyse(cell, np.random.default_rng(0).normal(size=(20, 2)), **LIGHT)
    sigma = float(np.linalg.norm(np.asarray(cell.weight_hh, np.float64), 2))  # NumPy: σ_max(W)
    if not fires:
        assert sigma > 1 and "pascanu-bound" not in _ids(a)
        return
    f = _one(a, "pascanu-bound")
    assert f.evidence["sigma_max"] == pytest.approx(sigma, rel=1e-12) and f.evidence["gamma"] == 1.0
    assert f.evidence["lag_below_threshold"] == math.ceil(-3 / math.log10(sigma))  # 0.5^10 < 1e-3 ≤ 0.5^9
    assert f.evidence["lag_below_threshold"] == 10


def _path_lstm(fb, hh_gain, n=3):
    """Forget gate exactly σ(fb) at every step (its weights are zero); W_hh scaled by ``hh_gain``."""
    cell = make("lstm", 1, n, key=jax.random.key(2), dtype=jnp.float64)
    w_ih, w_hh = np.asarray(cell.weight_ih).copy(), hh_gain * np.asarray(cell.weight_hh)
    w_ih[n : 2 * n], w_hh[n : 2 * n] = 0.0, 0.0
    b = np.zeros(4 * n)
    b[n : 2 * n] = fb
    return dataclasses.replace(
        cell,
        weight_ih=jnp.asarray(w_ih),
        weight_hh=jnp.asarray(w_hh),
        bias_ih=jnp.asarray(b),
        bias_hh=jnp.zeros(4 * n),
    )


def test_path_split_rules_highway_closed_and_remainder_exploding_on_records_and_a_model():
    T = 30
    # the highway ∏ diag(σ(fb)) has spectral norm σ(fb)^T exactly: closed form of the evidence
    a = analyse(_path_lstm(-2.0, 12.0), np.random.default_rng(0).normal(size=(T, 1)), spectra=False)
    h = a.summary["highway_log10_max_lag"]
    assert h == pytest.approx(T * math.log10(_sigmoid(-2.0)), rel=1e-9)
    f = F.path_split(a.to_dict())
    assert a.summary["remainder_log10_max_lag"] >= -3  # the gates still carry the gradient
    assert f is not None and f.id == "highway-closed" and f.evidence["highway_log10_max_lag"] == h
    healthy = analyse(_path_lstm(3.0, 0.1), np.random.default_rng(0).normal(size=(T, 1)), spectra=False)
    assert F.path_split(healthy.to_dict()) is None  # the highway holds (σ(3)^30 = 10^-0.63), no explosion
    # records: the remainder exploding while the highway holds, and both quiet
    rec = {"length": 100, "summary": {"horizon_threshold": -3.0}}
    rec["summary"] |= {"highway_log10_max_lag": -0.5, "remainder_log10_max_lag": 4.0}
    f = F.path_split(rec)
    assert f is not None and f.id == "remainder-exploding" and f.evidence["remainder_decades_per_step"] == 0.04
    rec["summary"] |= {"remainder_log10_max_lag": 0.5}  # 0.005 decades/step: below the rate threshold
    assert F.path_split(rec) is None


@pytest.mark.parametrize("u_max,expect", [(1.01, "above"), (1.0, None), (0.9, "below")])
def test_indrnn_range_against_gamma_to_the_one_over_t(u_max, expect):
    T = 100
    cell = make("indrnn", 2, 4, key=jax.random.key(0), dtype=jnp.float64, u_min=u_max - 0.01, u_max=u_max)
    cell = dataclasses.replace(cell, weight_hh_diag=cell.weight_hh_diag.at[0].set(u_max))
    a = analyse(cell, np.abs(np.random.default_rng(0).normal(size=(T, 2))), **LIGHT)
    if expect is None:  # 0.99..1.0 lies within [10^(-3/100), 2^(1/100)] = [0.933, 1.00696]
        assert "indrnn-range" not in _ids(a)
        return
    f = _one(a, "indrnn-range")
    assert f.evidence["max_abs_u"] == u_max and f.evidence["upper_limit"] == pytest.approx(2 ** (1 / T), rel=1e-15)
    assert f.evidence["lower_limit"] == pytest.approx(10 ** (-3 / T), rel=1e-15)
    assert ("exceeds" in f.message) == (expect == "above")
