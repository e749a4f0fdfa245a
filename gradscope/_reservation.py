"""Reserving an output folder: of two runs started together into the same folder, exactly one goes on.

The reservation of ``OUT`` is the hidden file ``.OUT.lock`` next to it, with an exclusive ``flock`` on it.
The lock belongs to the kernel: it ends with its process, so a killed run never blocks the next one (the
file only holds the owner's pid, for the message). Where ``flock`` is missing (Windows) the file is created
with ``O_EXCL`` and a leftover whose pid is no longer alive is taken over. `gradscope._atomic` takes the
reservation when it checks a folder (`check_output_folder`) and gives it back when it publishes one.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
from pathlib import Path

#: this process's reservations: lock path -> open file descriptor holding the lock
_HELD: dict[str, int] = {}


def _lock_path(out: Path) -> Path:
    out = Path(os.path.abspath(out))
    return out.with_name(f".{out.name}.lock")


def _held(out: Path) -> bool:
    return bool(Path(os.path.abspath(out)).name) and str(_lock_path(out)) in _HELD


def reserve_output(out: str | os.PathLike[str]) -> str:
    """Reserve ``out`` for this process; an empty string when done, else why not (another live run has it).

    The reservation is the hidden file ``.OUT.lock`` next to ``out`` with an exclusive ``flock`` on it (the
    lock is the kernel's: it ends with the process, so a killed run never blocks the next one; the file
    holds the owner's pid for the message). Where ``flock`` is missing, the file is created with
    ``O_EXCL`` and a leftover whose pid is no longer alive is taken over. Taking it twice in one process is
    a no-op; `release_output` (called by `publish_folder`) or the process's exit gives it back.
    """
    if not Path(os.path.abspath(out)).name:
        return ""  # the root folder: refused by the caller
    lock = _lock_path(Path(out))
    if str(lock) in _HELD:
        return ""
    if not lock.parent.is_dir():
        return ""  # nothing to reserve in: the caller refuses the missing parent folder
    try:
        fd = _take_flock(lock) if _fcntl() is not None else _take_excl(lock)
    except OSError as e:  # read-only folder and the like: the write itself will name the problem
        if e.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            return ""
        raise
    if fd is None:
        return (
            f"another gradscope run{_owner(lock)} is writing {out}: wait for it to finish, or choose another "
            f"folder (if no such run is alive, delete {lock})"
        )
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _HELD[str(lock)] = fd
    return ""


def release_output(out: str | os.PathLike[str]) -> None:
    """Give back this process's reservation of ``out`` (nothing when it holds none)."""
    if Path(os.path.abspath(out)).name:
        _release(str(_lock_path(Path(out))))


def _release(lock: str) -> None:
    fd = _HELD.pop(lock, None)
    if fd is None:
        return
    with contextlib.suppress(OSError):
        os.unlink(lock)  # before unlocking: a waiter that opened this file re-checks the path (_take_flock)
    with contextlib.suppress(OSError):
        os.close(fd)


@atexit.register
def _release_all() -> None:
    for lock in list(_HELD):
        _release(lock)


def _fcntl():
    try:
        import fcntl
    except ImportError:  # Windows
        return None
    return fcntl


def _take_flock(lock: Path) -> int | None:
    fcntl = _fcntl()
    assert fcntl is not None
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        try:  # the holder may have unlinked the file between our open and our lock: then lock the new one
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _take_excl(lock: Path) -> int | None:
    for _ in range(2):
        try:
            return os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pid = _pid_in(lock)
            if pid is not None and _alive(pid):
                return None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)  # a dead run's reservation
    return None


def _pid_in(lock: Path) -> int | None:
    try:
        return int(lock.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _owner(lock: Path) -> str:
    pid = _pid_in(lock)
    return f" (pid {pid})" if pid is not None else ""
