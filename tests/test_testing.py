"""gradscope.testing: assert_gradient_flow, baselines on request, and the pytest plugin.

The regime tests run gradscope.analyse on real models (hidden 16, length 100, batch 4, float32):
an LSTM's forget bias 1 -> -3 shortens the gradient horizon from ~40 steps to ~4 (sigma(-3) = 0.047
per step on the cell path), and a tanh RNN's recurrent gain 0.9 -> 1.5 raises the largest Lyapunov
exponent; both must fail against a baseline, while another seed of the same LSTM must pass.
"""

import subprocess
import sys
import types
from pathlib import Path

import pytest

import gradscope
from gradscope import checks, testing
from gradscope.testing import assert_gradient_flow

ROOT = Path(__file__).resolve().parents[1]


def _has_analyse() -> bool:
    try:
        gradscope.analyse
    except (AttributeError, ImportError):
        return False
    return True


needs_analyse = pytest.mark.skipif(not _has_analyse(), reason="gradscope.analyse is not available yet")


@pytest.fixture(autouse=True)
def no_update_env(monkeypatch):
    monkeypatch.delenv(testing.UPDATE_ENV, raising=False)


# ------------------------------------------------------------------ logic, with a stand-in analyse


class FakeAnalysis:
    def __init__(self, name, summary):
        self.name, self.summary = name, summary

    def to_dict(self):
        return {
            "schema": "gradscope.analysis/1",
            "name": self.name,
            "precision": {"dtype": "float32", "matmul": "highest"},
            "summary": dict(self.summary),
        }


@pytest.fixture
def fake(monkeypatch):
    """gradscope.analyse replaced by a function returning the summary in `state` (the model argument is unused)."""
    state = {
        "summary": {
            "log10_norm_max_lag": -8.0,
            "decay_per_step": -0.08,
            "horizon": 40,
            "horizon_threshold": -3.0,
            "lyapunov_max": -0.2,
            "verdict": "vanishing",
        }
    }

    def analyse(model, xs, state0=None, *, name=None, **kwargs):
        state["kwargs"] = kwargs
        return FakeAnalysis(name, dict(state["summary"]))

    monkeypatch.setattr(gradscope, "analyse", analyse, raising=False)
    return state


def test_explicit_bounds(fake):
    assert_gradient_flow(None, None, min_horizon=40, max_lyapunov=-0.1, max_decay=0.1, lyapunov=True)
    assert fake["kwargs"] == {"lyapunov": True}
    with pytest.raises(AssertionError, match=r"horizon 40 steps < min_horizon=41"):
        assert_gradient_flow(None, None, min_horizon=41)
    with pytest.raises(AssertionError, match=r"Lyapunov exponent -0.2 nats/step > max_lyapunov=-0.3"):
        assert_gradient_flow(None, None, max_lyapunov=-0.3)
    with pytest.raises(AssertionError, match=r"decays by 0.08 decades/step > max_decay=0.05"):
        assert_gradient_flow(None, None, max_decay=0.05)
    fake["summary"]["lyapunov_max"] = float("nan")
    with pytest.raises(AssertionError, match="not computed"):
        assert_gradient_flow(None, None, max_lyapunov=0.0)
    with pytest.raises(gradscope.ConfigError):
        assert_gradient_flow(None, None, max_decay=-1)


@pytest.mark.parametrize(
    "bound,value",
    [("min_horizon", "40"), ("max_lyapunov", True), ("max_decay", float("nan")), ("max_lyapunov", float("inf"))],
)
def test_bounds_must_be_finite_numbers(fake, bound, value):
    """A bound that is not a finite real number is an input error naming it, before any analysis runs."""
    fake.pop("kwargs", None)
    with pytest.raises(gradscope.ConfigError, match=f"{bound}="):
        assert_gradient_flow(None, None, **{bound: value})
    assert "kwargs" not in fake  # gradscope.analyse was not called


def test_baseline_missing_fails_then_update_writes_then_regression_fails(fake, tmp_path, monkeypatch):
    path = tmp_path / "b" / "model.json"
    with pytest.raises(AssertionError, match="does not exist.*GRADSCOPE_UPDATE_BASELINES=1"):
        assert_gradient_flow(None, None, baseline=path)
    assert not path.exists()
    assert_gradient_flow(None, None, baseline=path, update=True)
    assert checks.load_baseline(path)["metrics"]["model/horizon"]["value"] == 40
    assert_gradient_flow(None, None, baseline=path)  # unchanged: passes
    fake["summary"]["horizon"] = 20
    with pytest.raises(AssertionError, match="model/horizon changed from 40 to 20"):
        assert_gradient_flow(None, None, baseline=path)
    assert_gradient_flow(None, None, baseline=path, overrides={"metrics": {"*/horizon": {"rtol": 0.6}}})
    monkeypatch.setenv(testing.UPDATE_ENV, "1")
    assert_gradient_flow(None, None, baseline=path)  # rewrites
    assert checks.load_baseline(path)["metrics"]["model/horizon"]["value"] == 20


def test_pytest_option_and_fixture(tmp_path):
    """Run pytest in a subprocess with the plugin loaded by -p (as the pytest11 entry point would)."""
    test = tmp_path / "test_plugin_user.py"
    test.write_text(
        "import sys\n"
        "from gradscope import testing\n"
        "def test_flag(gradscope_regression, request):\n"
        "    want = request.config.getoption('--gradscope-update-baselines')\n"
        "    assert testing.update_requested() is want\n"
        "    assert gradscope_regression.path.parts[-3:] == ('baselines', 'test_plugin_user', 'test_flag.json')\n"
        "    assert 'jax' not in sys.modules\n"
    )
    from importlib.metadata import entry_points

    # installed packages load the plugin through their pytest11 entry point; a plain checkout needs -p
    installed = any(ep.value == "gradscope.testing" for ep in entry_points(group="pytest11"))
    load = [] if installed else ["-p", "gradscope.testing"]
    for extra in ([], ["--gradscope-update-baselines"]):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                *load,
                "-p",
                "no:cacheprovider",
                "-q",
                "--rootdir",
                str(tmp_path),
                str(test),
                *extra,
            ],
            cwd=ROOT,
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
            env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------------------------ real models


def _lstm(seed, forget_bias):
    import jax
    import jax.numpy as jnp

    cell = gradscope.cells.make("lstm", 4, 16, key=jax.random.key(seed), forget_bias=forget_bias)
    xs = jax.random.normal(jax.random.key(1000 + seed), (4, 100, 4), dtype=jnp.float32)
    return cell, xs


FAST = {"spectra": False, "gates": False, "paths": False}  # stages the checked summary does not need


@needs_analyse
def test_lstm_forget_bias_regression_caught_other_seed_passes(tmp_path):
    path = tmp_path / "lstm.json"
    cell, xs = _lstm(0, 1.0)
    assert_gradient_flow(cell, xs, baseline=path, update=True, name="lstm", **FAST)
    for seed in (1, 2, 3):  # another draw of weights and inputs: within the default tolerances
        assert_gradient_flow(*_lstm(seed, 1.0), baseline=path, name="lstm", **FAST)
    with pytest.raises(AssertionError) as exc:
        assert_gradient_flow(*_lstm(0, -3.0), baseline=path, name="lstm", **FAST)
    assert "lstm/horizon" in str(exc.value) and "lstm/log10_norm_max_lag" in str(exc.value)
    # the same through explicit bounds: forget bias 1 keeps gradients beyond 20 steps, -3 does not
    assert_gradient_flow(cell, xs, min_horizon=20, max_lyapunov=0.0, **FAST)
    with pytest.raises(AssertionError, match="min_horizon=20"):
        assert_gradient_flow(*_lstm(0, -3.0), min_horizon=20, **FAST)


@needs_analyse
def test_tanh_gain_raise_fails_lyapunov_direction(tmp_path):
    import jax
    import jax.numpy as jnp

    xs = jax.random.normal(jax.random.key(7), (4, 100, 4), dtype=jnp.float32)

    def rnn(gain):
        return gradscope.cells.make("rnn-tanh", 4, 16, key=jax.random.key(3), gain=gain)

    path = tmp_path / "tanh.json"
    assert_gradient_flow(rnn(0.9), xs, baseline=path, update=True, name="tanh", **FAST)
    report = testing.report_from_analyses(gradscope.analyse(rnn(1.5), xs, name="tanh", **FAST))
    result = checks.compare(report, path)
    lyap = [r for r in result.rows if r.name == "tanh/lyapunov_max"][0]
    assert not lyap.passed and lyap.direction == "increase_is_bad" and lyap.delta > lyap.tolerance
    # and lowering the gain again is harmless for this one-sided check
    report = testing.report_from_analyses(gradscope.analyse(rnn(0.6), xs, name="tanh", **FAST))
    assert [r for r in checks.compare(report, path).rows if r.name == "tanh/lyapunov_max"][0].passed


def test_module_imports_without_jax():
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, gradscope.testing; assert 'jax' not in sys.modules"],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert isinstance(testing, types.ModuleType)
