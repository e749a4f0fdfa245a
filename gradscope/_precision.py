"""The engine's matmul precision policy, readable without importing the engine (reports record it).

TF32-class GPU matmuls (10-bit mantissas) ruin long Jacobian products, so the engine asks for
``"highest"`` unless the user has chosen a precision with JAX's own setting.
"""

from __future__ import annotations

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
