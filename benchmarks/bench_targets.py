"""The engine's GPU targets, measured in one run: gradscope at each target size, its numbers against
float64 references, and the peers of ../shared/bench at the same sizes.

    python benchmarks/bench_targets.py [--quick] [--peers jax,torch] [--out DIR]

Targets (the engine issue; the peers' H100 times are in ../shared/bench/README.md):

    lag        LSTM n=128 (d=256), T=500,  B=8   lag profile (spectral + Frobenius)   <= 0.1 s
    triangle   LSTM n=128 (d=256), T=512,  B=4   ‖∂S_t/∂S_k‖_F for all k <= t          <= 0.4 s
    lyapunov   LSTM n=128 (d=256), T=1000, B=8   full spectrum, QR every step          <= 0.2 s
    indrnn     IndRNN n=1024, T=5000, one sequence, lag profile incl. the rollout      <= 10 ms

Timing (METHOD.md): one warm-up call (compilation), then the median of ``--repeat`` calls, each ended by
``block_until_ready``; inputs are random, never zeros. Accuracy: every float32 result is compared with the
same computation in float64 run in a subprocess (``JAX_ENABLE_X64=1``) on the CPU — on the GPU for the
triangle, whose float64 CPU run would take minutes — as the largest |difference| of log10 norms (over
entries finite in both) or of exponents (nats per step). A float32 run at matmul precision "highest"
agrees to ~1e-5; TF32-class matmuls would show ~1e-3. ``--quick`` shrinks every size for a CPU smoke test.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_engine import PEERS, peer_dir, peer_model  # noqa: E402

TARGETS = {
    "lag": dict(hidden=128, steps=500, batch=8, limit_s=0.1),
    "triangle": dict(hidden=128, steps=512, batch=4, limit_s=0.4),
    "lyapunov": dict(hidden=128, steps=1000, batch=8, limit_s=0.2),
    "indrnn": dict(hidden=1024, steps=5000, batch=1, limit_s=0.010),
}
QUICK = {
    "lag": dict(hidden=16, steps=50, batch=2),
    "triangle": dict(hidden=16, steps=40, batch=2),
    "lyapunov": dict(hidden=16, steps=60, batch=2),
    "indrnn": dict(hidden=64, steps=500, batch=1),
}
INPUTS = 16  # the peers' default input size
# the float64 reference runs on the CPU, except where that would take minutes
REFERENCE_PLATFORM = {"lag": "cpu", "triangle": "default", "lyapunov": "cpu", "indrnn": "cpu"}


def sized(name: str, quick: bool) -> tuple[dict, float]:
    """(size, target seconds) of a workload: the issue's size, or the CPU smoke-test size with ``quick``."""
    size = dict(TARGETS[name])
    limit = size.pop("limit_s")
    return (dict(QUICK[name]) if quick else size), limit


def workload(name: str, size: dict, dtype, seed: int = 0, scan: str = "auto"):
    """The call of one workload at one size: the same model and inputs in every precision.
    ``scan``: the IndRNN rollout ("auto": an associative scan on accelerators, the loop on CPUs)."""
    import jax
    import jax.numpy as jnp

    import gradscope as gs

    n, T, B = size["hidden"], size["steps"], size["batch"]
    if name == "indrnn":
        # drawn in float32 and cast: the float64 run must see the very same weights
        cell = gs.cells.make("indrnn", 2, n, key=jax.random.key(seed), max_length=T)
        cell = dataclasses.replace(jax.tree.map(lambda w: w.astype(dtype), cell), scan=scan)
        xs = jnp.asarray(np.random.default_rng(seed).standard_normal((T, 2)), dtype)
        return lambda: jax.block_until_ready(gs.lag_profile(cell, xs).log10_spectral)
    from bench_engine import gradscope_workload

    w_ih, w_hh, b, xs = peer_model("jax", INPUTS, n, T, B, seed)
    return gradscope_workload(name, w_ih, w_hh, b, xs, jnp.float64 if dtype == "float64" else jnp.float32)[0]


def time_median(call, repeat: int) -> dict:
    t0 = time.perf_counter()
    out = call()  # compilation
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - t0)
    return {
        "first_call_s": first,
        "median_s": statistics.median(times) if times else float("nan"),
        "min_s": min(times, default=float("nan")),
        "runs": len(times),
        "out": out,
    }


def max_log_diff(a: np.ndarray, ref: np.ndarray) -> dict:
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    both = np.isfinite(a) & np.isfinite(ref)
    diff = float(np.max(np.abs(a[both] - ref[both]))) if both.any() else float("nan")
    return {
        "max_abs_diff": diff,
        "compared": int(both.sum()),
        "finite_mismatch": int((np.isfinite(a) != np.isfinite(ref)).sum()),
    }


def reference(name: str, size: dict, platform_name: str, npz: Path, repeat: int = 0) -> None:
    """Child process: the float64 result of one workload, saved to ``npz`` with the seconds of the first
    call (``seconds``) and, with ``repeat`` > 0, the median of that many warm calls (``median_s``)."""
    env = dict(os.environ, JAX_ENABLE_X64="1")
    if platform_name == "cpu":
        env["JAX_PLATFORMS"] = "cpu"
    code = (
        f"import sys, json, numpy as np; sys.path.insert(0, {str(HERE)!r}); import bench_targets as b; "
        "size = json.loads(sys.argv[2]); run = b.workload(sys.argv[1], size, 'float64'); "
        "t = b.time_median(run, int(sys.argv[4])); "
        "np.savez(sys.argv[3], out=np.asarray(t['out']), seconds=t['first_call_s'], "
        "median_s=t['median_s'])"
    )
    subprocess.run([sys.executable, "-c", code, name, json.dumps(size), str(npz), str(repeat)], env=env, check=True)


def within(out: np.ndarray, ref: np.ndarray, tol: float = 1e-3) -> dict:
    """How many Lyapunov exponents agree with float64 to ``tol``, and the largest exponent that does not:
    float32 resolves an exponent λ_i only to about ε·e^(λ_1 − λ_i) (its direction is that much weaker than
    the leading one), so the most negative exponents of a strongly contracting model are out of reach."""
    out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
    bad = np.abs(out - ref) > tol
    return {
        "tol": tol,
        "within": int((~bad).sum()),
        "of": int(bad.size),
        "largest_exponent_outside": float(ref[bad].max()) if bad.any() else None,
    }


def run_peer(peer: str, name: str, size: dict, device: str, repeat: int) -> dict | None:
    cmd = [
        sys.executable,
        str(peer_dir() / PEERS[peer]),
        name,
        "func",
        "--hidden",
        str(size["hidden"]),
        "--inputs",
        str(INPUTS),
        "--steps",
        str(size["steps"]),
        "--batch",
        str(size["batch"]),
        "--seed",
        "0",
        "--repeat",
        str(repeat),
    ]
    if peer == "torch":
        cmd += ["--device", device]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if res.returncode != 0:
        print(f"peer {peer} {name} failed: {res.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke test on a CPU")
    ap.add_argument("--workloads", default="lag,triangle,lyapunov,indrnn")
    ap.add_argument("--repeat", type=int, default=10, help="timed calls after the warm-up (median reported)")
    ap.add_argument("--peers", default="", help="peers to run at the same sizes, e.g. jax,torch (slow: minutes)")
    ap.add_argument("--peer-repeat", type=int, default=2, help="the peers' --repeat (their minimum is reported)")
    ap.add_argument("--device", default="cuda", help="the torch peer's device")
    ap.add_argument("--out", type=Path, default=Path("bench-targets"), help="folder for results.json")
    a = ap.parse_args()

    import jax

    from gradscope.engine._prep import MATMUL_PRECISION

    a.out.mkdir(parents=True, exist_ok=True)
    dev = jax.devices()[0]
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "device": str(dev.device_kind),
        "backend": jax.default_backend(),
        "jax": jax.__version__,
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "gradscope_matmul_precision": MATMUL_PRECISION,
        "jax_default_matmul_precision": str(jax.config.jax_default_matmul_precision),
        "quick": a.quick,
    }
    print(json.dumps(meta), flush=True)
    rows = []
    for name in a.workloads.split(","):
        size, limit = sized(name, a.quick)
        t = time_median(workload(name, size, "float32"), a.repeat)
        out = np.asarray(t.pop("out"))
        npz = a.out / f"ref-{name}.npz"
        t0 = time.perf_counter()
        reference(name, size, REFERENCE_PLATFORM[name], npz)
        ref = np.load(npz)
        row = {
            "workload": name,
            **size,
            **t,
            "target_s": limit,
            "meets_target": t["median_s"] <= limit,
            "float64_reference": {
                "platform": REFERENCE_PLATFORM[name],
                "seconds": float(ref["seconds"]),
                "wall_s": time.perf_counter() - t0,
                **max_log_diff(out, ref["out"]),
            },
        }
        if name == "indrnn":  # the other rollout, for comparison: the loop (GPU) or the associative scan (CPU)
            other = "sequential" if jax.default_backend() != "cpu" else "parallel"
            t2 = time_median(workload(name, size, "float32", scan=other), a.repeat)
            row["other_scan"] = {
                "scan": other,
                "median_s": t2["median_s"],
                **max_log_diff(np.asarray(t2["out"]), ref["out"]),
            }
            print(f"indrnn with scan={other}: median {t2['median_s'] * 1e3:.2f} ms", flush=True)
        if name == "lyapunov":
            row["float64_reference"]["exponents_within_1e-3"] = within(out, ref["out"])
            if not a.quick and jax.default_backend() != "cpu":  # the same workload computed in float64 on the GPU
                reference(name, size, "default", a.out / "f64-gpu-lyapunov.npz", repeat=max(3, a.repeat // 3))
                f64 = np.load(a.out / "f64-gpu-lyapunov.npz")
                row["float64_on_device"] = {"median_s": float(f64["median_s"]), **max_log_diff(f64["out"], ref["out"])}
                print(
                    f"lyapunov in float64 on {meta['device']}: median {float(f64['median_s']) * 1e3:.1f} ms, "
                    f"|Δ| vs CPU float64 {row['float64_on_device']['max_abs_diff']:.1e}",
                    flush=True,
                )
        rows.append(row)
        print(
            f"{name:9s} n={size['hidden']:5d} T={size['steps']:5d} B={size['batch']:2d}  median "
            f"{t['median_s'] * 1e3:9.2f} ms (first call {t['first_call_s']:.2f} s)  target {limit * 1e3:g} ms "
            f"{'MET' if row['meets_target'] else 'missed'}  |Δ| vs float64 "
            f"{row['float64_reference']['max_abs_diff']:.1e}",
            flush=True,
        )
        (a.out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    for name in a.workloads.split(","):
        if name == "indrnn":
            continue
        size = sized(name, a.quick)[0]
        for peer in filter(None, a.peers.split(",")):
            if peer == "torch" and name == "lag" and not a.quick:
                print("skip torch lag (> 150 s on an H100 in ../shared/bench/README.md)", flush=True)
                continue
            p = run_peer(peer, name, size, a.device, a.peer_repeat)
            if p is None:
                continue
            mine = next(r for r in rows if r["workload"] == name)
            mine.setdefault("peers", []).append(p)
            print(
                f"{name:9s} peer {p['peer']:10s} {p['seconds_min']:9.3f} s   gradscope {mine['median_s']:.4f} s  "
                f"ratio peer/gradscope {p['seconds_min'] / mine['median_s']:.1f}×",
                flush=True,
            )
            (a.out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
