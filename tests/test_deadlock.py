"""No deadlock: the 4-device CPU sweep that once hung intermittently, repeated, each run under a timeout.

The repro (docs/reliability.md, "Deadlock"): ``XLA_FLAGS=--xla_force_host_platform_device_count=4
JAX_PLATFORMS=cpu gradscope sweep --cells lstm --gains 0.5,1.0,1.5 --lengths 50 --seeds 0,1 --hidden 16
--json --out d`` never returned in 2 of 8 runs (main thread waiting for the result, every XLA/Eigen thread
idle). It runs as a user runs it: a fresh process each time, XLA's optimisations on, and gradscope setting
its CPU scheduler flag itself. A single run that does not finish within `TIMEOUT` fails the test.

What a pass proves: if a run hangs with probability p, ``REPEATS`` clean runs happen with probability
(1 − p)^REPEATS — 0.8^20 ≈ 1 % for the p ≈ 0.2 seen before the fix, so a pass rules that rate out at
the 99 % level; it cannot rule out rare hangs (p = 0.01 passes 20 runs 82 % of the time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REPEATS = int(os.environ.get("GRADSCOPE_DEADLOCK_REPEATS", "20"))
#: about 10 s on a quiet 2-core machine; minutes when the machine is shared
TIMEOUT = 600


def _env() -> dict[str, str]:
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "MPLBACKEND": "Agg",
    }
    for name in ("JAX_DISABLE_MOST_OPTIMIZATIONS", "GRADSCOPE_DEBUG"):  # as a user runs it
        env.pop(name, None)
    return env


def _sweep(out: Path, *extra: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    args = ["sweep", "--cells", "lstm", "--gains", "0.5,1.0,1.5", "--seeds", "0,1", "--hidden", "16", "--json"]
    return subprocess.run(
        [sys.executable, "-m", "gradscope", *args, *extra, "--out", str(out)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=timeout,
        check=False,
    )


@pytest.mark.slow
def test_four_device_lstm_sweep_never_hangs(tmp_path):
    seconds, first = [], None
    for i in range(REPEATS):
        t0 = time.perf_counter()
        try:
            p = _sweep(tmp_path / f"d{i}", "--lengths", "50")
        except subprocess.TimeoutExpired:
            pytest.fail(f"run {i + 1} of {REPEATS} did not finish in {TIMEOUT} s (runs before it: {seconds} s)")
        seconds.append(round(time.perf_counter() - t0, 1))
        assert p.returncode == 0, p.stderr[-2000:]
        report = json.loads(p.stdout)
        names = sorted(a["name"] for a in report["analyses"])
        assert len(names) == 2  # lstm takes no gain: one configuration per seed
        summaries = [a["summary"] for a in sorted(report["analyses"], key=lambda a: a["name"])]
        if first is None:
            first = summaries
        assert summaries == first  # and every run gives the same numbers


@pytest.mark.slow
def test_four_device_sweep_of_a_huge_length_fails_in_planning(tmp_path):
    p = _sweep(tmp_path / "d", "--lengths", "1000000000", timeout=300)
    assert p.returncode == 2, p.stderr[-2000:]
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "GB available; at most T = " in lines[0], p.stderr
    assert not (tmp_path / "d").exists()
