"""The real entry point, `python -m gradscope`, in a subprocess: what a user's shell sees (stdout holds only
JSON with --json, errors are one line on stderr with exit code 2 and no traceback).

Tiny sizes; a closed form checks the numbers (linear RNN with W_hh = g·I: log10 ‖∂h_T/∂h_0‖₂ = T·log10 g).
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def gradscope(*args, cwd=None):
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "MPLBACKEND": "Agg",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("GRADSCOPE_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "gradscope", *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd or ROOT,
        timeout=300,
    )


def test_cells_json():
    p = gradscope("cells", "--json")
    assert p.returncode == 0, p.stderr
    names = [r["name"] for r in json.loads(p.stdout)]
    assert {"rnn-tanh", "lstm", "gru", "indrnn", "irnn"} <= set(names)


@pytest.mark.slow
def test_analyse_compare_report(tmp_path):
    p = gradscope(
        "analyse",
        "--cell",
        "rnn-linear",
        "--init",
        "identity",
        "--gain",
        "0.5",
        "--hidden",
        "4",
        "--length",
        "8",
        "--batch",
        "2",
        "--out",
        tmp_path / "a",
        "--json",
    )
    assert p.returncode == 0, p.stderr
    (a,) = json.loads(p.stdout)["analyses"]
    assert a["summary"]["log10_norm_max_lag"] == pytest.approx(8 * math.log10(0.5), abs=1e-5)
    assert (tmp_path / "a" / "report.html").exists()

    p = gradscope(
        "compare",
        "--cells",
        "rnn-linear:recurrent_init=identity:gain=0.5,rnn-tanh",
        "--hidden",
        "4",
        "--length",
        "8",
        "--batch",
        "2",
        "--out",
        tmp_path / "c",
        "--quiet",
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout == "" and p.stderr == ""  # --quiet and no --json: nothing at all
    report = json.loads((tmp_path / "c" / "report.json").read_text())
    assert [x["name"] for x in report["analyses"]] == ["rnn-linear-identity-g0.5", "rnn-tanh"]

    (tmp_path / "c" / "summary.md").unlink()
    p = gradscope("report", tmp_path / "c")
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "c" / "summary.md").exists()


@pytest.mark.parametrize(
    "args,needle",
    [
        (["analyse", "--cell", "lstmm", "--out", "x"], "did you mean lstm"),
        (["compare", "--hidden", "-2"], "--hidden"),
        (["report", "no-such-folder"], "does not exist"),
    ],
)
def test_errors_are_one_line_without_traceback(tmp_path, args, needle):
    p = gradscope(*args, cwd=tmp_path)
    assert p.returncode == 2
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_main_job_default_compare_shows_the_documents_ordering(tmp_path):
    """`gradscope compare` with no options (the README's main job): the tanh RNN's long-lag gradient is
    orders of magnitude below the LSTM-with-forget-bias-1's, IndRNN and IRNN keep theirs, and the report
    folder is complete."""
    p = gradscope("compare", "--json", "--quiet", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    out = {a["name"]: a["summary"] for a in json.loads(p.stdout)["analyses"]}
    assert set(out) == {"rnn-tanh", "lstm-fb0", "lstm-fb1", "gru", "indrnn", "irnn", "ln-lstm"}
    far = {k: s["log10_norm_max_lag"] for k, s in out.items()}
    assert far["lstm-fb1"] - far["rnn-tanh"] > 10  # ten orders of magnitude at least
    assert far["lstm-fb1"] > far["lstm-fb0"]  # the forget bias opens the highway
    for keeps in ("indrnn", "irnn"):
        assert out[keeps]["verdict"] == "stable" and out[keeps]["horizon"] == 200, (keeps, out[keeps])
    assert out["rnn-tanh"]["verdict"] == "vanishing"
    folder = tmp_path / "gradscope-report"
    assert {"report.json", "report.html", "summary.md", "figures"} <= {f.name for f in folder.iterdir()}
