"""gradscope._atomic: folders are published whole, a concurrent writer is never silently replaced, and a
kill between the fallback's two renames loses nothing (`recover`)."""

import os
import sys

import pytest

from gradscope import _atomic


def _folder(path, text):
    path.mkdir()
    (path / "report.json").write_text(text)
    return path


def test_publish_into_a_new_place(tmp_path):
    tmp = _folder(tmp_path / ".tmp", "new")
    out = _atomic.publish_folder(tmp, tmp_path / "out", replace=False)
    assert (out / "report.json").read_text() == "new" and not tmp.exists()


@pytest.mark.parametrize("native", [True, False], ids=["renameat2", "fallback"])
def test_a_folder_that_appeared_meanwhile_is_not_replaced(tmp_path, monkeypatch, native):
    if not native:
        monkeypatch.setattr(_atomic, "_renameat2", lambda *a: False)
    elif not sys.platform.startswith("linux"):
        pytest.skip("renameat2 is Linux's")
    other = _folder(tmp_path / "out", "the other run's report")
    tmp = _folder(tmp_path / ".tmp", "mine")
    with pytest.raises(_atomic.TargetExistsError):
        _atomic.publish_folder(tmp, tmp_path / "out", replace=False)
    assert (other / "report.json").read_text() == "the other run's report"
    assert (tmp / "report.json").read_text() == "mine"  # left to the caller, who reports it


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 is Linux's")
def test_replacement_is_one_atomic_swap_on_linux(tmp_path, monkeypatch):
    """With RENAME_EXCHANGE there is no moment without OUT: os.replace/os.rename are never called."""
    out = _folder(tmp_path / "out", "old")
    tmp = _folder(tmp_path / ".tmp", "new")

    def forbidden(*a):
        raise AssertionError("a plain rename was used: OUT would be missing for a moment")

    monkeypatch.setattr(_atomic.os, "replace", forbidden)
    monkeypatch.setattr(_atomic.os, "rename", forbidden)
    _atomic.publish_folder(tmp, out)
    assert (out / "report.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the old report, swapped to tmp, is gone


def test_a_kill_between_the_fallback_renames_is_recovered(tmp_path, monkeypatch):
    """Fault injection: the process dies after moving OUT aside and before moving the new folder in."""
    monkeypatch.setattr(_atomic, "_renameat2", lambda *a: False)
    out = _folder(tmp_path / "out", "old")
    tmp = _folder(tmp_path / ".tmp", "new")
    real, calls = os.replace, []

    def killed(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise SystemExit("SIGKILL")  # nothing after this line runs in a killed process...
        return real(src, dst)

    monkeypatch.setattr(_atomic.os, "replace", killed)
    with pytest.raises(SystemExit):
        _atomic.publish_folder(tmp, out)
    monkeypatch.undo()
    # ...so undo what the except-clause restored, to leave the state a real kill leaves: OUT moved aside
    os.replace(out, tmp_path / f".out.old-{'dead'}")
    assert not out.exists()
    assert _atomic.recover(out) == out
    assert (out / "report.json").read_text() == "old"
    assert _atomic.recover(out) is None  # nothing more to do
