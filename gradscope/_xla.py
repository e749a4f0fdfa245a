"""How XLA compiles gradscope's programs: process flags and per-program options, in one place.

**The code generator.** XLA's CPU compiler has two code generators for the fused elementwise loops of a
program: the MLIR "fusion emitters" (jaxlib 0.10's default) and the older LLVM-IR loop emitters. gradscope's
stage programs are scans of small matmuls, LAPACK calls and elementwise maps; for them the older emitters
compile a third faster and run as fast. Measured on the reference 2-core CPU (2026-12-06): the 20 stage
programs of the default ``gradscope compare`` compiled in 3.9 s instead of 5.9 s (their runs together 0.48 vs
0.47 s); the engine workloads of benchmarks/bench_engine.py ran in the same time (lag profile 0.133 vs 0.131 s,
triangle 2.23 vs 2.23 s, Lyapunov spectrum 0.336 vs 0.339 s); a cold default compare took 9.0–9.7 s instead of
11.4–12.2 s. The choice changes how loops are generated, not what they compute; the engine's tests (against
jacrev, float64 NumPy and PyTorch) run with it.

* In a library process the option goes to each stage program through `jax.jit`'s ``compiler_options``
  (`jit`, `compiler_options`), so a user's own programs are compiled as they would be without gradscope.
  It is used on the CPU only, only where XLA knows it (tried once on a trivial program: XLA refuses an
  unknown option with an error), and not where ``XLA_FLAGS`` choose the emitters.
* The command line owns its process and sets it as a flag (`EMITTER_FLAG`, `prefer_flag`): the CLI's stage
  programs are stored with `jax.export` (`gradscope.engine._exported`), and wrapping a stored program in a
  jit to pass it options costs a second trace of every program on every warm command (0.9 s for the default
  compare).

**The scheduler** (`SCHEDULER_FLAG`, set by ``import gradscope``): XLA's CPU runtime runs independent operations
concurrently on its thread pool, and jaxlib's batched LAPACK kernels (QR, SVD) wait on work of their own. On
small machines the two can wedge: with jaxlib 0.10 on 2 cores, `gs.lag_profile` of an LSTM with a batch of 128
never returned (gdb: every thread asleep, two of them inside jaxlib's LAPACK kernels; docs/reliability.md,
"Deadlock"). Turning the concurrency scheduler off removes the hang and cost nothing measurable here (lag
profile, n = 64, T = 200, B = 4: 0.311 vs 0.307 s, identical numbers).

Flags must be set before JAX creates its CPU backend, and only on jaxlib versions known to have them (XLA
aborts on an unknown flag); a user's own ``XLA_FLAGS`` setting of one wins. This module imports JAX only
inside the functions that compile: ``import gradscope`` and the listings stay JAX-free.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
_EMITTERS = "xla_cpu_use_fusion_emitters"  # one setting: a process flag for the CLI, an option per program
EMITTER_FLAG = f"--{_EMITTERS}=false"
#: jaxlib versions known to have both flags (prefixes)
_KNOWN = ("0.10.",)


def prefer_flag(flag: str) -> None:
    """Append ``flag`` (``--name=value``) to ``XLA_FLAGS`` unless it names the setting already or this jaxlib
    is not known to have it. Effective only before JAX creates its backend."""
    from importlib import metadata

    flags = os.environ.get("XLA_FLAGS", "")
    if flag.split("=")[0].lstrip("-") in flags:
        return
    try:
        jaxlib_version = metadata.version("jaxlib")
    except metadata.PackageNotFoundError:
        return
    if jaxlib_version.startswith(_KNOWN):
        os.environ["XLA_FLAGS"] = f"{flags} {flag}".strip()


#: the compile options of gradscope's stage programs on the CPU (see the module docstring)
OPTIONS: dict[str, Any] = {_EMITTERS: False}


def _probe(x: Any) -> Any:
    return x + 1


@functools.lru_cache(maxsize=1)
def _accepted() -> tuple[tuple[str, Any], ...]:
    """`OPTIONS` as items, or nothing: on another backend, where ``XLA_FLAGS`` name one of them, or where this
    XLA refuses them (a trivial program compiled once, a few milliseconds)."""
    import jax
    import numpy as np

    flags = os.environ.get("XLA_FLAGS", "")
    if jax.default_backend() != "cpu" or any(name in flags for name in OPTIONS):
        return ()
    try:
        jax.jit(_probe, compiler_options=dict(OPTIONS)).lower(np.float32(0)).compile()
    except Exception:  # noqa: BLE001 - an XLA without the option: compile as JAX does by default
        return ()
    return tuple(OPTIONS.items())


def compiler_options() -> dict[str, Any] | None:
    """The options for a stage program in this process (a fresh dict), or None (JAX's defaults)."""
    items = _accepted()
    return dict(items) if items else None


def traced(tree: Any) -> bool:
    """Whether any leaf of ``tree`` is a tracer (we are inside a user's jit, vmap or grad)."""
    import jax
    from jax.core import Tracer

    return any(isinstance(leaf, Tracer) for leaf in jax.tree.leaves(tree))


#: JAX's refusal of compile options on a jit inside another trace (the start of its message)
_NESTED = "`compiler_options` can only be passed to top-level"


class _LazyJit:
    """``jax.jit(fn, **kw)`` with `compiler_options` where it is the outermost program, and without them inside
    another trace (a user's jit or vmap, `jax.export`), where JAX refuses compile options. Both jits are made
    at the first call: deciding the options needs JAX's backend, which importing gradscope must not start."""

    def __init__(self, fn: Callable, kw: dict[str, Any]) -> None:
        self._fn, self._kw = fn, kw
        self._top: Any = None
        self._nested: Any = None
        functools.update_wrapper(self, fn)

    def _jits(self) -> tuple[Any, Any]:
        if self._top is None:  # two threads may both make them: harmless, the same programs
            import jax

            self._nested = jax.jit(self._fn, **self._kw)
            options = compiler_options()
            self._top = self._nested if options is None else jax.jit(self._fn, compiler_options=options, **self._kw)
        return self._top, self._nested

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        top, nested = self._jits()
        if top is nested or traced((args, kwargs)):
            return nested(*args, **kwargs)
        try:
            return top(*args, **kwargs)
        except ValueError as e:  # concrete arguments, but traced all the same (constants of a user's jit)
            if not str(e).startswith(_NESTED):
                raise
            return nested(*args, **kwargs)

    def lower(self, *args: Any, **kwargs: Any) -> Any:
        return self._jits()[0].lower(*args, **kwargs)

    def _cache_size(self) -> int:
        top, nested = self._jits()
        return top._cache_size() + (0 if top is nested else nested._cache_size())


def jit(fn: Callable, **kw: Any) -> Any:
    """`jax.jit` for a gradscope stage program: ``fn`` compiled with `compiler_options` when it is the outermost
    program (``kw`` as for `jax.jit`: ``static_argnames``, …)."""
    return _LazyJit(fn, kw)
