"""Optimisation options of `gradscope.experiments.train.train`: optimizer, learning-rate schedule and the
two constraints of the papers the tasks come from.

* Pascanu et al. 2013, Algorithm 1 — norm clipping: ``if ‖g‖ ≥ θ: g ← θ g/‖g‖`` (`norm_clipping`);
* Li et al. 2018, §3.1 — IndRNN's constraint ``|u| ≤ γ^{1/T}`` applied after every update (`clip_indrnn`).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import optax

from gradscope._errors import ConfigError, check_number, check_positive_int
from gradscope.cells.indrnn import IndRNN, clip_recurrent

#: an optimizer by name ("adam", "sgd") or an optax transformation
OptimizerSpec = str | optax.GradientTransformation
#: a learning-rate schedule by name ("constant", "step", "cosine") or an optax schedule
ScheduleSpec = str | optax.Schedule


def norm_clipping(threshold: float) -> optax.GradientTransformation:
    """Pascanu et al.'s Algorithm 1 on the global norm of all gradients: ``g ← θ g/‖g‖`` when ``‖g‖ ≥ θ``."""
    return optax.clip_by_global_norm(check_number("clip_norm", threshold, positive=True))


def _schedule(
    schedule: ScheduleSpec, lr: float, steps: int, decay_every: int | None, decay_factor: float
) -> optax.Schedule:
    if callable(schedule):
        return schedule
    if schedule == "constant":
        return optax.constant_schedule(lr)
    if schedule == "cosine":
        return optax.cosine_decay_schedule(lr, steps)
    if schedule == "step":
        every = decay_every if decay_every is not None else max(1, steps // 3)
        check_positive_int("decay_every", every)
        if not 0 < check_number("decay_factor", decay_factor) <= 1:
            raise ConfigError(f"decay_factor={decay_factor!r} is not allowed: expected a number in (0, 1]")
        return optax.exponential_decay(lr, every, decay_factor, staircase=True)
    raise ConfigError(f"schedule={schedule!r} is not allowed: use 'constant', 'step', 'cosine' or an optax schedule")


def _optimizer(
    optimizer: OptimizerSpec, schedule: optax.Schedule, clip_norm: float | None
) -> optax.GradientTransformation:
    if isinstance(optimizer, optax.GradientTransformation):
        tx = optimizer
    elif optimizer == "adam":
        tx = optax.adam(schedule)
    elif optimizer == "sgd":
        tx = optax.sgd(schedule)
    else:
        raise ConfigError(f"optimizer={optimizer!r} is not allowed: use 'adam', 'sgd' or an optax transformation")
    return optax.chain(norm_clipping(clip_norm), tx) if clip_norm is not None else tx


@functools.lru_cache(maxsize=64)
def _cached_transformation(
    optimizer: str,
    lr: float,
    schedule: str,
    steps: int,
    decay_every: int | None,
    decay_factor: float,
    clip_norm: float | None,
) -> optax.GradientTransformation:
    return _optimizer(optimizer, _schedule(schedule, lr, steps, decay_every, decay_factor), clip_norm)


def transformation(
    optimizer: OptimizerSpec,
    lr: float,
    schedule: ScheduleSpec,
    steps: int,
    decay_every: int | None,
    decay_factor: float,
    clip_norm: float | None,
) -> optax.GradientTransformation:
    """The optax transformation; the same options give the same object, so a jitted update that takes it
    as a static argument is compiled once."""
    if isinstance(optimizer, str) and isinstance(schedule, str):
        return _cached_transformation(optimizer, lr, schedule, steps, decay_every, decay_factor, clip_norm)
    return _optimizer(optimizer, _schedule(schedule, lr, steps, decay_every, decay_factor), clip_norm)


def _is_indrnn(node: Any) -> bool:
    return isinstance(node, IndRNN)


def clip_indrnn(rnn: Any, max_abs: float) -> tuple[Any, int]:
    """Apply `gradscope.cells.indrnn.clip_recurrent` to every IndRNN cell of ``rnn``; returns ``(rnn, count)``.

    The IndRNN cells are found as nodes of the model's pytree, so any container of cells (`Stack`,
    `Bidirectional`, a user's model) is rebuilt with its IndRNN cells clipped and everything else unchanged.
    """
    count = sum(map(_is_indrnn, jax.tree_util.tree_leaves(rnn, is_leaf=_is_indrnn)))
    if count == 0:
        return rnn, 0
    clipped = jax.tree_util.tree_map(
        lambda node: clip_recurrent(node, max_abs) if _is_indrnn(node) else node, rnn, is_leaf=_is_indrnn
    )
    return clipped, count
