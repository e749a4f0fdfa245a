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


def publish_folder(tmp: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Move the finished folder ``tmp`` into place as ``out``. An existing ``out`` is moved aside first and
    deleted only once the new one is in place (restored if the second rename fails)."""
    tmp, out = Path(tmp), Path(out)
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out
