"""JAX's persistent compilation cache for the command line: compiled programs survive between runs.

Most of a short ``gradscope`` command is XLA compilation, and the programs are the same from one run to the
next (same cells, sizes and JAX version). The CLI therefore points JAX's persistent compilation cache at

    $GRADSCOPE_CACHE_DIR                  when set (``off``, ``none``, ``0`` or empty: no cache)
    $XDG_CACHE_HOME/gradscope/jax-<ver>   else, with ~/.cache for an unset XDG_CACHE_HOME
                                          (~/Library/Caches on macOS)

``--no-cache`` turns it off for one command. JAX keys each entry by the program, the backend, the
compile options and the jax/jaxlib versions; the folder name adds the JAX version, so an upgrade starts
an empty folder instead of growing the old one. The cache is bounded (`MAX_BYTES`, least recently used
entries evicted by JAX). An unreadable or corrupt entry is a cache miss: JAX warns and compiles again
(``jax_raise_persistent_cache_errors`` stays off). Results are identical with and without the cache: an
entry is the compiled executable of the same program. Beside the executables, ``programs/`` keeps the traced
stage programs (`gradscope.engine._exported`: a warm command skips tracing and lowering too; at most
`gradscope.engine._exported.MAX_FILES` of them, the least recently used removed first).

The library itself never turns the cache on: only the CLI does, so a user's own process keeps its settings.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

ENV = "GRADSCOPE_CACHE_DIR"
EXPORT_ENV = "GRADSCOPE_EXPORT_DIR"  # = gradscope.engine._exported.ENV (not imported: this module stays JAX-free)
OFF = ("off", "none", "0", "")
#: the bound on the cache folder, in bytes (JAX evicts the least recently used entries beyond it)
MAX_BYTES = 1 << 30


def _jax_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("jax")
    except PackageNotFoundError:  # pragma: no cover - jax is a dependency
        return "unknown"


def cache_dir(env: Mapping[str, str] = os.environ) -> Path | None:
    """The cache folder for this environment, or None when the user turned the cache off."""
    value = env.get(ENV)
    if value is not None:
        return None if value.strip().lower() in OFF else Path(value).expanduser()
    if env.get("XDG_CACHE_HOME"):
        base = Path(env["XDG_CACHE_HOME"]).expanduser()
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path.home() / ".cache"
    return base / "gradscope" / f"jax-{_jax_version()}"


def enable(path: Path | None) -> Path | None:
    """Point JAX's persistent compilation cache at ``path`` (None: leave it off); returns the folder used.

    A folder that cannot be created or written is skipped (returns None): a read-only home must not stop
    a diagnosis. Before JAX is imported the settings go through its environment variables, so that
    importing JAX here is not needed (``gradscope check`` stays JAX-free); after, through ``jax.config``.
    """
    if path is None:
        os.environ.pop(EXPORT_ENV, None)
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError:
        os.environ.pop(EXPORT_ENV, None)
        return None
    # the traced programs beside the executables (gradscope.engine._exported): read where the engine runs
    os.environ[EXPORT_ENV] = str(path / "programs")
    settings = {
        "jax_compilation_cache_dir": str(path),
        # JAX's default caches only programs that took > 1 s to compile; most of ours take 0.05-1 s
        "jax_persistent_cache_min_compile_time_secs": 0.0,
        "jax_persistent_cache_min_entry_size_bytes": 0,
        "jax_compilation_cache_max_size": MAX_BYTES,
    }
    if "jax" in sys.modules:
        import jax

        for name, value in settings.items():
            jax.config.update(name, value)
    else:
        for name, value in settings.items():
            os.environ[name.upper()] = str(value)
    return path
