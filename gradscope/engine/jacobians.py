"""Per-step Jacobians ``J[t] = ∂S_{t+1}/∂S_t`` along a trajectory.

Analytic per cell family (each cell's ``jacobian``), forward-mode autodiff for user cells without one.
This materialises ``T·d²`` numbers; the product stages recompute Jacobians on the fly instead.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradscope.engine._memory import plan_stage
from gradscope.engine._prep import per_example, prepare, step_jac


@dataclasses.dataclass(frozen=True)
class StepJacobians:
    """``jac[..., t, :, :] = ∂S_{t+1}/∂S_t`` and ``jac_x[..., t, :, :] = ∂S_{t+1}/∂x_{t+1}``."""

    jac: jax.Array
    jac_x: jax.Array
    blocks: tuple
    block_sizes: tuple


@per_example
def _all_steps(model, xs, S):
    T = xs.shape[0]
    return jax.vmap(lambda x, s, t: step_jac(model, x, s, t))(xs, S[:-1], jnp.arange(T))


@functools.partial(jax.jit, static_argnames=("batched",))
def _step_jacobians(model, xs, S, batched):
    return _all_steps(model, xs, S, batched=batched)


def step_jacobians(model: Any, xs: ArrayLike, state0: Any = None) -> StepJacobians:
    """All one-step Jacobians of ``model`` along ``xs`` (``(T, m)`` → ``(T, d, d)``; batched → ``(B, T, d, d)``)."""
    plan_stage("step_jacobians", model, xs)  # before the rollout: refuse what would not fit
    pxs, S, batched = prepare(model, xs, state0)
    J, Jx = _step_jacobians(model, pxs, S, batched)
    return StepJacobians(J, Jx, tuple(model.blocks), tuple(model.block_sizes))
