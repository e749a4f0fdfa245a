"""Two runs into one output folder: the folder is reserved when it is checked, so exactly one run writes it and
the other exits 2 with one line; nothing is lost. A dead run's reservation never blocks the next one, and what
dead runs left (hidden temporary folders) is cleaned up by the next run."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gradscope import _atomic

ROOT = Path(__file__).resolve().parents[1]

# one writer: check (and reserve) OUT, say so, wait for the other writer to check too, then publish a report
WRITER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from gradscope import _atomic
    out, name, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    why = _atomic.check_output_folder(out, force=False)
    Path(str(go) + "." + name).write_text("checked")
    if why:
        sys.stderr.write(f"error: --out={str(out)!r} is not allowed: {why}\\n")
        sys.exit(2)
    while not go.exists():
        time.sleep(0.01)
    with _atomic.temp_folder(out) as tmp:
        (tmp / "report").mkdir()
        (tmp / "report" / "report.json").write_text(name)
        _atomic.publish_folder(tmp / "report", out, replace=False)
    """
)


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _wait_for(paths, timeout=60.0):
    t0 = time.monotonic()
    while not all(p.exists() for p in paths):
        assert time.monotonic() - t0 < timeout, f"writers did not check in: {paths}"
        time.sleep(0.01)


def test_two_writers_into_one_folder_exactly_one_report(tmp_path):
    out, go = tmp_path / "out", tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(out), name, str(go)],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    _wait_for([Path(f"{go}.a"), Path(f"{go}.b")])  # both have checked OUT before either publishes
    go.write_text("go")
    results = [(p.wait(timeout=60), *p.communicate()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 2], results
    (loser,) = [r for r in results if r[0] == 2]
    (winner,) = [n for n, r in zip("ab", results) if r[0] == 0]
    lines = loser[2].strip().splitlines()
    assert len(lines) == 1 and "another gradscope run" in lines[0] and "Traceback" not in loser[2]
    assert (out / "report.json").read_text() == winner  # the winner's report is there, whole
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []  # no leftovers


def test_a_dead_runs_reservation_does_not_block_the_next_run(tmp_path):
    out = tmp_path / "out"
    code = "import os, signal, sys; from gradscope import _atomic; "
    code += "assert _atomic.reserve_output(sys.argv[1]) == ''; os.kill(os.getpid(), signal.SIGKILL)"
    res = subprocess.run([sys.executable, "-c", code, str(out)], env=_env(), capture_output=True, text=True)
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert (tmp_path / ".out.lock").exists()  # the killed run's file is still there...
    assert _atomic.check_output_folder(out, force=False) == ""  # ...but its lock died with it
    _atomic.release_output(out)
    assert not (tmp_path / ".out.lock").exists()


def test_the_same_process_may_check_twice_and_a_refusal_gives_the_folder_back(tmp_path):
    out = tmp_path / "out"
    assert _atomic.check_output_folder(out, force=False) == ""
    assert _atomic.check_output_folder(out, force=False) == ""  # the CLI checks, then write_report checks again
    _atomic.release_output(out)
    out.mkdir()
    (out / "mine.txt").write_text("user file")
    assert "not empty" in _atomic.check_output_folder(out, force=False)
    assert not (tmp_path / ".out.lock").exists()  # refused: not held any more


def test_leftovers_of_dead_runs_are_removed_by_the_next_run(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text("old")
    dead_tmp = tmp_path / ".out.tmp-deadbeef"
    dead_old = tmp_path / ".out.old-deadbeef"
    for d in (dead_tmp, dead_old):
        d.mkdir()
        (d / "report.json").write_text("leftover")
    other = tmp_path / ".other.tmp-deadbeef"  # another folder's: not ours to remove
    other.mkdir()
    assert _atomic.check_output_folder(out, force=True) == ""
    assert not dead_tmp.exists() and not dead_old.exists() and other.exists()
    assert (out / "report.json").read_text() == "old"
    _atomic.release_output(out)


@pytest.mark.slow
def test_two_cli_runs_into_the_same_out(tmp_path):
    """The user's view: `gradscope analyse … --out SAME` twice at once gives one report and one clean refusal
    (or, when the first has already finished, the second refuses the non-empty folder): never two exit 0s."""
    out = tmp_path / "same"
    cmd = [sys.executable, "-m", "gradscope", "analyse", "--cell", "rnn-tanh", "--hidden", "4", "--length", "8"]
    cmd += ["--batch", "1", "--out", str(out), "-q"]
    env = {**_env(), "GRADSCOPE_CACHE_DIR": "off"}
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in "ab"]
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
    assert sorted(r[0] for r in results) == [0, 2], results
    (err,) = [e for c, e in results if c == 2]
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: --out="), err
    assert (out / "report.json").is_file()


def test_the_current_folder_is_refused_even_when_empty(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "current folder" in _atomic.check_output_folder(".", force=True)
    assert "current folder" in _atomic.check_output_folder(tmp_path, force=False)
    assert not list(tmp_path.parent.glob(f".{tmp_path.name}.lock"))  # refused: the reservation is given back
