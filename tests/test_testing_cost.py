"""What a call of gradscope.testing costs after the first one in a test session: one analysis per call and
no new compilation for a model of a shape already seen (issue: the pytest helper must be cheap enough for
unit tests). Counted, not timed: `gradscope.analyse` is wrapped to count its calls, and JAX's own
monitoring events count every trace, lowering and XLA compilation.

The model and input shapes are those of tests/test_testing.py (LSTM 4 -> 16, inputs (4, 100, 4),
float32), so in one pytest process the two files share their compiled programs.
"""

from typing import Any

import jax
import jax.numpy as jnp
import pytest
from jax import monitoring

import gradscope
from gradscope import testing
from gradscope.testing import GradientFlowRegression, assert_gradient_flow

FAST: dict[str, Any] = {"spectra": False, "gates": False, "paths": False}  # as in tests/test_testing.py
#: JAX's duration events for tracing to a jaxpr, lowering to MLIR and compiling with XLA
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_seen: dict[str, int] = {}
_listening: list[bool] = []


def _on_event(event: str, duration_secs: float, **kwargs: str | int) -> None:
    if event in COMPILE_EVENTS:
        _seen[event] = _seen.get(event, 0) + 1


@pytest.fixture
def compile_events():
    """The counts of JAX's compile events from here on (the listener is registered once per session)."""
    if not _listening:
        monitoring.register_event_duration_secs_listener(_on_event)
        _listening.append(True)
    _seen.clear()
    return _seen


@pytest.fixture
def analyses(monkeypatch):
    """gradscope.analyse wrapped to count its calls (assert_gradient_flow looks it up at call time)."""
    calls = []
    real: Any = gradscope.analyse

    def counting(*args, **kwargs):
        calls.append(kwargs.get("name"))
        return real(*args, **kwargs)

    monkeypatch.setattr(gradscope, "analyse", counting)
    return calls


def _lstm(seed: int, forget_bias: float = 1.0):
    cell = gradscope.cells.make("lstm", 4, 16, key=jax.random.key(seed), forget_bias=forget_bias)
    xs = jax.random.normal(jax.random.key(1000 + seed), (4, 100, 4), dtype=jnp.float32)
    return cell, xs


def test_repeat_calls_analyse_once_and_compile_nothing(tmp_path, monkeypatch, analyses, compile_events):
    monkeypatch.delenv(testing.UPDATE_ENV, raising=False)
    assert_gradient_flow(*_lstm(0), min_horizon=1, **FAST)  # the first call of the session compiles
    assert analyses == ["model"]
    compile_events.clear()
    del analyses[:]

    baseline = tmp_path / "lstm.json"
    assert_gradient_flow(*_lstm(3), min_horizon=1, max_lyapunov=1.0, **FAST)  # other weights, same shapes
    # baselines: seeds 1 and 2 are within the default tolerances of seed 0 (tests/test_testing.py)
    assert_gradient_flow(*_lstm(0), baseline=baseline, update=True, name="lstm", **FAST)
    assert_gradient_flow(*_lstm(1), baseline=baseline, name="lstm", **FAST)
    regression = GradientFlowRegression(tmp_path / "fixture.json")  # what the gradscope_regression fixture returns
    regression.check(*_lstm(0), update=True, **FAST)
    regression(*_lstm(2), **FAST)
    with pytest.raises(AssertionError, match="horizon"):  # a failing check costs no more than a passing one
        regression(*_lstm(0, forget_bias=-3.0), **FAST)

    assert analyses == ["model", "lstm", "lstm", "fixture", "fixture", "fixture"]  # one analysis per call
    assert compile_events == {}, f"calls after the first traced or compiled again: {compile_events}"


def test_a_new_shape_compiles_once(analyses, compile_events):
    """A shape not seen before compiles its programs on its first call, and only then."""
    cell = gradscope.cells.make("lstm", 3, 7, key=jax.random.key(0))
    xs = jax.random.normal(jax.random.key(1), (2, 37, 3), dtype=jnp.float32)  # a shape no other test uses
    assert_gradient_flow(cell, xs, min_horizon=0, **FAST)
    first = dict(compile_events)
    assert first.get("/jax/core/compile/backend_compile_duration", 0) >= 1  # the counter does count
    other, xs2 = gradscope.cells.make("lstm", 3, 7, key=jax.random.key(9)), xs * 2.0  # (eager ops compile too)
    compile_events.clear()
    assert_gradient_flow(other, xs2, min_horizon=0, **FAST)
    assert compile_events == {}
    assert len(analyses) == 2
