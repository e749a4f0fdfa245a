"""What makes the everyday commands fast, checked by what they do rather than by timing them: the listings
do not import JAX, the report's PNGs drawn by worker processes are byte for byte those drawn in-process,
the write path's structural check still refuses a malformed report, and what is written still passes the
full JSON Schema (benchmarks/bench_cli.py measures the times)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gradscope.report import ReportFormatError, load_report, write_report

# runs the CLI in-process and says which heavy modules it imported (a fresh interpreter per command)
PROBE = """
import runpy, sys
sys.argv = ["gradscope", *sys.argv[1:]]
try:
    runpy.run_module("gradscope", run_name="__main__")
except SystemExit as e:
    code = e.code
print("PROBE", code or 0, "jax" in sys.modules, "matplotlib" in sys.modules, file=sys.stderr)
"""


def _minimal_report() -> dict:
    """A gradscope.report/1 document written by hand (no JAX needed to make it)."""
    summary = {
        "verdict": "stable",
        "log10_norm_max_lag": -1.0,
        "decay_per_step": -0.01,
        "horizon": 100,
        "horizon_threshold": -3.0,
        "lyapunov_max": -0.05,
        "finite": True,
    }
    analysis = {
        "schema": "gradscope.analysis/1",
        "name": "net0",
        "model": {"cell": "lstm"},
        "blocks": ["h", "c"],
        "block_sizes": [16, 16],
        "length": 100,
        "batch": 4,
        "precision": {"dtype": "float32", "matmul": "highest"},
        "method": "exact",
        "summary": summary,
    }
    env = {
        "gradscope": "0.1.0",
        "jax": "0.0",
        "backend": "cpu",
        "device": "cpu",
        "x64": False,
        "dtype": "float32",
        "matmul_precision": "highest",
        "platform": "Linux",
        "python": "3.11",
    }
    return {
        "schema": "gradscope.report/1",
        "gradscope_version": "0.1.0",
        "created": "2025-01-01T00:00:00+00:00",
        "command": "analyse",
        "config": {},
        "environment": env,
        "analyses": [analysis],
    }


def _probe(args, cwd: Path) -> tuple[int, bool, bool]:
    env = dict(os.environ, GRADSCOPE_CACHE_DIR=str(cwd / "cache"))
    res = subprocess.run(
        [sys.executable, "-c", PROBE, *map(str, args)], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )
    line = [x for x in res.stderr.splitlines() if x.startswith("PROBE ")]
    assert line, res.stderr
    _, code, jax, mpl = line[-1].split()
    return int(code), jax == "True", mpl == "True"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A hand-written report, a baseline recorded from it, and a small PyTorch-named GRU weight file."""
    import numpy as np

    tmp = tmp_path_factory.mktemp("listings")
    (tmp / "report.json").write_text(json.dumps(_minimal_report()))
    n, m = 5, 3
    np.savez(
        tmp / "gru.npz",
        weight_ih_l0=np.zeros((3 * n, m), np.float32),
        weight_hh_l0=np.zeros((3 * n, n), np.float32),
        bias_ih_l0=np.zeros(3 * n, np.float32),
        bias_hh_l0=np.zeros(3 * n, np.float32),
    )
    return tmp


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["cells"],
        ["cells", "--json"],
        ["check", "--help"],
        ["baseline", "report.json", "--output", "b.json", "--update"],
        ["check", "report.json", "--baseline", "b.json"],
        ["analyse", "--help"],
        ["compare", "--help"],
        ["inspect", "gru.npz"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_listings_do_not_import_jax(files, args):
    if args[0] == "check" and args[1] == "report.json" and not (files / "b.json").exists():
        assert _probe(["baseline", "report.json", "--output", "b.json"], files)[0] == 0
    code, jax, mpl = _probe(args, files)
    assert code == 0
    assert not jax, f"gradscope {' '.join(args)} imported JAX"
    assert not mpl, f"gradscope {' '.join(args)} imported matplotlib"


@pytest.mark.slow
def test_parallel_figures_are_the_serial_ones(tmp_path):
    """Figures drawn by 2 spawned workers equal, byte for byte, those drawn in-process; the folder written
    through the structural check passes the full JSON Schema when read back."""
    from tests._report_data import full_report

    report = full_report()
    serial = write_report(tmp_path / "serial", report, workers=1)
    parallel = write_report(tmp_path / "parallel", report, workers=2)
    names = sorted(p.name for p in (serial / "figures").iterdir())
    assert len(names) >= 4 and names == sorted(p.name for p in (parallel / "figures").iterdir())
    for name in names:
        assert (serial / "figures" / name).read_bytes() == (parallel / "figures" / name).read_bytes(), name
    assert (serial / "report.json").read_bytes() == (parallel / "report.json").read_bytes()
    assert load_report(parallel)["analyses"] == json.loads((serial / "report.json").read_text())["analyses"]


def test_write_refuses_a_malformed_report_without_the_full_schema_walk(tmp_path):
    report = _minimal_report()
    for breakage, where in (
        (lambda r: r.pop("environment"), "environment"),
        (lambda r: r.update(analyses=[]), "analyses"),
        (lambda r: r["analyses"].append(dict(r["analyses"][0])), "duplicate"),
        (lambda r: r.update(schema="gradscope.report/0"), "schema"),
    ):
        broken = json.loads(json.dumps(report))
        breakage(broken)
        with pytest.raises(ReportFormatError, match=where):
            write_report(tmp_path / "out", broken)
        assert not (tmp_path / "out").exists()
