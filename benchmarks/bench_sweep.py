"""Sweep throughput against the stack size, a large sweep under a time budget, and the largest (d, T)
that one device analyses — the scale issue's GPU measurements, in one run.

    python benchmarks/bench_sweep.py [--quick] [--out DIR] [--sweep-budget-s 120] [--size-budget-s 60]

1. Throughput: one shape group (rnn-tanh, n = 256, T = 1000, batch 4 per configuration, 64 configurations:
   16 gains × 4 seeds) analysed by `gradscope.experiments.sweep.run_sweep` with the stack size (configurations vmapped
   and sharded at once) capped at 1, 2, 4, … 64. Each size is compiled first (a run on one stack), then
   timed on the whole group: configurations per second, compilation excluded. Plot: throughput.png.
2. The large sweep: 4 cells × 16 gains × 4 lengths × 8 seeds (2048 configurations) at n = 256, stack size
   chosen by the memory planner, stopped after ``--sweep-budget-s``: configurations done and per second
   (compilations of the 4 length groups included).
3. Largest sizes: `gradscope.lag_profile` of a tanh RNN (one sequence) with d doubling at T = 1000, then T
   growing ×10 at d = 256, until a size fails (the engine's ResourceError or the allocator) or the next
   size is predicted (from the last one's time: ×8 per doubling of d, ×10 in T) to take longer than
   ``--size-budget-s``.

``--quick`` shrinks every size for a CPU smoke test. Results: OUT/results.json and OUT/throughput.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

FULL = dict(
    hidden=256,
    length=1000,
    batch=4,
    gains=16,
    seeds=4,
    stacks=[1, 2, 4, 8, 16, 32, 64],
    big_cells=["rnn-tanh", "rnn-relu", "rnn-sigmoid", "rnn-linear"],
    big_gains=16,
    big_lengths=[250, 500, 750, 1000],
    big_seeds=8,
    d_start=512,
    d_length=1000,
    t_start=10_000,
    t_hidden=256,
)
QUICK = dict(
    hidden=8,
    length=20,
    batch=2,
    gains=4,
    seeds=4,
    stacks=[1, 2, 4, 8, 16],
    big_cells=["rnn-tanh", "rnn-relu"],
    big_gains=4,
    big_lengths=[10, 20],
    big_seeds=2,
    d_start=32,
    d_length=50,
    t_start=1_000,
    t_hidden=8,
)


class _Budget(Exception):
    pass


def gains(n: int) -> list[float]:
    return [round(0.5 + 1.5 * i / max(1, n - 1), 4) for i in range(n)]


def throughput(p: dict) -> list[dict]:
    from gradscope.experiments import sweep

    configs = sweep.grid(
        ["rnn-tanh"], gains(p["gains"]), [p["length"]], list(range(p["seeds"])), hidden=p["hidden"], batch=p["batch"]
    )
    rows = []
    for v in [s for s in p["stacks"] if s <= len(configs)]:
        t0 = time.perf_counter()
        sweep.run_sweep(configs[:v], max_vmap=v)  # compiles the stack of v
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        sweep.run_sweep(configs, max_vmap=v)
        dt = time.perf_counter() - t0
        rows.append(
            {
                "stack": v,
                "configs": len(configs),
                "seconds": dt,
                "configs_per_s": len(configs) / dt,
                "first_stack_s": compile_s,
            }
        )
        print(
            f"stack {v:4d}: {len(configs)} configurations in {dt:7.2f} s = {len(configs) / dt:8.2f} /s "
            f"(first stack incl. compile {compile_s:.1f} s)",
            flush=True,
        )
    return rows


def big_sweep(p: dict, budget_s: float) -> dict:
    from gradscope.experiments import sweep

    configs = sweep.grid(
        p["big_cells"],
        gains(p["big_gains"]),
        p["big_lengths"],
        list(range(p["big_seeds"])),
        hidden=p["hidden"],
        batch=p["batch"],
    )
    done = []
    t0 = time.perf_counter()

    def on_done(cfg, resumed):
        done.append(time.perf_counter() - t0)
        if done[-1] > budget_s:
            raise _Budget

    try:
        sweep.run_sweep(configs, on_done=on_done)
    except _Budget:
        pass
    dt = time.perf_counter() - t0
    out = {
        "grid": len(configs),
        "done": len(done),
        "seconds": dt,
        "configs_per_s": len(done) / dt,
        "cells": p["big_cells"],
        "lengths": p["big_lengths"],
        "hidden": p["hidden"],
    }
    print(
        f"large sweep: {len(done)} of {len(configs)} configurations in {dt:.1f} s = {len(done) / dt:.2f} /s "
        "(compilations included)",
        flush=True,
    )
    return out


def one_size(d: int, T: int) -> float:
    import jax
    import jax.numpy as jnp

    import gradscope as gs

    cell = gs.cells.make("rnn-tanh", 4, d, key=jax.random.key(0))
    xs = jax.random.normal(jax.random.key(1), (T, 4), jnp.float32)
    t0 = time.perf_counter()
    jax.block_until_ready(gs.lag_profile(cell, xs).log10_spectral)
    return time.perf_counter() - t0


def largest(p: dict, budget_s: float) -> list[dict]:
    rows = []

    def attempt(d, T, growth):
        """Run one size; True when the next (growth × the work) is predicted to stay within the budget."""
        try:
            s = one_size(d, T)
            rows.append({"d": d, "T": T, "seconds": s, "ok": True})
            print(f"lag profile d={d:6d} T={T:8d}: {s:8.2f} s (incl. compile)", flush=True)
            if s * growth > budget_s:
                print(f"  next size predicted at ~{s * growth:.0f} s > {budget_s:g} s budget: not run", flush=True)
                return False
            return True
        except Exception as exc:  # the engine's ResourceError or the allocator's RESOURCE_EXHAUSTED
            msg = " ".join(str(exc).split())[:300]
            rows.append({"d": d, "T": T, "ok": False, "error": f"{type(exc).__name__}: {msg}"})
            print(f"lag profile d={d:6d} T={T:8d}: failed ({type(exc).__name__}: {msg[:160]})", flush=True)
            return False

    d = p["d_start"]
    while attempt(d, p["d_length"], 8):  # the Jacobian chain is T·d³
        d *= 2
    T = p["t_start"]
    while attempt(p["t_hidden"], T, 10):
        T *= 10
    return rows


def plot(rows: list[dict], path: Path, meta: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot([r["stack"] for r in rows], [r["configs_per_s"] for r in rows], "o-")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("stack size (configurations analysed at once)")
    ax.set_ylabel("configurations per second")
    ax.set_title(
        f"gradscope sweep throughput — {meta['device']}\n"
        f"rnn-tanh n={meta['hidden']}, T={meta['length']}, batch {meta['batch']}, float32",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("bench-sweep"))
    ap.add_argument("--parts", default="throughput,sweep,largest")
    ap.add_argument("--sweep-budget-s", type=float, default=120.0)
    ap.add_argument("--size-budget-s", type=float, default=60.0)
    a = ap.parse_args()

    import jax

    p = QUICK if a.quick else FULL
    a.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "device": str(jax.devices()[0].device_kind),
        "devices": jax.device_count(),
        "backend": jax.default_backend(),
        "jax": jax.__version__,
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "quick": a.quick,
        "hidden": p["hidden"],
        "length": p["length"],
        "batch": p["batch"],
    }
    print(json.dumps(meta), flush=True)
    res: dict = {"meta": meta}

    def save():
        (a.out / "results.json").write_text(json.dumps(res, indent=1))

    parts = a.parts.split(",")
    if "throughput" in parts:
        res["throughput"] = throughput(p)
        save()
        plot(res["throughput"], a.out / "throughput.png", meta)
    if "sweep" in parts:
        res["large_sweep"] = big_sweep(p, a.sweep_budget_s)
        save()
    if "largest" in parts:
        res["largest"] = largest(p, a.size_budget_s)
        save()


if __name__ == "__main__":
    main()
