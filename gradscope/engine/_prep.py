"""Shared plumbing of the engine: validated inputs, the state trajectory, precision, batching."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer
from jax.typing import ArrayLike

from gradscope._precision import MATMUL_PRECISION, matmul_precision  # noqa: F401  (re-exported)
from gradscope._rollout import _scan, check_inputs
from gradscope.cells._base import flatten_state, jacobians, unflatten_state
from gradscope.engine._exported import cached_program

R = TypeVar("R")


def engine_precision() -> contextlib.AbstractContextManager[Any]:
    """Context in which the engine traces its products: ``jax.default_matmul_precision(matmul_precision())``."""
    return jax.default_matmul_precision(matmul_precision())


def unstack(a: jax.Array, axis: int) -> list[jax.Array]:
    """The slices of a stage's output ``a`` along ``axis``, each a `jax.Array`. A computed array is split on
    the host (a transfer each way): indexing a device array would compile a ``dynamic_slice`` and a
    ``squeeze`` program per shape, ~25 ms each on a cold start. A traced one (inside a user's jit) is indexed."""
    if isinstance(a, Tracer):
        return list(jnp.moveaxis(a, axis, 0))
    return [jax.device_put(np.ascontiguousarray(x)) for x in np.moveaxis(np.asarray(a), axis, 0)]


def per_example(fn: Callable[..., R]) -> Callable[..., R]:
    """Wrap ``fn(model, xs, S, *args)`` written for one sequence: vmap it over a leading batch axis.

    ``S`` is the flat trajectory S_0..S_T ``(T+1, d)`` and ``xs`` the prepared inputs ``(T, m')``.
    """

    @functools.wraps(fn)
    def wrapped(model: Any, xs: jax.Array, S: jax.Array, *args: Any, batched: bool) -> R:
        with engine_precision():
            if batched:
                return jax.vmap(lambda x, s: fn(model, x, s, *args))(xs, S)
            return fn(model, xs, S, *args)

    return wrapped


def per_sequence(fn: Callable[..., R]) -> Callable[..., R]:
    """Wrap ``fn(*arrays, **options)`` written for one sequence's arrays (step Jacobians ``(T, d, d)``, …):
    ``batched=True`` vmaps it over a leading batch axis of every array — `per_example` for stages that read
    materialised arrays instead of the model."""

    @functools.wraps(fn)
    def wrapped(*arrays: Any, batched: bool, **options: Any) -> R:
        with engine_precision():
            if batched:
                return jax.vmap(lambda *a: fn(*a, **options))(*arrays)
            return fn(*arrays, **options)

    return wrapped


def model_jac(model: Any, xs: jax.Array, S: jax.Array) -> Callable[[Any], jax.Array]:
    """``k ↦ J_k = ∂S_{k+1}/∂S_k`` of one sequence, recomputed from the model at ``(xs[k], S[k])`` where a
    stage's scan needs it: no ``T·d²`` numbers held. The stages also take ``J.__getitem__`` of materialised
    Jacobians (`gradscope.engine.jacobians.trajectory_steps`) in its place."""
    return lambda k: step_jac(model, xs[k], S[k], k)[0]


def model_route(core: Callable[..., R]) -> Callable[..., R]:
    """A dense stage ``core(jac_at, T, d, dtype, *options)`` of one sequence as ``f(model, xs, S, *options,
    batched=...)``: J_k recomputed from the model in the stage's scan (`model_jac`), vmapped over a batch."""

    @per_example
    def stage(model: Any, xs: jax.Array, S: jax.Array, *options: Any) -> R:
        return core(model_jac(model, xs, S), xs.shape[0], S.shape[-1], S.dtype, *options)

    return stage


def jac_route(core: Callable[..., R]) -> Callable[..., R]:
    """The same stage as ``f(J, batched=..., **options)`` on materialised step Jacobians ``J`` (T, d, d):
    no model, so its compiled program serves every model of one state layout."""

    @per_sequence
    def stage(J: jax.Array, **options: Any) -> R:
        return core(J.__getitem__, J.shape[0], J.shape[-1], J.dtype, **options)

    return stage


def _trajectory(model, xs, state0):
    tr = _scan(model, xs, state0)
    return model.prepare_inputs(xs), tr.flat


@cached_program(static_argnames=("batched",))
def _states(model, xs, state0, batched):
    with engine_precision():
        if batched:
            return jax.vmap(_trajectory, in_axes=(None, 0, 0))(model, xs, state0)
        return _trajectory(model, xs, state0)


def prepare(model: Any, xs: ArrayLike, state0: Any = None) -> tuple[jax.Array, jax.Array, bool]:
    """Validate inputs and run the model: ``(prepared xs (…,T,m'), flat states (…,T+1,d), batched)``."""
    xs, state0, batched = check_inputs(model, xs, state0)
    pxs, S = _states(model, xs, state0, batched=batched)
    return pxs, S, batched


def step_jac(model: Any, x: jax.Array, s: jax.Array, t: Any) -> tuple[jax.Array, jax.Array]:
    """Dense ``(∂S_{t+1}/∂S_t, ∂S_{t+1}/∂x_{t+1})`` at flat state ``s`` (analytic or autodiff)."""
    return jacobians(model, x, unflatten_state(model, s), t)


def structure(model: Any) -> str:
    """The structure of ∂S'/∂S the engine exploits: ``"diagonal"`` (a real diagonal), ``"complex-diagonal"``
    (per unit n the rotation-scaling ``[[Re λ_n, −Im λ_n], [Im λ_n, Re λ_n]]`` acting on ``(re_n, im_n)``
    of the two equal blocks ``[re, im]``) or ``"dense"``. Only what the model declares, and only with a
    ``jacobian_diag`` to read the diagonal from; networks (`Stack`, `Bidirectional`) declare "dense"."""
    kind = getattr(model, "structure", "dense")
    if not callable(getattr(model, "jacobian_diag", None)):
        return "dense"
    if kind == "diagonal":
        return kind
    sizes = tuple(model.block_sizes)
    if kind == "complex-diagonal" and len(sizes) == 2 and sizes[0] == sizes[1]:
        return kind
    return "dense"


def is_diagonal(model: Any) -> bool:
    """Whether the engine takes a diagonal fast path (real or complex) for ``model``."""
    return structure(model) != "dense"


def log_diagonals(model: Any, xs: jax.Array, S: jax.Array) -> tuple[jax.Array, jax.Array | None]:
    """Along one trajectory: ``(log|a_t| (T, n), arg λ_t (T, n) or None)``, the log-magnitudes of the
    diagonal of ∂S_{t+1}/∂S_t (complex-diagonal: of the multipliers λ, n = half the state) and, for
    complex-diagonal models, their phases. An exactly zero factor gives −inf."""
    T = xs.shape[0]
    a = jax.vmap(lambda x, s, t: model.jacobian_diag(x, unflatten_state(model, s), t)[0])(xs, S[:-1], jnp.arange(T))
    if structure(model) == "complex-diagonal":
        return jnp.log(jnp.abs(a)), jnp.angle(a).astype(S.dtype)
    return jnp.log(jnp.abs(a)), None


LN10 = 2.302585092994046

__all__ = [
    "prepare",
    "per_example",
    "per_sequence",
    "model_jac",
    "model_route",
    "jac_route",
    "step_jac",
    "structure",
    "is_diagonal",
    "log_diagonals",
    "flatten_state",
    "MATMUL_PRECISION",
    "matmul_precision",
    "engine_precision",
]
