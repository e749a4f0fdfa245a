"""The diagonal fast path against the dense path on the same complex-diagonal model, in one run (issue #15).

An LRU (Orvieto et al. 2023) with n complex units has state size d = 2n and a step Jacobian made of 2 × 2
rotation-scaling blocks. The engine's fast path never forms a d × d matrix: the lag profile comes from one
O(T·d) suffix scan of log|λ| and arg λ, the Lyapunov spectrum from time averages of log|λ|. The dense path
(the same model declaring ``structure = "dense"``) multiplies d × d products, O(T·d³), with subspace
iteration for spectral norms and a full QR per step for the Lyapunov spectrum.

For each stage the script times the fast path at the full T and, because the dense path at d = 2048 is far
too slow for T = 5000 on a CPU, times the dense path at the largest T whose run fits ``--dense-budget``
seconds (calibrated from the marginal cost per step of warm runs at T = 2 and T = 4; the chosen T is
printed), and the fast path at that same T, and compares their numbers there: max |difference| of the log10
Frobenius norms, of the log10 spectral norms (the dense path estimates these by subspace iteration), and of
the exponents. Every timing is the
median over ``--repeat`` warm runs after one warm-up run (which includes compilation).

    python benchmarks/bench_diagonal.py --hidden 1024 --steps 5000 [--dense-budget 100] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np


def dense_twin(cell):
    """The same weights in a subclass that declares ``structure = "dense"``: the engine's dense path."""
    from gradscope.cells._base import pytree_cell

    cls = pytree_cell(type("Dense" + type(cell).__name__, (type(cell),), {"structure": "dense"}))
    return cls(**{f.name: getattr(cell, f.name) for f in dataclasses.fields(cell)})


def timed(fn, repeat):
    """``(median seconds over repeat warm runs, result)`` after one warm-up run (compilation included)."""
    import jax

    out = jax.block_until_ready(fn())
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def stages(model, xs):
    import gradscope as gs

    def lag(spectral=True):
        def run():
            lp = gs.lag_profile(model, xs, spectral=spectral)
            return {
                "spectral": lp.log10_spectral,
                "frobenius": lp.log10_frobenius,
                **{f"{k} {f[6:]}": v[f] for k, v in lp.blocks.items() for f in v},
            }

        return run

    def lyap():
        return {"exponents": gs.lyapunov_spectrum(model, xs).exponents}

    return {"lag profile": lag(True), "lag profile (Frobenius only)": lag(False), "Lyapunov spectrum": lyap}


def max_diff(a, b, which):
    """Max |a − b| over the keys containing ``which``, entries both have finite (asserting that they are
    finite at the same places); NaN where no key matches."""
    out = float("nan")
    for k in a:
        if which not in k:
            continue
        x, y = np.asarray(a[k], np.float64), np.asarray(b[k], np.float64)
        if np.all(np.isnan(y)):  # the dense path skips spectral norms with spectral=False
            continue
        both = np.isfinite(x) & np.isfinite(y)
        assert np.array_equal(np.isfinite(x), np.isfinite(y)), k
        diff = float(np.max(np.abs(x[both] - y[both]))) if both.any() else 0.0
        out = diff if np.isnan(out) else max(out, diff)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=1024, help="complex units n (state size 2n)")
    ap.add_argument("--inputs", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=5, help="timed warm runs of the fast path (median)")
    ap.add_argument("--dense-repeat", type=int, default=1, help="timed warm runs of the dense path (median)")
    ap.add_argument("--dense-budget", type=float, default=100.0, help="seconds one dense run may take")
    ap.add_argument("--stages", default="lag profile,lag profile (Frobenius only),Lyapunov spectrum")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write all rows to this file")
    a = ap.parse_args()

    import jax
    import jax.numpy as jnp

    import gradscope as gs

    # the paper's long-range initialisation: |λ| ∈ [0.9, 0.999]
    cell = gs.cells.make(
        "lru", a.inputs, a.hidden, key=jax.random.key(a.seed), dtype=jnp.float32, r_min=0.9, r_max=0.999
    )
    dense = dense_twin(cell)
    xs = np.random.default_rng(a.seed + 1).standard_normal((a.steps, a.inputs)).astype(np.float32)
    rows = []
    for name in a.stages.split(","):
        t_fast, _ = timed(stages(cell, xs)[name], a.repeat)
        # calibrate the dense path's marginal cost per step from warm runs at T = 2 and 4, pick T for the budget
        t2, _ = timed(stages(dense, xs[:2])[name], 1)
        t4, _ = timed(stages(dense, xs[:4])[name], 1)
        per = max((t4 - t2) / 2, t4 / 8, 1e-9)
        T_d = int(max(2, min(a.steps, (a.dense_budget - max(t2 - 2 * per, 0.0)) // per)))
        t_dense, out_d = timed(stages(dense, xs[:T_d])[name], a.dense_repeat)
        t_fast_d, out_f = timed(stages(cell, xs[:T_d])[name], a.repeat)
        row = {
            "stage": name,
            "n": a.hidden,
            "d": 2 * a.hidden,
            "T": a.steps,
            "fast_seconds": t_fast,
            "dense_T": T_d,
            "dense_seconds": t_dense,
            "fast_seconds_at_dense_T": t_fast_d,
            "speedup_at_dense_T": t_dense / t_fast_d,
            "dense_seconds_per_step": t_dense / T_d,
            "max_abs_diff_frobenius": max_diff(out_f, out_d, "frobenius"),
            "max_abs_diff_spectral": max_diff(out_f, out_d, "spectral"),
            "max_abs_diff_exponents": max_diff(out_f, out_d, "exponents"),
            "dtype": "float32",
        }
        rows.append(row)
        print(
            f"{name:30s} fast T={a.steps}: {t_fast:8.3f} s | dense T={T_d}: {t_dense:8.2f} s "
            f"({t_dense / T_d:.2f} s/step), fast T={T_d}: {t_fast_d:.4f} s, "
            f"speed-up {row['speedup_at_dense_T']:.0f}x "
            f"| max |Δ| Frobenius {row['max_abs_diff_frobenius']:.1e}, spectral {row['max_abs_diff_spectral']:.1e}, "
            f"exponents {row['max_abs_diff_exponents']:.1e}",
            flush=True,
        )
    meta = {
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "device": str(jax.devices()[0].device_kind),
        "loadavg": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(json.dumps(meta))
    if a.json:
        Path(a.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
