"""Side-by-side timing of gradscope's engine against the peers in ../shared/bench (DESIGN §7).

For each workload (lag profile, triangle, Lyapunov spectrum) it runs the peer script in a subprocess
and gradscope in this process on the SAME model and inputs (rebuilt here from the peer's seeded
construction), takes the minimum over repeats (the first call includes compilation for both), and
prints the speed ratio and the agreement of the numbers (the peers' checksum: the mean of the finite
log10 norms, or of the exponents). ``--rounds N`` alternates peer and gradscope N times (minimum of
each), so that a load that comes and goes hits both sides.

Each workload also gets a floor: its matmul flop count divided by this machine's float32 matmul rate,
measured in the same run: a large GEMM (2048³), and small ones (128³) as the faster of a batch of 800 in
one XLA program and BLAS's own (OpenBLAS through NumPy, one thread, 800 in a row) times the usable CPUs,
as if the small products of independent sequences ran on every core at once. Flop counts, d the state
size, B sequences of T steps:

* lag profile (the full state's spectral and Frobenius norms at every k, as the peers compute; gradscope's
  default also gives the four block pairs' norms, timed on the same line): the chain ``P ← P J_k``,
  B·T·2d³ (a spectral norm by warm-started iteration adds O(d²) per iteration);
* triangle: one product per pair t − k ≥ 2, B·T(T−1)/2·2d³ (as one large GEMM per step: the large rate);
* Lyapunov spectrum: a Householder QR of ``J_t Q`` (4/3·d³) and its reflectors applied to the next
  Jacobian (2d³; Q is never formed), B·T·(10/3)d³. (Until 2026-12-06 this counted ``J_t Q`` plus a QR with
  its Q formed, (2 + 8/3)d³, against XLA's batched rate alone: a floor that gradscope's LAPACK route then
  ran under.)

The lag profile and the Lyapunov chain are T sequential steps of B small matmuls, so their floor uses
the small-matmul rate; the triangle's uses the large one.

    python benchmarks/bench_engine.py --hidden 64 --steps 200 --batch 4 [--peers jax,torch] [--rounds 3]
        [--json out.json]

On a CPU only ratios mean something (DESIGN §7); absolute times are reported for GPUs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PEERS = {"jax": "jax_peer.py", "torch": "torch_peer.py"}


def peer_dir() -> Path:
    for cand in (HERE.parent.parent / "shared" / "bench", HERE.parent / "shared" / "bench"):
        if (cand / "jax_peer.py").exists():
            return cand
    raise SystemExit("error: cannot find the peers (../shared/bench/jax_peer.py); run from the project checkout")


def peer_model(peer: str, n_in: int, n: int, T: int, B: int, seed: int):
    """The peer's LSTM weights and inputs, rebuilt exactly: (w_ih, w_hh, b, xs (B, T, m)) in float64."""
    k = 1.0 / math.sqrt(n)
    if peer == "jax":
        rng = np.random.default_rng(seed)
        w_ih = rng.uniform(-k, k, (4 * n, n_in))
        w_hh = rng.uniform(-k, k, (4 * n, n))
        b = rng.uniform(-k, k, 4 * n) + rng.uniform(-k, k, 4 * n)
        xs = rng.standard_normal((T, B, n_in))
    else:
        import torch

        g = torch.Generator().manual_seed(seed)

        def u(*s):
            return (torch.rand(*s, generator=g, dtype=torch.float64) * 2 - 1) * k

        w_ih, w_hh, b = u(4 * n, n_in).numpy(), u(4 * n, n).numpy(), (u(4 * n) + u(4 * n)).numpy()
        g2 = torch.Generator().manual_seed(seed + 1)
        xs = torch.randn(T, B, n_in, generator=g2, dtype=torch.float64).numpy()
    return w_ih, w_hh, b, np.transpose(xs, (1, 0, 2))


def gradscope_workload(workload, w_ih, w_hh, b, xs, dtype):
    import jax
    import jax.numpy as jnp

    import gradscope as gs
    from gradscope.cells.lstm import LSTM

    n, m = w_hh.shape[1], w_ih.shape[1]
    cast = lambda a: jnp.asarray(a, dtype)  # noqa: E731
    cell = LSTM(cast(w_ih), cast(w_hh), cast(b), jnp.zeros(4 * n, dtype), None, input_size=m, hidden_size=n)
    x = cast(xs)
    if workload in ("lag", "lag-blocks"):
        # "lag": the peers' work (the full state's norms at every k); "lag-blocks": gradscope's default
        # lag profile, which adds the norms of the four block pairs h→h, c→h, h→c, c→c
        blocks = workload == "lag-blocks"

        def run():
            r = gs.lag_profile(cell, x, blocks=blocks)
            return jax.block_until_ready(r.log10_spectral)

        checksum = lambda r: float(np.mean(np.asarray(r, np.float64)))  # noqa: E731
    elif workload == "triangle":

        def run():
            return jax.block_until_ready(gs.triangle(cell, x).log10_frobenius)

        def checksum(r):
            r = np.asarray(r, np.float64)[:, 1:, :-1]  # rows t = 1..T, columns k = 0..T-1
            T = r.shape[1]
            mask = np.arange(T)[None, :] <= np.arange(T)[:, None]
            v = r[:, mask]
            return float(np.mean(v[np.isfinite(v)]))
    else:

        def run():
            return jax.block_until_ready(gs.lyapunov_spectrum(cell, x).exponents)

        checksum = lambda r: float(np.mean(np.asarray(r, np.float64)))  # noqa: E731
    return run, checksum


def blas_small_rate(repeat=5):
    """BLAS's float32 rate on 128³ products in FLOP/s: 800 NumPy matmuls in a row on one BLAS thread, times
    the CPUs this process may use."""
    from threadpoolctl import threadpool_limits

    from gradscope._cpus import usable_cpus

    a = np.full((128, 128), 0.01, np.float32)
    with threadpool_limits(1, user_api="blas"):
        t = time_min(lambda: [a @ a for _ in range(800)], repeat)[0]
    return 2.0 * 128**3 * 800 / t * usable_cpus()


def matmul_rates(dtype, repeat=5):
    """``(large, small)`` float32 matmul rates in FLOP/s: one 2048³ GEMM, and a batch of 800 128³ ones in
    one program (see `blas_small_rate` for the other small rate)."""
    import jax
    import jax.numpy as jnp

    out = []
    for shape in ((2048, 2048), (800, 128, 128)):
        a = jnp.full(shape, 0.01, dtype)
        f = jax.jit(lambda x: x @ x)
        jax.block_until_ready(f(a))
        t, _, _ = time_min(lambda f=f, a=a: jax.block_until_ready(f(a)), repeat)
        n = shape[-1]
        out.append(2.0 * n**3 * (shape[0] if len(shape) == 3 else 1) / t)
    return tuple(out)


def workload_flops(workload, d, T, B):
    """Matmul flops of a workload (see the module docstring) and which rate bounds it."""
    if workload == "lag":
        return B * T * 2.0 * d**3, "small"
    if workload == "triangle":
        return B * T * (T - 1) / 2 * 2.0 * d**3, "large"
    return B * T * (10.0 / 3.0) * d**3, "small"


def time_min(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), times, out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--inputs", type=int, default=16)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--workloads", default="lag,triangle,lyapunov")
    ap.add_argument("--peers", default="jax,torch")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (passed to the torch peer)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=1, help="alternate peer and gradscope this many times")
    ap.add_argument("--json", help="write all rows to this file")
    a = ap.parse_args()

    import jax
    import jax.numpy as jnp

    from gradscope._cpus import usable_cpus

    rows = []
    pdir = peer_dir()
    large, xla_small = matmul_rates(jnp.float32)
    blas_small = blas_small_rate()
    small = max(xla_small, blas_small)
    print(
        f"matmul rate: large GEMM {large / 1e9:.0f} GFLOP/s, 128x128: XLA batch of 800 {xla_small / 1e9:.0f} GFLOP/s, "
        f"BLAS one thread x {usable_cpus()} CPUs {blas_small / 1e9:.0f} GFLOP/s"
    )
    for workload in a.workloads.split(","):
        for peer in a.peers.split(","):
            if peer == "torch" and workload == "lag" and a.steps * a.hidden > 8000:
                print("skip torch lag at this size (> 150 s on an H100 in ../shared/bench/README.md)", file=sys.stderr)
                continue
            cmd = [
                sys.executable,
                str(pdir / PEERS[peer]),
                workload,
                "func",
                "--hidden",
                str(a.hidden),
                "--inputs",
                str(a.inputs),
                "--steps",
                str(a.steps),
                "--batch",
                str(a.batch),
                "--seed",
                str(a.seed),
                "--repeat",
                str(a.repeat),
            ]
            if peer == "torch":
                cmd += ["--device", a.device]
            env = dict(os.environ)
            w_ih, w_hh, b, xs = peer_model(peer, a.inputs, a.hidden, a.steps, a.batch, a.seed)
            run, checksum = gradscope_workload(workload, w_ih, w_hh, b, xs, jnp.float32)
            p, t, out = None, math.inf, None
            for _ in range(a.rounds):  # alternate: a load that comes and goes hits both sides
                res = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
                if res.returncode != 0:
                    print(f"peer {peer} {workload} failed: {res.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                    break
                pr = json.loads(res.stdout.strip().splitlines()[-1])
                if p is None or pr["seconds_min"] < p["seconds_min"]:
                    p = pr
                tr, _, out = time_min(run, a.repeat)
                t = min(t, tr)
            if p is None:
                continue
            extra = ""
            if workload == "lag":
                run_blocks, _ = gradscope_workload("lag-blocks", w_ih, w_hh, b, xs, jnp.float32)
                t_blocks = time_min(run_blocks, a.repeat)[0]
                extra = f"  (with the 4 block pairs: gradscope {t_blocks:.3f} s, {p['seconds_min'] / t_blocks:.1f}x)"
            flops, which = workload_flops(workload, 2 * a.hidden, a.steps, a.batch)
            floor = flops / (large if which == "large" else small)
            row = {
                "workload": workload,
                "peer": p["peer"],
                "hidden": a.hidden,
                "steps": a.steps,
                "batch": a.batch,
                "peer_seconds": p["seconds_min"],
                "gradscope_seconds": t,
                "speedup": p["seconds_min"] / t,
                "floor_seconds": floor,
                "floor_rate": which,
                "gradscope_over_floor": t / floor,
                "peer_checksum": p["checksum"],
                "gradscope_checksum": checksum(out),
                "device": str(jax.devices()[0].device_kind),
                "dtype": "float32",
            }
            row["checksum_diff"] = abs(row["peer_checksum"] - row["gradscope_checksum"])
            rows.append(row)
            print(
                f"{workload:9s} vs {p['peer']:10s}  peer {p['seconds_min']:8.3f} s  gradscope {t:8.3f} s  "
                f"floor {floor:7.3f} s ({which} rate)  peer/gradscope {row['speedup']:5.1f}x  "
                f"gradscope/floor {t / floor:5.1f}x  checksum diff {row['checksum_diff']:.2e}{extra}"
            )
    meta = {
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "matmul_flops_large": large,
        "matmul_flops_small": small,
        "matmul_flops_small_xla": xla_small,
        "matmul_flops_small_blas": blas_small,
        "load_average": os.getloadavg(),
    }
    print(json.dumps(meta))
    if a.json:
        Path(a.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
