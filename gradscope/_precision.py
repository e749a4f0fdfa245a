"""The engine's matmul precision policy, readable without importing the engine (reports record it), and whether
JAX computes in float64, readable without importing JAX (`gradscope inspect` reports the dtype a model would have).

TF32-class GPU matmuls (10-bit mantissas) ruin long Jacobian products, so the engine asks for
``"highest"`` unless the user has chosen a precision with JAX's own setting.
"""

from __future__ import annotations

import os
import sys

#: The engine's default matmul precision.
MATMUL_PRECISION = "highest"


def matmul_precision() -> str:
    """The matmul precision the engine computes with: ``"highest"`` (full float32 on GPUs too, not TF32 or
    bfloat16 passes) unless the user has set JAX's own ``jax_default_matmul_precision`` (``jax.config`` or
    the ``jax.default_matmul_precision(...)`` context), which then wins. Read at trace time: the setting is
    part of JAX's compilation cache key, so changing it recompiles instead of reusing the other precision."""
    import jax

    # jax.config's flags are attributes set at run time, unknown to the stubs
    user = jax.config.jax_default_matmul_precision  # pyright: ignore[reportAttributeAccessIssue]
    return MATMUL_PRECISION if user is None else str(user)


#: what JAX reads as true in a boolean environment variable (``jax._src.config.bool_env``)
_TRUE = ("y", "yes", "t", "true", "on", "1")


def x64_enabled() -> bool:
    """Whether JAX has (or, once imported, will have) 64-bit types: ``jax.config``'s ``jax_enable_x64`` when JAX
    is imported (only then can code have changed it), else what JAX reads at import, ``JAX_ENABLE_X64``; a value
    JAX would refuse counts as off here (importing JAX then raises JAX's own error)."""
    if "jax" in sys.modules:
        import jax

        return bool(jax.config.read("jax_enable_x64"))
    return os.environ.get("JAX_ENABLE_X64", "").lower() in _TRUE
