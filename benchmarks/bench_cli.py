"""Latency of the commands people type, cold and warm, in one run: each command is a fresh subprocess
(``python -m gradscope ...``), timed wall-clock from start to exit, the minimum of ``--repeat`` runs.

    python benchmarks/bench_cli.py [--repeat 3] [--quick] [--json FILE]

"cold" runs with an empty compilation cache (a new folder each repeat), "warm" after a run that filled it,
"no cache" with ``--no-cache``; the cache is a temporary folder (``GRADSCOPE_CACHE_DIR``), never the
user's. Subprocesses run with Python's default bytecode cache (``PYTHONDONTWRITEBYTECODE`` dropped, gradscope's
``.pyc`` files written before timing, as an install does). Listings (``--help``, ``cells``, ``check``,
``inspect``) compile nothing: one row each. The table states the machine, its CPU count and the load average
before and after, since a loaded machine inflates every number, and each warm command's CPU seconds (all its
processes, the figure workers included; the least of the repeats), which load distorts less; ``--quick``
runs a 2-cell compare instead of the default seven cells.

Targets on a 2-core CPU: compare (default) <= 10 s cold, <= 5 s warm; analyse of a small model <= 3 s
warm; listings <= 1 s.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ANALYSE = ["analyse", "--cell", "lstm", "--hidden", "16", "--length", "100", "--batch", "4"]
COMPARE = ["compare"]
QUICK_COMPARE = ["compare", "--cells", "rnn-tanh,lstm", "--hidden", "8", "--length", "50"]


def _env(cache: str) -> dict[str, str]:
    drop = ("JAX_COMPILATION", "PYTHONDONTWRITEBYTECODE")  # Python's default: gradscope's bytecode is cached
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop) and "PERSISTENT" not in k}
    env.update(GRADSCOPE_CACHE_DIR=cache, JAX_PLATFORMS=env.get("JAX_PLATFORMS", "cpu"))
    return env


def _cpu() -> float:
    """CPU seconds (user + system) of this process's finished children and theirs (the figure workers)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _run(args: list[str], cache: str, cwd: Path, cpu: list[float] | None = None) -> float:
    """Wall seconds of one command; its CPU seconds (all its processes) appended to ``cpu``."""
    t0, c0 = time.perf_counter(), _cpu()
    cmd = [sys.executable, "-m", "gradscope", *args]
    res = subprocess.run(cmd, env=_env(cache), cwd=cwd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if cpu is not None:
        cpu.append(_cpu() - c0)
    ok = (0, 1) if args[0] in ("check", "inspect") else (0,)  # a regression / an unmapped file exit 1
    if res.returncode not in ok:
        raise SystemExit(f"gradscope {' '.join(args)} failed ({res.returncode}):\n{res.stderr[-2000:]}")
    return dt


def _writes(args: list[str], tmp: Path, tag: str) -> list[str]:
    return [*args, "--out", str(tmp / f"out-{tag}"), "--force", "--quiet"]


def measure(repeat: int, quick: bool, tmp: Path) -> list[dict]:
    rows = []
    compare = QUICK_COMPARE if quick else COMPARE
    for label, args in (
        ("compare" + (" (quick)" if quick else " (default)"), compare),
        ("analyse (small LSTM)", ANALYSE),
    ):
        cold = min(_run(_writes(args, tmp, "c"), str(tmp / f"cold-{i}"), tmp) for i in range(repeat))
        warm_dir = str(tmp / "cold-0")  # filled by the first cold run
        warm_cpu: list[float] = []
        warm = min(_run(_writes(args, tmp, "w"), warm_dir, tmp, warm_cpu) for _ in range(repeat))
        off = min(_run(["--no-cache", *_writes(args, tmp, "n")], "off", tmp) for _ in range(repeat))
        rows.append({"command": label, "cold_s": cold, "warm_s": warm, "no_cache_s": off, "warm_cpu_s": min(warm_cpu)})
        for i in range(repeat):  # every cold run starts empty: drop this command's cache folders
            shutil.rmtree(tmp / f"cold-{i}", ignore_errors=True)
    report = tmp / "out-w"
    _run(["baseline", str(report), "--output", str(tmp / "baseline.json"), "--update"], "off", tmp)
    n, m = 32, 2
    np.savez(
        tmp / "lstm.npz",
        weight_ih_l0=np.zeros((4 * n, m), np.float32),
        weight_hh_l0=np.zeros((4 * n, n), np.float32),
        bias_ih_l0=np.zeros(4 * n, np.float32),
        bias_hh_l0=np.zeros(4 * n, np.float32),
    )
    for label, args in (
        ("--help", ["--help"]),
        ("cells", ["cells"]),
        ("check", ["check", str(report), "--baseline", str(tmp / "baseline.json")]),
        ("inspect", ["inspect", str(tmp / "lstm.npz")]),
    ):
        t = min(_run(args, str(tmp / "listing-cache"), tmp) for _ in range(repeat))
        rows.append({"command": label, "cold_s": t, "warm_s": None, "no_cache_s": None, "warm_cpu_s": None})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="runs per cell of the table; the minimum is shown")
    ap.add_argument("--quick", action="store_true", help="a 2-cell compare instead of the default seven cells")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows (and the machine) as JSON")
    a = ap.parse_args()
    # the interpreter's bytecode of gradscope written before timing (as pip's install does): no row pays it
    package = importlib.util.find_spec("gradscope").submodule_search_locations[0]  # type: ignore[union-attr]
    subprocess.run([sys.executable, "-m", "compileall", "-q", package], check=True)
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="gradscope-bench-cli-") as d:
        rows = measure(max(1, a.repeat), a.quick, Path(d))
    load1 = os.getloadavg()
    machine = {
        "date": datetime.date.today().isoformat(),
        "platform": platform.platform(),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "load_before": round(load0[0], 1),
        "load_after": round(load1[0], 1),
        "repeat": a.repeat,
    }
    print(
        f"{machine['date']}  {machine['platform']}  {machine['cpus']} CPUs  load average "
        f"{machine['load_before']} -> {machine['load_after']}  (min of {a.repeat} runs, seconds)"
    )
    print(f"{'command':<24}{'cold':>9}{'warm':>9}{'no cache':>10}{'warm CPU':>10}")

    def fmt(v):
        return f"{v:9.2f}" if v is not None else f"{'':>9}"

    for r in rows:
        print(
            f"{r['command']:<24}{fmt(r['cold_s'])}{fmt(r['warm_s'])}{fmt(r['no_cache_s']):>10}{fmt(r['warm_cpu_s']):>10}"
        )
    if a.json is not None:
        a.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
