"""The one atomic writer: files and folders appear whole or not at all.

A file is written to a temporary sibling, flushed and fsynced, then moved into place with ``os.replace``
(atomic on POSIX); the temporary is removed on any failure. A folder is assembled in a hidden temporary
sibling and published with `publish_folder`; `temp_folder` removes it whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO


def _write(path: str | os.PathLike[str], fill: Callable[[BinaryIO], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fill(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary sibling, fsync, ``os.replace``)."""

    def fill(fh: BinaryIO) -> None:
        fh.write(data)

    return _write(path, fill)


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
    out: str | os.PathLike[str], *, force: bool, markers: tuple[str, ...] = ("report.json",)
) -> str:
    """Why ``out`` must not be written (an empty string when it may), checked before any work is done.

    * a file, not a folder;
    * a non-empty folder without ``force``;
    * with ``force``, a folder holding none of ``markers`` (files gradscope writes): ``--force`` replaces
      gradscope's output, it never deletes a folder of the user's own files;
    * the current folder, one of its parents or the home folder, whatever ``force`` says.

    A folder lost by a kill in the middle of an earlier replacement is restored first (`recover`).
    """
    out = Path(out)
    recover(out)
    if out.exists() and not out.is_dir():
        return f"{out} exists and is not a folder: choose another path"
    if not out.is_dir() or not any(out.iterdir()):
        return ""
    resolved, cwd = out.resolve(), Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents or resolved == Path.home().resolve():
        return (
            f"{out} is the current folder, one of its parents or the home folder: gradscope writes into a folder "
            "of its own; choose a new folder name, e.g. gradscope-report"
        )
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
    """
    tmp, out = Path(tmp), Path(out)
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
        shutil.rmtree(tmp, ignore_errors=True)  # the old report, swapped out
        return out
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return out


def recover(out: str | os.PathLike[str]) -> Path | None:
    """After a kill between the two renames of `publish_folder`'s fallback, put the old folder back.

    When ``out`` is missing and hidden ``.OUT.old-*`` siblings exist, the newest is renamed to ``out``;
    returns it (None when there was nothing to recover).
    """
    out = Path(out)
    if out.exists() or not out.parent.is_dir():
        return None
    olds = sorted(out.parent.glob(f".{out.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if not olds:
        return None
    os.replace(olds[-1], out)
    return out
