"""Overhead of `gradscope.watch.Watcher`: time per watched step against a PyTorch training step.

    python benchmarks/bench_watch.py [--hidden 64] [--length 100] [--batch 16] [--steps 20]
                                     [--backends jsonl,tensorboard,mlflow] [--metrics lag] [--json out.json]

Model: ``nn.LSTM(input 8, hidden 64)`` with a linear head, Adam, batches (16, 100, 8) — one training step is
forward + backward + update. The watcher analyses the same model on a fixed (16, 100, 8) batch. For each
backend set (jsonl alone — the default —, then adding each of ``--backends``) the first watched step
(conversion, JAX compilation, backend start) is reported on its own and the median of ``--steps`` later
watched steps is compared with the median training step, in wall-clock and in process CPU time
(the CPU ratio is the steadier one on a shared machine). With ``every = N`` the amortised overhead is
ratio / N.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--length", type=int, default=100)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--input", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--backends", default="tensorboard,mlflow", help="extra backends to time, comma-separated")
    ap.add_argument("--metrics", default="lag", help="watcher stages, comma-separated (or 'all')")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import torch

    from gradscope.watch import Watcher

    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(args.input, args.hidden, batch_first=True)
            self.head = torch.nn.Linear(args.hidden, 1)

        def forward(self, x):
            return self.head(self.rnn(x)[0][:, -1])

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.randn(args.batch, args.length, args.input)
    y = torch.randn(args.batch, 1)

    def train_step():
        loss = (net(x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        train_step()
    times, cpu = [], []
    for _ in range(args.steps):
        t, c = time.perf_counter(), time.process_time()
        train_step()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    train, train_cpu = statistics.median(times), statistics.median(cpu)
    metrics = "all" if args.metrics == "all" else tuple(m for m in args.metrics.split(",") if m)
    sets = [("jsonl",)] + [("jsonl", b) for b in args.backends.split(",") if b]
    out = {
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "date": time.strftime("%Y-%m-%d"),
        "model": f"nn.LSTM({args.input}, {args.hidden}), T={args.length}, batch={args.batch}",
        "metrics": args.metrics,
        "load_average": os.getloadavg()[0],
        "train_step_s": train,
        "train_step_cpu_s": train_cpu,
        "watched": {},
    }
    print(f"{out['model']}; {out['machine']}")
    print(f"training step (median of {args.steps}): {train * 1e3:.1f} ms wall, {train_cpu * 1e3:.1f} ms CPU")
    for backends in sets:
        with tempfile.TemporaryDirectory() as d, Watcher(x, every=1, logdir=d, backends=backends, metrics=metrics) as w:
            t = time.perf_counter()
            w.step(net, 0)
            first = time.perf_counter() - t
            ws, wc = [], []
            for s in range(1, args.steps + 1):
                train_step()
                t, c = time.perf_counter(), time.process_time()
                w.step(net, s)
                ws.append(time.perf_counter() - t)
                wc.append(time.process_time() - c)
        med, med_cpu = statistics.median(ws), statistics.median(wc)
        key = "+".join(backends)
        out["watched"][key] = {
            "first_s": first,
            "median_s": med,
            "median_cpu_s": med_cpu,
            "ratio": med / train,
            "ratio_cpu": med_cpu / train_cpu,
        }
        print(
            f"watched step [{key:>17}]: {med * 1e3:7.1f} ms wall = {med / train:5.2f} training steps; "
            f"{med_cpu * 1e3:7.1f} ms CPU = {med_cpu / train_cpu:5.2f} (first, with compilation: {first:.1f} s)"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
