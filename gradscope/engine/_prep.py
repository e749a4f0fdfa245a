"""Shared plumbing of the engine: validated inputs, the state trajectory, precision, batching."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from gradscope.cells._base import flatten_state, jacobians, unflatten_state
from gradscope._rollout import _scan, check_inputs

from gradscope._precision import MATMUL_PRECISION, matmul_precision  # noqa: F401  (re-exported)


def engine_precision():
    """Context in which the engine traces its products: ``jax.default_matmul_precision(matmul_precision())``."""
    return jax.default_matmul_precision(matmul_precision())


def per_example(fn):
    """Wrap ``fn(model, xs, S, *args)`` written for one sequence: vmap it over a leading batch axis.

    ``S`` is the flat trajectory S_0..S_T ``(T+1, d)`` and ``xs`` the prepared inputs ``(T, m')``.
    """

    @functools.wraps(fn)
    def wrapped(model, xs, S, *args, batched: bool):
        with engine_precision():
            if batched:
                return jax.vmap(lambda x, s: fn(model, x, s, *args))(xs, S)
            return fn(model, xs, S, *args)

    return wrapped


def _trajectory(model, xs, state0):
    tr = _scan(model, xs, state0)
    return model.prepare_inputs(xs), tr.flat


@functools.partial(jax.jit, static_argnames=("batched",))
def _states(model, xs, state0, batched):
    with engine_precision():
        if batched:
            return jax.vmap(_trajectory, in_axes=(None, 0, 0))(model, xs, state0)
        return _trajectory(model, xs, state0)


def prepare(model, xs, state0=None):
    """Validate inputs and run the model: ``(prepared xs (…,T,m'), flat states (…,T+1,d), batched)``."""
    xs, state0, batched = check_inputs(model, xs, state0)
    pxs, S = _states(model, xs, state0, batched)
    return pxs, S, batched


def step_jac(model, x, s, t):
    """Dense ``(∂S_{t+1}/∂S_t, ∂S_{t+1}/∂x_{t+1})`` at flat state ``s`` (analytic or autodiff)."""
    return jacobians(model, x, unflatten_state(model, s), t)


def step_diag(model, x, s, t):
    """Diagonal of ∂S_{t+1}/∂S_t for models with ``structure == "diagonal"``."""
    return model.jacobian_diag(x, unflatten_state(model, s), t)[0]


def is_diagonal(model) -> bool:
    return getattr(model, "structure", "dense") == "diagonal" and hasattr(model, "jacobian_diag")


def log10(x):
    return jnp.log10(x)


LN10 = 2.302585092994046

__all__ = ["prepare", "per_example", "step_jac", "step_diag", "is_diagonal", "flatten_state", "MATMUL_PRECISION",
           "matmul_precision", "engine_precision"]
