"""Traced stage programs kept between commands: the CLI's second cache, beside XLA's compilation cache.

JAX's persistent compilation cache (`gradscope._cache`) keeps the compiled executables, but a warm command
still traces every stage to a jaxpr and lowers it to StableHLO, only to learn the hash that finds the
executable; for the small models a command usually analyses that is most of a warm analysis. A
`cached_program` keeps the lowered program itself, serialised with `jax.export` (Frostig et al., "JAX:
compiling machine learning programs via high-level tracing", SysML 2018; `jax.export` is its stable
serialisation of StableHLO): a warm call reads the file, deserialises it and calls it, with no tracing;
XLA's cache then supplies the executable. Nothing changes where the cache is off: the library's own
default, and every process that is not the CLI (`GRADSCOPE_EXPORT_DIR` is set by `gradscope._cache.enable`
only).

A program is stored under a key that covers everything that shapes it: the function's module and name,
the shapes and dtypes of its arrays, its static options, the model's pytree structure (static fields
included) for programs that take one, the JAX and jaxlib versions, the backend, the x64 and matmul-
precision settings, and a digest of gradscope's own source files (a changed engine or cell is a new key,
even without a version bump). Models whose pytree holds a class from outside gradscope (a user's cell,
whose code the digest cannot cover) are never stored. An unreadable, truncated or foreign file is a miss:
the program is traced again and the file rewritten. Results are those of the same program: a test runs a
command cold and warm and compares the report.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.core import Tracer

from gradscope._xla import jit

ENV = "GRADSCOPE_EXPORT_DIR"
#: the most stored programs kept (~25-100 kB each); beyond it the least recently used are removed
MAX_FILES = 2000
_FAILED = object()  # a program jax.export cannot serialise: use plain jit for it from then on


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """sha256 of every ``.py`` file of the installed gradscope package (path and bytes), computed once."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _context() -> tuple:
    from importlib.metadata import version

    from gradscope._precision import matmul_precision

    return (
        jax.__version__,
        version("jaxlib"),
        jax.default_backend(),
        bool(jax.config.read("jax_enable_x64")),
        matmul_precision(),  # what the stages' matmuls are traced with (gradscope._precision)
        source_digest(),
    )


def _storable(treedef: Any) -> bool:
    """Whether a program taking arguments of structure ``treedef`` may be stored: every node a standard
    container or a class defined in gradscope, and the static fields written out in full (no ``...`` of a
    long array, no ``<object at 0x…>``), so that the structure's text identifies it."""
    text = str(treedef)
    if "..." in text or " at 0x" in text:
        return False
    stack = [treedef]
    while stack:
        t = stack.pop()
        data = t.node_data()
        if data is not None:
            kind = data[0]
            module = getattr(kind, "__module__", "") or ""
            if kind not in (tuple, list, dict, type(None)) and not module.startswith(("gradscope.", "collections")):
                return False
        stack.extend(t.children())
    return True


def folder() -> Path | None:
    """The folder of stored programs, or None when the CLI has not turned the cache on."""
    value = os.environ.get(ENV)
    return Path(value) if value else None


def cached_program(*, static_argnames: tuple[str, ...] = ()) -> Callable:
    """Decorator: ``fn(*args, **options)`` jitted with ``options`` static (passed by keyword) and gradscope's
    compile options (`gradscope._xla`), and stored (see the module docstring) when the CLI's cache is on.
    The positional arguments may be pytrees (a model, a state tuple): the stored program takes their leaves.
    ``_cache_size`` is the jit's (programs in memory)."""

    def deco(fn: Callable) -> Callable:
        jitted = jit(fn, static_argnames=static_argnames)
        memo: dict[str, Any] = {}

        @functools.wraps(fn)
        def call(*args: Any, **options: Any) -> Any:
            where = folder()
            if where is None:
                return jitted(*args, **options)
            leaves, head = jax.tree.flatten(args)
            concrete = all(isinstance(a, (jax.Array, np.ndarray)) and not isinstance(a, Tracer) for a in leaves)
            if not (concrete and _storable(head)):  # inside a user's jit or vmap: an ordinary nested jit
                return jitted(*args, **options)
            key = _key(fn, leaves, options, head)
            exp = memo.get(f"{where}/{key}")
            if exp is None:
                exp = _load(where, key) or _export(where, key, jitted, head, leaves, options)
                memo[f"{where}/{key}"] = exp
            if exp is _FAILED:
                return jitted(*args, **options)
            # called as it is: the CLI (the only user of stored programs) sets gradscope's compile option as a
            # process flag, since a jit around exp.call would trace every program again (gradscope._xla)
            return exp.call(*leaves)

        call._cache_size = jitted._cache_size  # type: ignore[attr-defined]
        return call

    return deco


def _key(fn: Callable, leaves: list, options: dict, head: Any) -> str:
    avals = tuple((tuple(a.shape), str(a.dtype), bool(getattr(a, "weak_type", False))) for a in leaves)
    text = repr((fn.__module__, fn.__qualname__, avals, sorted(options.items()), str(head), _context()))
    return hashlib.sha256(text.encode()).hexdigest()


def _load(where: Path, key: str) -> Any:
    path = where / f"{key}.jaxexport"
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        exp = jax.export.deserialize(bytearray(data))
    except Exception:  # noqa: BLE001 - a damaged or foreign file is a miss: traced again and rewritten
        return None
    try:
        os.utime(path)  # recently used: the last to be evicted
    except OSError:
        pass
    return exp


def _evict(where: Path) -> None:
    """Keep at most `MAX_FILES` stored programs: remove the least recently used beyond that."""
    try:
        files = sorted(where.glob("*.jaxexport"), key=lambda p: p.stat().st_mtime)
        for path in files[: max(0, len(files) - MAX_FILES)]:
            path.unlink(missing_ok=True)
    except OSError:
        pass  # another command evicting at the same time, or a read-only folder: harmless


def _export(where: Path, key: str, jitted: Callable, head: Any, leaves: list, options: dict) -> Any:
    from gradscope._atomic import write_bytes

    def flat(*arrays: Any) -> Any:
        return jitted(*jax.tree.unflatten(head, arrays), **options)

    try:
        exp = jax.export.export(jax.jit(flat))(*leaves)
        data = exp.serialize()
    except Exception:  # noqa: BLE001 - not serialisable (an unstable custom call, a custom output node): plain jit
        return _FAILED
    try:
        write_bytes(where / f"{key}.jaxexport", bytes(data))
    except OSError:
        return exp  # a read-only cache folder: the program still runs, it is just not kept
    _evict(where)
    return exp
