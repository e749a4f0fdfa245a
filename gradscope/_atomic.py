"""The one atomic writer: files and folders appear whole or not at all.

A file is written to a temporary sibling, flushed and fsynced, then moved into place with ``os.replace``
(atomic on POSIX); the temporary is removed on any failure. A folder is assembled in a hidden temporary
sibling and published with `publish_folder`; `temp_folder` removes it whatever happens.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from gradscope._reservation import _held, release_output, reserve_output

__all__ = [
    "TargetExistsError",
    "check_output_folder",
    "clean_leftovers",
    "publish_folder",
    "recover",
    "release_output",
    "reserve_output",
    "temp_folder",
    "write_bytes",
    "write_json",
    "write_text",
    "write_with",
]


def _write(path: str | os.PathLike[str], fill: Callable[[BinaryIO], None], sync: bool = True) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fill(fh)
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_bytes(path: str | os.PathLike[str], data: bytes, *, sync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (temporary sibling, fsync, ``os.replace``). ``sync=False`` skips
    the fsync: for files in a temporary folder that only this run reads (whole, by the rename), where
    surviving a power cut does not matter."""

    def fill(fh: BinaryIO) -> None:
        fh.write(data)

    return _write(path, fill, sync)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` (``\\n`` line ends) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2) -> Path:
    """Write ``obj`` as strict JSON (`gradscope._json.dumps`) to ``path`` atomically."""
    from gradscope._json import dumps

    return write_text(path, dumps(obj, indent=indent) + "\n")


def write_with(path: str | os.PathLike[str], fill: Callable[[BinaryIO], None]) -> Path:
    """Call ``fill(binary file)`` on a temporary sibling, then move it into place atomically."""
    return _write(path, fill)


@contextlib.contextmanager
def temp_folder(out: str | os.PathLike[str]) -> Iterator[Path]:
    """A fresh hidden sibling folder of ``out`` (``.OUT.tmp-XXXXXXXX``), removed on exit whatever happens."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_output_folder(
    out: str | os.PathLike[str],
    *,
    force: bool,
    markers: tuple[str, ...] = ("report.json",),
    reserve: bool = True,
) -> str:
    """Why ``out`` must not be written (an empty string when it may), checked before any work is done.

    * another live process holds ``out``'s reservation (`reserve_output`; with ``reserve``, this one takes it,
      so of two runs started together into the same folder exactly one goes on);
    * a file, not a folder;
    * a non-empty folder without ``force``;
    * with ``force``, a folder holding none of ``markers`` (files gradscope writes): ``--force`` replaces
      gradscope's output, it never deletes a folder of the user's own files;
    * the current folder, one of its parents or the home folder, whatever ``force`` says.

    Under the reservation, what dead runs left is dealt with first: a folder lost by a kill in the middle of
    an earlier replacement is restored (`recover`), and their hidden temporary folders are removed
    (`clean_leftovers`). When ``out`` is refused the reservation is given back.
    """
    out = Path(out)
    if reserve:
        busy = reserve_output(out)
        if busy:
            return busy
    why = _why_not(out, force=force, markers=markers)
    if why and reserve:
        release_output(out)
    return why


def _why_not(out: Path, *, force: bool, markers: tuple[str, ...]) -> str:
    if _held(out):  # only the reservation's holder may touch what earlier runs left
        recover(out)
        clean_leftovers(out)
    if out.exists() and not out.is_dir():
        return f"{out} exists and is not a folder: choose another path"
    resolved, cwd = out.resolve(), Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents or resolved == Path.home().resolve():  # even when empty
        return (
            f"{out} is the current folder, one of its parents or the home folder: gradscope writes into a folder "
            "of its own; choose a new folder name, e.g. gradscope-report"
        )
    if not out.is_dir() or not any(out.iterdir()):
        return ""
    if not force:
        return f"{out} exists and is not empty: pass --force (force=True) to replace it, or choose another folder"
    if not any((out / m).exists() for m in markers):
        return (
            f"{out} was not written by gradscope (it has no {' or '.join(markers)}): --force only replaces "
            "gradscope's own output; choose another folder or remove this one yourself"
        )
    return ""


class TargetExistsError(FileExistsError):
    """``publish_folder(..., replace=False)`` found ``out`` already there (another writer got there first)."""


_AT_FDCWD, _RENAME_NOREPLACE, _RENAME_EXCHANGE = -100, 1, 2


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """Linux's renameat2(2): True when done, False when this system cannot (then the caller falls back).

    ``RENAME_EXCHANGE`` swaps two paths in one step, so a reader never sees ``dst`` missing;
    ``RENAME_NOREPLACE`` fails with EEXIST instead of replacing, so two writers cannot both "create" ``dst``.
    """
    import ctypes
    import errno
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):  # no glibc >= 2.28 (e.g. musl)
        return False
    if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # file system without the flag
        return False
    if err == errno.EEXIST and flags == _RENAME_NOREPLACE:
        raise TargetExistsError(errno.EEXIST, "exists", str(dst))
    raise OSError(err, os.strerror(err), str(dst))


def publish_folder(tmp: str | os.PathLike[str], out: str | os.PathLike[str], *, replace: bool = True) -> Path:
    """Move the finished folder ``tmp`` into place as ``out``, never leaving a moment without a report.

    * ``out`` absent: one rename. With ``replace=False`` a folder that appeared at ``out`` meanwhile (another
      run writing the same folder) is not replaced: `TargetExistsError`, and ``tmp`` is left to the caller.
    * ``out`` present (``replace=True``): on Linux the two folders are swapped in one atomic step
      (renameat2 ``RENAME_EXCHANGE``), then the old one, now at ``tmp``, is deleted; a kill at any moment leaves
      either the old or the new report at ``out`` (at worst a hidden leftover sibling). Elsewhere the old
      folder is renamed aside first and restored if the second rename fails; `recover` puts it back after a
      kill in between.

    This process's reservation of ``out`` (`reserve_output`) is given back afterwards, whatever happens.
    """
    tmp, out = Path(tmp), Path(out)
    try:
        _publish(tmp, out, replace)
        _hook("published")
        return out
    finally:
        release_output(out)


def _publish(tmp: Path, out: Path, replace: bool) -> Path:
    if not out.exists() and not out.is_symlink():
        if not replace:
            if _renameat2(tmp, out, _RENAME_NOREPLACE):
                return out
            if out.exists():  # the fallback's check-then-rename: racy only where renameat2 is missing
                raise TargetExistsError(17, "exists", str(out))
        os.rename(tmp, out)
        return out
    if not replace:
        raise TargetExistsError(17, "exists", str(out))
    if out.is_dir() and not out.is_symlink() and _renameat2(tmp, out, _RENAME_EXCHANGE):
        _hook("exchanged")
        shutil.rmtree(tmp, ignore_errors=True)  # the old report, swapped out
        return out
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(out, old)
    _hook("moved-aside")
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)
        raise
    _hook("replaced")
    shutil.rmtree(old, ignore_errors=True)
    return out


def _hook(point: str) -> None:
    """Fault injection for the reliability tests: ``GRADSCOPE_TEST_KILL_AT=<point>`` makes the process SIGKILL
    itself at that point of `publish_folder` (``exchanged``, ``moved-aside``, ``replaced``, ``published``)."""
    if os.environ.get("GRADSCOPE_TEST_KILL_AT") == point:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def recover(out: str | os.PathLike[str]) -> Path | None:
    """After a kill between the two renames of `publish_folder`'s fallback, put the old folder back.

    When ``out`` is missing and hidden ``.OUT.old-*`` siblings exist, the newest is renamed to ``out``;
    returns it (None when there was nothing to recover).
    """
    out = Path(out)
    if out.exists() or not out.parent.is_dir():
        return None
    olds = sorted(out.parent.glob(f".{glob.escape(out.name)}.old-*"), key=lambda p: p.stat().st_mtime)
    if not olds:
        return None
    os.replace(olds[-1], out)
    return out


def clean_leftovers(out: str | os.PathLike[str]) -> list[Path]:
    """Remove what killed runs left next to ``out``: hidden ``.OUT.tmp-*`` folders being assembled, and
    ``.OUT.old-*`` folders once ``out`` itself is there (`recover` first puts a lost one back).

    Call it only while holding ``out``'s reservation (`reserve_output`): then no live gradscope run is
    writing these. Returns what was removed.
    """
    out = Path(out)
    if not out.parent.is_dir():
        return []
    pattern = [f".{glob.escape(out.name)}.tmp-*"] + ([f".{glob.escape(out.name)}.old-*"] if out.exists() else [])
    gone = []
    for pat in pattern:
        for p in out.parent.glob(pat):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()
            gone.append(p)
    return gone
