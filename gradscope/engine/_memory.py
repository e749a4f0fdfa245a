"""Memory planning: know what a stage will hold before running it, and say what would fit.

The engine's stages have predictable peak buffers (a lag profile holds B·d² numbers, a triangle
chunk C·B·d², attribution and `step_jacobians` T·B·d²). Before an O(T·d²) stage runs, its size is
checked against the device's memory (the GPU allocator's limit, or the machine's physical memory on a
CPU), and a `ResourceError` names the size needed and the largest length that would fit — instead
of an out-of-memory crash deep inside XLA.
"""

from __future__ import annotations

import os
from typing import Any

import jax

from gradscope._errors import GradscopeError

#: fraction of the device's memory a single stage may plan to use
BUDGET_FRACTION = 0.5


class ResourceError(GradscopeError, MemoryError):
    """A computation would not fit in the device's memory."""


def available_bytes(device: Any = None) -> int:
    device = device or jax.devices()[0]
    try:
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    except Exception:  # noqa: BLE001 - some backends do not report memory stats
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 8 * 2**30


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def require(nbytes: int, what: str, *, per_step_bytes: int | None = None, budget: int | None = None) -> None:
    """Raise `ResourceError` if ``nbytes`` exceeds the stage budget; ``per_step_bytes`` lets the message
    say the longest sequence that would fit."""
    budget = int(BUDGET_FRACTION * available_bytes()) if budget is None else budget
    if nbytes <= budget:
        return
    hint = ""
    if per_step_bytes:
        hint = f"; at most T = {max(0, budget // per_step_bytes)} steps would fit"
    raise ResourceError(
        f"{what} needs {_human(nbytes)} but only {_human(budget)} is available for one stage{hint}: "
        "use a shorter sequence, a smaller batch, lag_profile (O(d²) memory) or mode='probe'"
    )
