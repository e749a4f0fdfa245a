"""`analyse`: JSON-ready records, summary keys, verdicts on nets whose behaviour is known in closed
form, option validation, batches."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _engine_ref import build, inputs
from _records import assert_records_close

from gradscope import engine
from gradscope._errors import ConfigError
from gradscope.analysis import analyse
from gradscope.cells import make
from gradscope.nets import stack

SUMMARY_KEYS = {
    "log10_norm_lag1",
    "log10_norm_max_lag",
    "decay_per_step",
    "horizon",
    "horizon_threshold",
    "verdict",
    "lyapunov_max",
    "finite",
}


def _dumps(a):
    return json.dumps(a.to_dict(), allow_nan=False)


def test_to_dict_is_json_with_every_stage():
    model = build("lstm", 3, 3)
    a = analyse(model, inputs(8, 3), triangle=True, attribution=True)
    d = json.loads(_dumps(a))
    assert SUMMARY_KEYS <= set(d["summary"]) and "highway_log10_max_lag" in d["summary"]
    for key in ("lag_profile", "triangle", "lyapunov", "spectra", "step_spectra", "paths", "gates", "attribution"):
        assert key in d, key
    assert "sensitivity" not in d and isinstance(d["findings"], list)  # sensitivity is off by default
    assert d["length"] == 8 and d["batch"] is None and d["blocks"] == ["h", "c"]
    assert len(d["lag_profile"]["log10_spectral"]) == 8
    # the record carries the engine's numbers (k = 0 is the longest lag)
    lp = engine.lag_profile(model, inputs(8, 3))
    np.testing.assert_allclose(d["lag_profile"]["log10_spectral"], np.asarray(lp.log10_spectral), atol=1e-12)
    assert d["summary"]["log10_norm_max_lag"] == pytest.approx(float(lp.log10_spectral[0]), abs=1e-12)
    # the analysis is immutable
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.name = "x"


def test_json_with_exact_zeros_and_probe_mode():
    # a dead relu net has −inf log-norms: they must serialise (as null), never as NaN/Infinity
    cell = build("rnn-relu", 3, 4)
    cell = dataclasses.replace(cell, weight_ih=-jnp.abs(cell.weight_ih), bias_ih=-jnp.ones(4), bias_hh=jnp.zeros(4))
    a = analyse(cell, np.abs(inputs(6, 3)))
    d = json.loads(_dumps(a))
    assert d["summary"]["verdict"] == "vanishing"
    p = analyse(build("gru", 3, 4), inputs(6, 3), mode="probe", probes=4)
    d = json.loads(_dumps(p))
    assert d["method"] == "probe" and "log10_frobenius_stderr" in d["lag_profile"]


def test_verdict_vanishing_for_small_gain_tanh():
    cell = make("rnn-tanh", 3, 8, key=jax.random.key(0), dtype=jnp.float64, gain=0.3)
    a = analyse(cell, inputs(40, 3))
    assert a.summary["verdict"] == "vanishing"
    assert a.summary["decay_per_step"] < 0 and a.summary["lyapunov_max"] < 0
    assert a.summary["horizon"] < 40


def test_verdict_exploding_for_orthogonal_linear_gain_1_2():
    cell = make("rnn-linear", 3, 6, key=jax.random.key(1), dtype=jnp.float64, recurrent_init="orthogonal", gain=1.2)
    a = analyse(cell, inputs(40, 3))
    assert a.summary["verdict"] == "exploding"
    assert a.summary["decay_per_step"] == pytest.approx(np.log10(1.2), rel=1e-6)
    assert a.summary["lyapunov_max"] == pytest.approx(np.log(1.2), rel=1e-6)
    assert a.summary["log10_norm_max_lag"] == pytest.approx(40 * np.log10(1.2), rel=1e-9)


def test_verdict_stable_for_active_irnn():
    cell = make("irnn", 3, 5, key=jax.random.key(0), dtype=jnp.float64)
    cell = dataclasses.replace(cell, weight_ih=jnp.abs(cell.weight_ih) + 0.1)
    a = analyse(cell, np.abs(inputs(30, 3)) + 0.1)
    assert a.summary["verdict"] == "stable"
    assert a.summary["horizon"] == 30
    assert a.summary["log10_norm_max_lag"] == pytest.approx(0.0, abs=1e-12)
    assert a.summary["lyapunov_max"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    "kw",
    [
        {"mode": "fast"},
        {"threshold": float("nan")},
        {"threshold": "low"},
        {"lyapunov_k": 0},
        {"lyapunov_k": 99},
        {"warmup": -1},
        {"warmup": 10},
        {"attribution": True, "readout": "first"},
        {"sensitivity": "yes"},
    ],
)
def test_bad_options_raise_config_error(kw):
    with pytest.raises(ConfigError):
        analyse(build("rnn-tanh", 3, 4), inputs(10, 3), **kw)


def test_bad_start_indices_raise_config_error():
    with pytest.raises(ConfigError, match="ks"):
        engine.singular_values(build("rnn-tanh", 3, 4), inputs(10, 3), ks=[10])


def test_batched_inputs():
    model = build("gru", 3, 4)
    xs = inputs(7, 3, B=3, seed=2)
    a = analyse(model, xs)
    d = json.loads(_dumps(a))
    assert d["batch"] == 3
    per = np.stack([np.asarray(engine.lag_profile(model, xs[b]).log10_spectral) for b in range(3)])
    np.testing.assert_allclose(d["lag_profile"]["log10_spectral_per_sequence"], per, atol=1e-12)
    # the batch curve is log10 of the mean norm over the sequences
    np.testing.assert_allclose(d["lag_profile"]["log10_spectral"], np.log10(np.mean(10.0**per, axis=0)), atol=1e-12)


STAGES = {
    "step_jacobians": lambda m, xs: engine.step_jacobians(m, xs).jac,
    "lag_profile": lambda m, xs: engine.lag_profile(m, xs).log10_spectral,
    "triangle": lambda m, xs: engine.triangle(m, xs).log10_frobenius,
    "lyapunov": lambda m, xs: engine.lyapunov_spectrum(m, xs).exponents,
    "singular_values": lambda m, xs: engine.singular_values(m, xs).log10_sv,
    "path_split": lambda m, xs: engine.path_split(m, xs).remainder_log10_spectral,
    "attribution": lambda m, xs: engine.attribution(m, xs, key=jax.random.key(0)).log10_by_lag,
}


def _dot_precisions(stage, model, xs):
    """The precision of every matrix product in the compiled program of ``stage`` (StableHLO text)."""
    import re

    text = jax.jit(lambda xs: STAGES[stage](model, xs)).lower(xs).as_text()
    dots = [line for line in text.splitlines() if "stablehlo.dot_general" in line]
    assert dots, stage
    return {m.group(1) if (m := re.search(r"precision = \[([^\]]*)\]", d)) else "unset" for d in dots}


@pytest.mark.slow
@pytest.mark.parametrize("stage", sorted(STAGES))
def test_engine_multiplies_at_highest_precision_unless_the_user_sets_jax_precision(stage):
    """Every product the engine compiles asks for HIGHEST precision — on a GPU that is what rules out TF32 and
    bfloat16 passes — whatever JAX's default is; a user who sets JAX's own
    ``default_matmul_precision`` gets theirs, the analysis records which, and going back recompiles."""
    model = make("lstm", 2, 20, key=jax.random.key(0), dtype=jnp.float32)  # blocks > 16: iterative norms too
    xs = jnp.asarray(inputs(6, 2, B=2), jnp.float32)
    assert _dot_precisions(stage, model, xs) == {"HIGHEST, HIGHEST"}
    with jax.default_matmul_precision("bfloat16"):
        assert _dot_precisions(stage, model, xs) == {"DEFAULT, DEFAULT"}
        if stage == "lag_profile":
            assert analyse(model, xs, lyapunov=False, spectra=False, paths=False, gates=False).to_dict()[
                "precision"
            ] == {"dtype": "float32", "matmul": "bfloat16"}
    assert _dot_precisions(stage, model, xs) == {"HIGHEST, HIGHEST"}
    if stage == "lag_profile":
        assert analyse(model, xs, lyapunov=False, spectra=False, paths=False, gates=False).to_dict()["precision"] == {
            "dtype": "float32",
            "matmul": "highest",
        }


def test_sensitivity_section_is_the_engine_curve_batch_mean():
    # the record holds engine.parameter_sensitivity's curves, aggregated over the batch as every other
    # log-norm curve: log10 of the mean norm; growth rates (decades per step) as plain means
    model = build("gru", 3, 4)
    xs = inputs(6, 3, B=2, seed=4)
    a = analyse(model, xs, sensitivity=True, lyapunov=False, spectra=False)
    d = json.loads(_dumps(a))["sensitivity"]
    ref = engine.parameter_sensitivity(model, xs)
    assert d["t"] == list(range(7)) and set(d["by_parameter"]) == set(ref.by_parameter)

    def agg(L):
        L = np.asarray(L, np.float64)
        with np.errstate(divide="ignore"):
            return np.log10(np.mean(10.0**L, axis=0))

    for n, L in ref.by_parameter.items():
        got = np.array([-np.inf if v is None else v for v in d["by_parameter"][n]])  # None: −inf here
        want = agg(L)
        assert d["by_parameter"][n][0] is None and np.isneginf(want[0])  # S_0 does not depend on θ
        np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want), err_msg=n)  # ∂h_1/∂W_hh = 0 too
        ok = np.isfinite(want)
        np.testing.assert_allclose(got[ok], want[ok], atol=1e-12, err_msg=n)
        assert d["growth"][n] == pytest.approx(float(np.mean(np.asarray(ref.growth[n]))), abs=1e-12)
        assert d["sizes"][n] == np.size(getattr(model, n))
    np.testing.assert_allclose(d["log10_total"][1:], agg(ref.log10_total)[1:], atol=1e-12)
    np.testing.assert_allclose(d["log10_state"][1:], agg(ref.log10_state)[1:], atol=1e-12)


ROUTE_MODELS = {
    "lstm": lambda: build("lstm", 3, 4),  # two blocks, the c→c highway
    "gru": lambda: build("gru", 3, 4),  # a direct path on h
    "rnn-tanh": lambda: build("rnn-tanh", 3, 4),
    "stack": lambda: stack("lstm", 3, 3, 3, key=jax.random.key(2), dtype=jnp.float64),
}


@pytest.mark.parametrize("name", sorted(ROUTE_MODELS))
def test_materialised_and_streaming_routes_give_the_same_analysis(name, monkeypatch):
    """analyse's two routes: step Jacobians materialised once and read by shared stage programs, or
    recomputed inside each stage's scan (what it does when they do not fit `MATERIALISE_MAX_BYTES`).
    The streaming stages are the ones the engine tests check against autodiff and NumPy; the
    materialised route must give the same numbers (float64, to rounding)."""
    from gradscope.engine import jacobians

    model = ROUTE_MODELS[name]()
    xs = inputs(12, 3, B=2)
    kw = dict(triangle=True, lyapunov_k=4)
    assert engine.materialise_fits(model, xs)
    a = analyse(model, xs, **kw).to_dict()
    monkeypatch.setattr(jacobians, "MATERIALISE_MAX_BYTES", 0)
    assert not engine.materialise_fits(model, xs)
    b = analyse(model, xs, **kw).to_dict()
    assert a.keys() == b.keys() and ("paths" in a) == (name in ("lstm", "gru"))

    assert_records_close(a, b, "analysis", rel=1e-9, abs=1e-9, spectrum_atol=1e-12)


def test_dense_models_of_one_state_layout_share_the_stage_programs():
    """Cells of one state layout (here rnn-tanh, IRNN and GRU: one block of 4 units) compile the
    materialised route's stages once: only their rollout-and-Jacobians program is their own. The Lyapunov
    spectrum compiles nothing on the CPU (LAPACK on the host, gradscope.engine._benettin)."""
    from gradscope.engine import paths, products, spectra

    xs = inputs(9, 3, B=2)
    models = [build("rnn-tanh", 3, 4), build("irnn", 3, 4), build("gru", 3, 4, seed=5)]
    shared = (products._lag_profile_of, spectra._singular_values_of)
    before = {f: f._cache_size() for f in (*shared, spectra._lyapunov_of)}
    for m in models:
        analyse(m, xs, paths=False)
    for f, n in before.items():
        assert f._cache_size() == n + (f in shared), f
    n = paths._path_split_of._cache_size()
    analyse(build("gru", 3, 4, seed=6), xs)
    analyse(build("gru", 3, 4, seed=7), xs)
    assert paths._path_split_of._cache_size() <= n + 1


def test_path_split_remainder_at_round_off_is_null():
    """An LSTM's c→c remainder at lag 1 is exactly zero (c_{t−1} reaches c_t only through f_t); computed as
    total − highway it is round-off, reported as null with a note; at longer lags it is a number."""
    from gradscope.analysis.summary import remainder_resolved

    r, note = remainder_resolved([0.0, 0.0, -1.0], [-6.0, -3.0, -1.5], np.float32)
    # float32: eps = 2^-23 (log10 ≈ -6.92); the floor is total - 6.92 + 1.5
    assert np.isnan(r[0]) and r[1] == -3.0 and r[2] == -1.5 and "float32" in note
    r64, _ = remainder_resolved([0.0], [-6.0], np.float64)
    assert r64[0] == -6.0  # far above float64 round-off (-15.65 + 1.5)

    cell = make("lstm", 2, 6, key=jax.random.key(0))
    xs = jax.random.normal(jax.random.key(1), (2, 12, 2))
    d = analyse(cell, xs, spectra=False).to_dict()
    p = d["paths"]
    assert p["block"] == "c" and "round-off" in p["resolution"]
    assert p["remainder_log10_frobenius"][-1] is None and p["remainder_log10_spectral"][-1] is None  # lag 1
    assert all(isinstance(v, float) for v in p["remainder_log10_frobenius"][:-2])
    json.dumps(d, allow_nan=False)


def test_json_list_is_floats_with_none_for_non_finite():
    import math

    from gradscope.analysis.summary import json_list

    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 3, 4)).astype(np.float32)
    a[0, 1, 2], a[1, 0, 0], a[1, 2, 3] = np.nan, np.inf, -np.inf

    def ref(x):  # element by element, as the JSON spec reads
        return [ref(v) for v in x] if np.ndim(x) else (float(x) if math.isfinite(float(x)) else None)

    got = json_list(a)
    assert got == ref(a) and got[0][1][2] is None and type(got[0][0][0]) is float
    assert json_list(np.float32(2.5)) == 2.5 and json_list(np.nan) is None and json_list(np.zeros(0)) == []
    json.dumps(got, allow_nan=False)
