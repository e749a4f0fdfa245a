"""Per-step Jacobians ``J[t] = ∂S_{t+1}/∂S_t`` along a trajectory.

Analytic per cell family (each cell's ``jacobian``), forward-mode autodiff for user cells without one.
`step_jacobians` materialises ``T·d²`` numbers; the product stages recompute Jacobians on the fly instead,
unless given a `TrajectorySteps`: one compiled program per model runs the rollout and evaluates every
step Jacobian, and the stages downstream (`gradscope.engine.lag_profile_of`, …) read only arrays, so one
compiled stage serves every model of one state layout (`gradscope.analyse` takes this route when the
``B·T·d²`` numbers fit `materialise_fits`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gradscope._rollout import Trajectory, _scan, check_inputs
from gradscope.cells._base import unflatten_state
from gradscope.engine._exported import cached_program
from gradscope.engine._memory import budget_bytes, plan_stage, sizes_of
from gradscope.engine._prep import engine_precision, per_example, prepare, step_jac

#: the most bytes `materialise_fits` lets the materialised step Jacobians take (and at most a quarter of
#: the memory budget): beyond that the stages recompute them in their scans as before
MATERIALISE_MAX_BYTES = 128 * 2**20


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


@dataclasses.dataclass(frozen=True)
class TrajectorySteps:
    """One rollout with its step Jacobians materialised, shared by an analysis' dense stages.

    ``xs``: the prepared inputs (…, T, m'); ``S``: the flat states S_0..S_T (…, T+1, d); ``jac``:
    ``J[t] = ∂S_{t+1}/∂S_t`` (…, T, d, d); ``direct``: the diagonal of the model's direct path at every
    step (…, T, n) (`gradscope.engine.path_split`; None when not asked for); ``trajectory``: the rollout
    with its aux (gate values); ``batched``: whether there is a leading batch axis."""

    xs: jax.Array
    S: jax.Array
    jac: jax.Array
    direct: jax.Array | None
    trajectory: Trajectory
    batched: bool


def _steps_one(model, xs, state0, direct):
    tr = _scan(model, xs, state0)
    pxs, S = model.prepare_inputs(xs), tr.flat
    ts = jnp.arange(pxs.shape[0])
    J = jax.vmap(lambda x, s, t: step_jac(model, x, s, t)[0])(pxs, S[:-1], ts)
    D = None
    if direct:
        D = jax.vmap(lambda x, s, t: model.direct_path(x, unflatten_state(model, s), t))(pxs, S[:-1], ts)
    # plain containers only (the trajectory's states and aux, not the Trajectory): a stored program's
    # outputs must be serialisable (gradscope.engine._exported)
    return pxs, S, J, D, tuple(tr.states), dict(tr.aux)


@cached_program(static_argnames=("batched", "direct"))
def _trajectory_steps(model, xs, state0, *, batched, direct):
    with engine_precision():
        if batched:
            return jax.vmap(_steps_one, in_axes=(None, 0, 0, None))(model, xs, state0, direct)
        return _steps_one(model, xs, state0, direct)


#: the size of one chunk of `host_chunks` (at least one step of every sequence)
CHUNK_BYTES = 4 * 2**20


@per_example
def _steps_at(model, xs, S, ts):
    return jax.vmap(lambda x, s, t: step_jac(model, x, s, t)[0])(xs, S, ts)


@cached_program(static_argnames=("batched",))
def _jac_chunk(model, xs, S, ts, batched):
    return _steps_at(model, xs, S, ts, batched=batched)


def host_chunks(model: Any, xs: jax.Array, S: jax.Array, batched: bool) -> Iterator[np.ndarray]:
    """The step Jacobians along a computed trajectory (`gradscope.engine._prep.prepare`'s ``xs`` (…, T, m')
    and ``S`` (…, T+1, d)) as NumPy arrays ``(B, L, d, d)`` of consecutive steps, B = 1 when not batched,
    each at most `CHUNK_BYTES` (or one step). One compiled program of L steps serves every chunk (the last
    is padded by repeating its last step, the extra rows dropped), and the next chunk is computed while the
    caller works on this one. Small chunks are also faster to make: the whole (B, T, d, d) at once (52 MB, an
    LSTM of n = 64, T = 200, B = 4) took 49 ms on the reference CPU (new memory at every call), 16-step
    chunks 8 ms."""
    Xn, Sn = np.asarray(xs), np.asarray(S)[..., :-1, :]
    if not batched:
        Xn, Sn = Xn[None], Sn[None]
    B, T, d = Sn.shape
    L = max(1, min(T, CHUNK_BYTES // (B * d * d * Sn.dtype.itemsize)))

    def launch(t0: int) -> jax.Array:
        n = min(L, T - t0)
        pad = ((0, 0), (0, L - n), (0, 0))
        ts = np.pad(np.arange(t0, t0 + n), (0, L - n), mode="edge")
        return _jac_chunk(
            model,
            np.pad(Xn[:, t0 : t0 + n], pad, mode="edge"),
            np.pad(Sn[:, t0 : t0 + n], pad, mode="edge"),
            ts,
            batched=True,
        )

    pending = launch(0)
    for t0 in range(0, T, L):
        ready, pending = pending, (launch(t0 + L) if t0 + L < T else None)
        yield np.asarray(ready)[:, : min(L, T - t0)]


def materialise_fits(model: Any, xs: Any) -> bool:
    """Whether ``model``'s step Jacobians along ``xs`` (B·T·d² numbers) fit `MATERIALISE_MAX_BYTES` and a
    quarter of the memory budget."""
    s = sizes_of(model, xs)
    if s is None:
        return False
    nbytes = s.batch * s.length * s.state * s.state * s.itemsize
    return nbytes <= min(MATERIALISE_MAX_BYTES, budget_bytes() // 4)


def trajectory_steps(model: Any, xs: ArrayLike, state0: Any = None, *, direct: bool = False) -> TrajectorySteps:
    """Roll ``model`` over ``xs`` and evaluate every step Jacobian in one compiled program (`TrajectorySteps`);
    ``direct=True`` also records the diagonal of the model's direct path (`model.direct_path`)."""
    plan_stage("step_jacobians", model, xs)  # before the rollout: refuse what would not fit
    xs, state0, batched = check_inputs(model, xs, state0)
    pxs, S, J, D, states, aux = _trajectory_steps(model, xs, tuple(state0), batched=batched, direct=bool(direct))
    return TrajectorySteps(pxs, S, J, D, Trajectory(states=states, aux=aux, blocks=tuple(model.blocks)), batched)
