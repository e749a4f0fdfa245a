"""Fault injection in the publish window: a run SIGKILLed at each point inside `gradscope._atomic.publish_folder`
(``GRADSCOPE_TEST_KILL_AT``), with Linux's atomic exchange and with the portable two-rename fallback. The old
report is never lost: after the kill ``OUT`` holds the old or the new report whole (or, in the fallback's
window, the next run's check puts the old one back), and the next run removes every leftover."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gradscope import _atomic

ROOT = Path(__file__).resolve().parents[1]

RUN = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from gradscope import _atomic
    out, text, native = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "native"
    if not native:
        _atomic._renameat2 = lambda *a: False
    assert _atomic.check_output_folder(out, force=True) == ""
    with _atomic.temp_folder(out) as tmp:
        (tmp / "report").mkdir()
        (tmp / "report" / "report.json").write_text(text)
        _atomic.publish_folder(tmp / "report", out)
    """
)


def _run(out, text, native, kill_at=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("GRADSCOPE_TEST_KILL_AT", None)
    if kill_at:
        env["GRADSCOPE_TEST_KILL_AT"] = kill_at
    mode = "native" if native else "fallback"
    return subprocess.run([sys.executable, "-c", RUN, str(out), text, mode], env=env, capture_output=True, text=True)


CASES = [
    (True, "exchanged"),
    (True, "published"),
    (False, "moved-aside"),
    (False, "replaced"),
    (False, "published"),
]


@pytest.mark.parametrize(("native", "point"), CASES, ids=[f"{'native' if n else 'fallback'}-{p}" for n, p in CASES])
def test_a_kill_inside_publish_never_loses_the_old_report(tmp_path, native, point):
    if native and not sys.platform.startswith("linux"):
        pytest.skip("renameat2 is Linux's")
    out = tmp_path / "out"
    assert _run(out, "old", native).returncode == 0
    res = _run(out, "new", native, kill_at=point)
    assert res.returncode == -signal.SIGKILL, (res.returncode, res.stderr)  # the hook really killed it there
    if point == "moved-aside":  # the one moment of the fallback without OUT: the old report is aside, whole
        assert not out.exists() and len(list(tmp_path.glob(".out.old-*"))) == 1
    else:
        assert (out / "report.json").read_text() in ("old", "new")
    # the next run recovers and cleans up under its reservation
    assert _atomic.check_output_folder(out, force=True) == ""
    _atomic.release_output(out)
    expected = {"exchanged": "new", "published": "new", "moved-aside": "old", "replaced": "new"}[point]
    assert (out / "report.json").read_text() == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no .out.tmp-*, .out.old-*, .out.lock


def test_without_a_kill_nothing_is_left_behind(tmp_path):
    out = tmp_path / "out"
    for text in ("old", "new"):
        assert _run(out, text, True).returncode == 0
    assert (out / "report.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
