"""Named input sources: the sequences ``xs`` a model is driven with while its gradient flow is measured.

The Jacobians ∂S_T/∂S_k depend on the trajectory, hence on the inputs, so a diagnosis always names its
input source. Sources:

* ``noise``   — x_t ~ N(0, I_m), i.i.d. over steps and examples;
* ``uniform`` — x_t ~ U(0, 1)^m, the value stream of the adding problem (Hochreiter & Schmidhuber 1997;
  IndRNN set-up, Li et al. 2018 §5.1);
* ``zeros``   — x_t = 0: the autonomous map S_t = f(0, S_{t-1}), driven only by the biases;
* ``adding``, ``copy``, ``temporal-order`` — the inputs of the tasks in `gradscope.experiments.tasks` (their targets
  are dropped); their input size is fixed by the task.

``make_inputs(source, key, batch, length, input_size)`` returns ``xs`` of shape ``(batch, length, m)``.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from gradscope._errors import ConfigError, UnknownNameError, check_positive_int

if TYPE_CHECKING:
    import jax

    from gradscope.experiments.tasks import Task

#: source name -> one-line description (the order is the order shown to users)
SOURCES: dict[str, str] = {
    "noise": "x_t ~ N(0, I), i.i.d. Gaussian noise",
    "uniform": "x_t ~ U(0, 1)^m, the adding problem's value stream",
    "zeros": "x_t = 0 (the autonomous map, driven by the biases only)",
    "adding": "inputs of the adding problem (values, markers); input size 2",
    "copy": "inputs of the copy/memory task (one-hot symbols); input size alphabet + 2 = 10",
    "temporal-order": "inputs of the temporal-order problem (one-hot symbols); input size 6",
}

#: sources whose inputs come from a task of `gradscope.experiments.tasks` (same name there)
TASK_SOURCES = ("adding", "copy", "temporal-order")


def names() -> dict[str, str]:
    """The input sources with their one-line descriptions."""
    return dict(SOURCES)


def check_source(source: str) -> str:
    """``source`` if it names an input source, else `UnknownNameError` listing them (with a suggestion)."""
    if source in SOURCES:
        return source
    close = difflib.get_close_matches(str(source), list(SOURCES), n=2)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UnknownNameError(f"input={source!r} is not an input source: {hint}use one of {', '.join(SOURCES)}")


def _task(source: str, length: int) -> Task:
    from gradscope.experiments import tasks

    return tasks.make(source, length=length)


def task_input_size(source: str, length: int = 100) -> int | None:
    """The input size a task source imposes (None for the free sources noise/uniform/zeros)."""
    check_source(source)
    if source not in TASK_SOURCES:
        return None
    return int(_task(source, length).input_size)


def make_inputs(
    source: str, key: jax.Array, batch: int, length: int, input_size: int | None, dtype: Any = None
) -> jax.Array:
    """Inputs ``xs`` of shape ``(batch, length, input_size)`` from the named ``source``.

    ``key`` is a `jax.random` key (same key, same inputs). For a task source ``input_size`` may be None
    (the task's own size); any other value must equal it. ``dtype`` defaults to float32.
    """
    import jax
    import jax.numpy as jnp

    check_source(source)
    batch = check_positive_int("batch", batch)
    length = check_positive_int("length", length)
    dtype = jnp.float32 if dtype is None else jnp.dtype(dtype)
    if source in TASK_SOURCES:
        task = _task(source, length)
        m = int(task.input_size)
        if input_size is not None and check_positive_int("input_size", input_size) != m:
            raise ConfigError(
                f"input_size={input_size!r} is not allowed with input={source!r}: the task's inputs "
                f"have size {m} (leave --input-size out, or use input noise/uniform/zeros)"
            )
        xs, _ = task.sample(key, batch)
        return jnp.asarray(xs, dtype)
    if input_size is None:
        raise ConfigError(f"input_size=None is not allowed with input={source!r}: give a positive integer")
    m = check_positive_int("input_size", input_size)
    shape = (batch, length, m)
    if source == "noise":
        return jax.random.normal(key, shape, dtype)
    if source == "uniform":
        return jax.random.uniform(key, shape, dtype)
    return jnp.zeros(shape, dtype)  # zeros
