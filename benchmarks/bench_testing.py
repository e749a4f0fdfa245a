"""What `gradscope.testing` costs per call in a test session (issue #19: the pytest helper must be cheap
enough for unit tests: <= 1 s per call after the first, on a small LSTM).

In one process, as in a pytest session: the first call of `assert_gradient_flow` (tracing and compiling),
then ``--calls`` more with fresh weights of the same shapes, with the default analysis and with the unit-test
switches (``spectra=False, gates=False, paths=False``), and the `gradscope_regression` fixture's check
against a baseline it wrote. Each row: the first call, then the median and maximum of the others.

    python benchmarks/bench_testing.py [--calls 5] [--json FILE]

The model is tests/test_testing.py's: LSTM 4 -> 16, inputs (4, 100, 4), float32. JAX's persistent
compilation cache is off here, so "first" is a cold start whatever ran before.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

jax.config.update("jax_enable_compilation_cache", False)

import gradscope  # noqa: E402
from gradscope.testing import GradientFlowRegression, assert_gradient_flow  # noqa: E402

FAST = {"spectra": False, "gates": False, "paths": False}


def _lstm(seed: int):
    cell = gradscope.cells.make("lstm", 4, 16, key=jax.random.key(seed), forget_bias=1.0)
    xs = jax.random.normal(jax.random.key(1000 + seed), (4, 100, 4), dtype=jnp.float32)
    return cell, xs


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _row(name: str, call, calls: int) -> dict:
    first = _timed(lambda: call(0))
    rest = [_timed(lambda s=s: call(s)) for s in range(1, calls + 1)]
    return {"what": name, "first": first, "median": statistics.median(rest), "max": max(rest)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=5, help="calls after the first")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gradscope-bench-testing-"))
    regression = GradientFlowRegression(tmp / "lstm.json")
    rows = [
        _row("assert_gradient_flow, unit-test switches", lambda s: assert_gradient_flow(*_lstm(s), **FAST), args.calls),
        _row("assert_gradient_flow, full analysis", lambda s: assert_gradient_flow(*_lstm(s)), args.calls),
    ]
    regression.check(*_lstm(0), update=True, **FAST)
    rows.append(_row("gradscope_regression check", lambda s: regression(*_lstm(s % 3), **FAST), args.calls))
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{now}  {platform.platform()}  {os.cpu_count()} CPUs  load average {os.getloadavg()[0]:.1f}")
    print(f"{'what':44s} {'first':>7s} {'median':>7s} {'max':>7s}   (seconds; {args.calls} calls after the first)")
    for r in rows:
        print(f"{r['what']:44s} {r['first']:7.2f} {r['median']:7.2f} {r['max']:7.2f}")
    if args.json:
        args.json.write_text(json.dumps({"date": now, "machine": platform.platform(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
