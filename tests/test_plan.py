"""Memory planning at every entry point (gradscope.analysis.plan, gradscope.engine._memory).

Impossible sizes fail before any work — in-process through the CLI (typer's CliRunner), through the Python
API and, in the slow tier, as `python -m gradscope` subprocesses — with exit code 2 (a `ResourceError`)
and one line "… needs X GB, Y GB available; at most T = … (or batch = …, hidden = …) fits". Every test
runs under a SIGALRM timeout, so a hang fails the test instead of stalling the suite.

"Before any work" is checked by giving the Python API abstract inputs (`jax.ShapeDtypeStruct`) and
abstract models (`jax.eval_shape`): they hold no numbers, so anything past planning would fail with
another error. The available memory is fixed at 16 GB (budget 8 GB) so the outcomes do not depend on
the machine; realistic sizes must be accepted under that budget (a plan must not be too pessimistic).
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from typer.testing import CliRunner

from gradscope import cli, engine
from gradscope.analysis import analyse, plan
from gradscope.cells import make
from gradscope.engine import _memory
from gradscope.engine._memory import ResourceError
from gradscope.experiments import plan as xplan
from gradscope.experiments import tasks
from gradscope.experiments.train import train

ROOT = Path(__file__).resolve().parents[1]
AVAILABLE = 16 * 10**9  # a laptop with 16 GB free: the budget is half of it
BUDGET = int(_memory.BUDGET_FRACTION * AVAILABLE)
LINE = re.compile(r"needs [\d,.]+ GB, [\d,.]+ GB available; at most (T|batch|hidden) = (\d+)")
runner = CliRunner()


@pytest.fixture(autouse=True)
def fixed_memory(monkeypatch):
    monkeypatch.setattr(_memory, "available_bytes", lambda device=None: AVAILABLE)


@pytest.fixture(autouse=True)
def deadline():
    """Fail (instead of hanging) a test that runs for more than 120 s."""

    def expire(signum, frame):
        raise TimeoutError("the test ran past its 120 s deadline: planning did not fail fast")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def one_line(res) -> str:
    assert res.exit_code == 2, (res.exit_code, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.output
    return lines[0]


IMPOSSIBLE = [
    (["analyse", "--cell", "lstm", "--hidden", "4", "--length", "1000000000"], "T"),
    (["compare", "--length", "1000000000"], "T"),
    (["analyse", "--cell", "rnn-tanh", "--hidden", "2048", "--length", "100000", "--triangle"], "T"),
    (["analyse", "--cell", "lstm", "--hidden", "8192", "--length", "2000", "--batch", "1000"], "hidden"),
    (["analyse", "--cell", "lstm", "--batch", "1000000000"], "batch"),
    (["analyse", "--cell", "lstm", "--hidden", "1000000000"], "hidden"),
    (["train", "--task", "adding", "--batch", "1000000000", "--steps", "1"], "batch"),
    (["train", "--task", "adding", "--hidden", "1000000000", "--steps", "1"], "hidden"),
]


@pytest.mark.parametrize("args, first", IMPOSSIBLE, ids=lambda a: " ".join(a) if isinstance(a, list) else a)
def test_impossible_sizes_fail_in_planning(tmp_path, args, first):
    t0 = time.perf_counter()
    line = one_line(runner.invoke(cli.app, [*args, "--out", str(tmp_path / "r")]))
    match = LINE.search(line)
    assert match, line
    assert match.group(1) == first, line  # the length, else the batch, else the hidden size that fits
    assert time.perf_counter() - t0 < 60
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["analyse", "--cell", "lstm", "--layers", "1000000"], "--layers=1000000 is not allowed"),
        (["analyse", "--cell", "lstm", "--seed", str(2**64)], f"--seed={2**64} is not allowed"),
        (["analyse", "--cell", "lstm", "--length", str(10**20)], f"--length={10**20} is not allowed"),
        (["train", "--task", "adding", "--seed", str(2**64)], f"--seed={2**64} is not allowed"),
        (["train", "--task", "adding", "--layers", "1000000"], "--layers=1000000 is not allowed"),
        (["sweep", "--cells", "lstm", "--lengths", "1000000000", "--seeds", "0"], "GB available; at most T = "),
    ],
)
def test_sizes_and_seeds_out_of_range(tmp_path, args, needle):
    line = one_line(runner.invoke(cli.app, [*args, "--out", str(tmp_path / "r")]))
    assert needle in line, line


def test_the_suggested_size_fits_and_the_next_does_not():
    """The remedy named is the largest that fits: its plan passes, one more is refused (bisection)."""
    cfg = gs_config(hidden=4, length=10**9)
    with pytest.raises(ResourceError) as err:
        xplan.plan_config(cfg)
    t_max = int(LINE.search(str(err.value)).group(2))  # type: ignore[union-attr]
    xplan.plan_config(gs_config(hidden=4, length=t_max))
    with pytest.raises(ResourceError):
        xplan.plan_config(gs_config(hidden=4, length=t_max + 1))


def gs_config(**kw):
    from gradscope.experiments.sweep import Config

    return Config(**{"name": "lstm", "cell": "lstm", **kw})


def test_bytes_of_an_elman_analysis_in_closed_form():
    """rnn-tanh (d = h, |θ| = h·m + h² + 2h with its input and recurrent biases; one block, dense): the
    analysis holds per sequence twice the states and inputs, 4·T·d gate slots and its largest stage, the
    step spectra 16·3·(d² + d); ×2 for XLA's temporaries, 4 bytes each."""
    h, m, T, B = 300, 2, 500, 8
    model = jax.eval_shape(lambda k: make("rnn-tanh", m, h, key=k), jax.random.key(0))
    s = _memory.model_sizes(model, B, T, m)
    per_seq = 2 * ((T + 1) * h + T * m) + 4 * T * h + 16 * 3 * (h * h + h)
    assert plan.analysis_bytes(s, plan.analysis_stages()) == 2 * 4 * (B * per_seq + h * m + h * h + 2 * h)


@pytest.mark.parametrize(
    "call",
    [
        lambda m, xs: analyse(m, xs),
        lambda m, xs: engine.lag_profile(m, xs),
        lambda m, xs: engine.lyapunov_spectrum(m, xs),
        lambda m, xs: engine.singular_values(m, xs),
        lambda m, xs: engine.step_singular_values(m, xs),
        lambda m, xs: engine.path_split(m, xs),
        lambda m, xs: engine.attribution(m, xs),
        lambda m, xs: engine.probe_lag_profile(m, xs),
        lambda m, xs: engine.parameter_sensitivity(m, xs),
        lambda m, xs: engine.step_jacobians(m, xs),
    ],
    ids=lambda f: "",
)
def test_python_api_refuses_before_allocating(call):
    """An abstract model and abstract inputs: only planning can run on them, so a ResourceError proves the
    refusal came before any rollout. LSTM, hidden 512, batch 1000, T = 2000: hundreds of GB (parameter
    sensitivity's d × |θ| tangent, 1024 × 1.05 M numbers per sequence, does not fit even at T = 1)."""
    model = jax.eval_shape(lambda k: make("lstm", 2, 512, key=k), jax.random.key(0))
    xs = jax.ShapeDtypeStruct((1000, 2000, 2), jnp.float32)
    with pytest.raises(
        ResourceError,
        match=r"needs [\d,.]+ GB, 8\.0 GB available; (at most (T|batch) = \d+|no smaller T or batch fits)",
    ):
        call(model, xs)


def test_a_model_too_large_for_any_batch_says_so():
    """LSTM, hidden 8192 (d = 16 384): one d × d product with its workspace outgrows 8 GB at T = 1, B = 1."""
    model = jax.eval_shape(lambda k: make("lstm", 2, 8192, key=k), jax.random.key(0))
    xs = jax.ShapeDtypeStruct((1000, 2000, 2), jnp.float32)
    with pytest.raises(ResourceError, match=r"GB available; no smaller T or batch fits: the model itself is too large"):
        analyse(model, xs)


def test_triangle_is_planned_from_its_quadratic_output():
    """engine.triangle of a real rnn-tanh on abstract inputs: the (T+1)² output alone, 2·(T+1)²·4 bytes for
    T = 100 000, is 80 GB — refused before the rollout, naming the longest T that fits."""
    model = make("rnn-tanh", 1, 16, key=jax.random.key(0), dtype=jnp.float32)
    xs = jax.ShapeDtypeStruct((1, 100_000, 1), jnp.float32)
    with pytest.raises(ResourceError) as err:
        engine.triangle(model, xs)  # pyright: ignore[reportArgumentType]  (abstract on purpose)
    t_max = int(LINE.search(str(err.value)).group(2))  # type: ignore[union-attr]
    # the output alone at T = t_max fits the budget with its 2× slack: 2 · 4 · 2(T+1)² ≤ 8 GB
    assert 2 * 4 * 2 * (t_max + 1) ** 2 <= BUDGET
    assert 2 * 4 * 2 * (t_max + 1) ** 2 > BUDGET / 2  # and the plan is not absurdly tight either
    assert math.isclose(t_max, math.sqrt(BUDGET / 16), rel_tol=0.01)


def test_train_refuses_before_any_work():
    task = tasks.make("adding", length=50)
    model = make("lstm", 2, 8, key=jax.random.key(0))
    with pytest.raises(ResourceError, match=r"training .* at most batch = \d+"):
        train(model, task, key=jax.random.key(0), steps=1, batch=10**9)


@pytest.mark.parametrize(
    "cfg",
    [
        dict(cell="lstm", hidden=256, length=1000, batch=16),
        dict(cell="gru", hidden=512, length=500, batch=32),
        dict(cell="rnn-tanh", hidden=64, length=2000, batch=4, triangle=True),
        dict(cell="lstm", hidden=32, length=200, batch=4, attribution=True, sensitivity=True),
        dict(cell="lstm", hidden=64, length=2000, batch=256),
    ],
    ids=str,
)
def test_realistic_sizes_are_accepted(cfg):
    xplan.plan_config(gs_config(**cfg))


def test_default_compare_and_presets_are_accepted(tmp_path, monkeypatch):
    """`gradscope compare` at its defaults and with every preset: all its configurations plan on an 8 GB
    budget (the analyses themselves are tested elsewhere; here they are replaced by the planning alone)."""
    from gradscope.cli import compare

    planned = []

    def plan_only(configs, **kw):
        for cfg in configs:
            xplan.plan_config(cfg)  # raises ResourceError (exit 2) if refused
            planned.append(cfg)
        raise SystemExit(17)  # planned: stop before the analyses

    monkeypatch.setattr(compare, "analyse_all", plan_only)
    for preset in [None, *compare.PRESETS]:
        args = ["compare", "--out", str(tmp_path / f"r-{preset}")] + (["--preset", preset] if preset else [])
        before = len(planned)
        res = runner.invoke(cli.app, args)
        assert res.exit_code == 17, res.output
        assert len(planned) > before


# ------------------------------------------------------------------------------------- subprocesses


def gradscope(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("GRADSCOPE_DEBUG", None)
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "gradscope", *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    return p, time.perf_counter() - t0


@pytest.mark.slow
@pytest.mark.parametrize("args, first", IMPOSSIBLE, ids=lambda a: " ".join(a) if isinstance(a, list) else a)
def test_impossible_sizes_in_a_shell(tmp_path, args, first):
    """The repros as a user runs them (the machine's real memory): exit 2 and one line, well within the
    timeout that would otherwise catch a hang."""
    p, seconds = gradscope(*args, "--out", str(tmp_path / "r"))
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and LINE.search(lines[0]), p.stderr
    assert seconds < 120, seconds
