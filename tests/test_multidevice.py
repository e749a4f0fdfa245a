"""A sweep sharded over 4 (simulated CPU) devices gives bitwise the same table as on 1 device, and so does
`gradscope sweep --distributed` run as two JAX processes (two simulated devices each, a coordinator on
localhost, CPU collectives over Gloo).

JAX fixes its device count when it starts, so each side runs in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` set before ``import jax``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, sys
import jax
from gradscope.experiments import sweep
from gradscope.analysis import batch

devs = jax.devices()
assert len(devs) == int(sys.argv[1]), devs
# one LSTM shape group of 5 configurations: not a multiple of 4, so the stack is padded; the LSTM's
# path split (a cancellation: remainder = total - highway) is the most rounding-sensitive number we have
cfgs = sweep.grid(["lstm"], None, [7], [0, 1, 2, 3, 4], hidden=3, batch=2)
recs = sweep.run_sweep(cfgs, max_vmap=8)
# the stacked program really is laid out over every device
models = [sweep.build_model(c, sweep.config_keys(c.seed)[0]) for c in cfgs[:4]]
mesh = batch.mesh_for()
from jax.sharding import NamedSharding, PartitionSpec as P
sh = NamedSharding(mesh, P("cfg"))
stacked = jax.tree.map(lambda l: batch._put(l, sh), batch.stack_models(models))
print(json.dumps({"records": recs, "devices": len(stacked.weight_hh.sharding.device_set)}))
"""


def _spawn(n_devices: int, *argv) -> subprocess.Popen:
    """A fresh Python process with ``n_devices`` simulated CPU devices, float32 (x64 off)."""
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n_devices}", JAX_PLATFORMS="cpu")
    env.pop("JAX_ENABLE_X64", None)
    return subprocess.Popen(
        [sys.executable, *map(str, argv)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _stdout(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return out


def _start(n: int) -> subprocess.Popen:
    return _spawn(n, "-c", SCRIPT, n)


def _result(proc: subprocess.Popen) -> dict:
    return json.loads(_stdout(proc).strip().splitlines()[-1])


@pytest.mark.slow
def test_four_devices_equal_one_device_bitwise():
    p1, p4 = _start(1), _start(4)  # side by side: the test takes one compile's time, not two
    one, four = _result(p1), _result(p4)
    assert four["devices"] == 4 and one["devices"] == 1
    assert len(four["records"]) == 5
    assert four["records"] == one["records"]  # every number, bit for bit (JSON keeps float64 repr)


CLI_SWEEP = [
    "--cells",
    "rnn-tanh,lstm",
    "--gains",
    "1.5",
    "--lengths",
    "9",
    "--seeds",
    "0,1,2",
    "--hidden",
    "3",
    "--batch",
    "2",
    "--json",
    "-q",
]


def _cli(n_devices: int, *args) -> subprocess.Popen:
    return _spawn(n_devices, "-m", "gradscope", "sweep", *CLI_SWEEP, *args)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _leaves(x, y, path=""):
    """(path, x, y) for every leaf of two JSON documents of the same shape."""
    if isinstance(x, dict) and isinstance(y, dict):
        for k in x:
            yield from _leaves(x[k], y.get(k), f"{path}.{k}")
    elif isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
        for i, (u, v) in enumerate(zip(x, y)):
            yield from _leaves(u, v, f"{path}[{i}]")
    else:
        yield path, x, y


def _close(x, y, rtol=1e-5, atol=1e-6) -> bool:
    if isinstance(x, float) and isinstance(y, float):
        return abs(x - y) <= atol + rtol * abs(y)
    return x == y


@pytest.mark.slow
def test_two_processes_equal_one_process_to_float32_rounding(tmp_path):
    """The multi-controller path end to end: both processes compute, process 0 alone prints and writes."""
    port = _free_port()
    dist = ["--distributed", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
    procs = [_cli(2, *dist, "--process-id", i, "--out", tmp_path / "two") for i in (0, 1)]
    single = _cli(1, "--out", tmp_path / "one")
    outs = [_stdout(p) for p in procs + [single]]
    assert outs[1].strip() == ""  # process 1 neither prints nor writes
    two, one = json.loads(outs[0]), json.loads(outs[2])
    assert (two["environment"]["devices"], two["environment"]["processes"]) == (4, 2)
    assert (one["environment"]["devices"], one["environment"]["processes"]) == (1, 1)
    assert "(cpu ×4, 2 processes)" in (tmp_path / "two" / "summary.md").read_text()
    # Equal to float32 rounding, not bit for bit: each process runs with its own XLA CPU thread pool (two
    # devices per process here, one in the reference), and XLA splits reductions by thread count, so an LSTM's
    # gate means and QR-based exponents differ in the last bits (seen: relative 1e-9 to 3e-7). In one process
    # the device count does not change a bit (test_four_devices_equal_one_device_bitwise).
    assert len(two["analyses"]) == 6
    for a, b in zip(two["analyses"], one["analyses"]):
        assert set(a) == set(b) and a["summary"]["verdict"] == b["summary"]["verdict"]
        # float32 singular values are accurate relative to the largest of their matrix (error ≈ ε·σ_max/σ): compare
        # those within 3 decades of it (the smaller ones carry few significant digits in any float32 SVD)
        # (the batch mean and the per-sequence median, min and max alike)
        resolved = {
            f".{section}.{key}[{i}][{j}]"
            for section in ("spectra", "step_spectra")
            for key in (
                "log10_singular_values",
                "log10_singular_values_median",
                "log10_singular_values_min",
                "log10_singular_values_max",
            )
            for i, row in enumerate((a.get(section) or {}).get(key, []))
            for j, v in enumerate(row)
            if v is not None and v < max(u for u in row if u is not None) - 3
        }
        # the others to the float32 SVD's accuracy ε·σ_max/σ ≤ 1.2e-7 · 10³ in log10 units (with margin: 2e-4)
        bad = [
            (p, x, y)
            for p, x, y in _leaves(a, b)
            if p not in resolved and not (_close(x, y, rtol=0.0, atol=2e-4) if "singular_values" in p else _close(x, y))
        ]
        assert not bad, (a["name"], bad[:6])
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [
        "figures",
        "report.html",
        "report.json",
        "summary.md",
    ]
    assert not list(tmp_path.glob(".two.partial*"))  # the partial file is removed once the report holds all
