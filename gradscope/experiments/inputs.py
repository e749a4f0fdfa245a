"""Named input sources: the sequences ``xs`` a model is driven with while its gradient flow is measured.

The Jacobians ∂S_T/∂S_k depend on the trajectory, hence on the inputs, so a diagnosis always names its
input source. Sources:

* ``noise``   — x_t ~ N(0, I_m), i.i.d. over steps and examples;
* ``uniform`` — x_t ~ U(0, 1)^m, the value stream of the adding problem (Hochreiter & Schmidhuber 1997;
  IndRNN set-up, Li et al. 2018 §5.1);
* ``zeros``   — x_t = 0: the autonomous map S_t = f(0, S_{t-1}), driven only by the biases;
* ``adding``, ``copy``, ``temporal-order`` — the inputs of the tasks in `gradscope.experiments.tasks` (their targets
  are dropped); their input size is fixed by the task.

A source may also be a FILE (``.npy``, ``.npz[:name]``, ``.csv``, ``.safetensors[:name]``; see
`gradscope.experiments.input_files`): its arrays are the inputs, and it fixes the batch, the input size and
the longest length (a shorter ``length`` takes the first steps). A source name wins over a file of the
same name in the current folder.

``make_inputs(source, key, batch, length, input_size)`` returns ``xs`` of shape ``(batch, length, m)``.
``from_file(spec)`` reads a FILE; ``from_batches(iterable, max_batches=…)`` stacks the batches of a data
loader (torch, NumPy or JAX) into one ``(B, T, m)`` array.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from gradscope._errors import ConfigError, ShapeError, UnknownNameError, check_positive_int
from gradscope.experiments.input_files import SUFFIXES, is_file_spec, load

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


def is_file(source: str) -> bool:
    """True when ``source`` is a FILE rather than a source name (names win)."""
    return source not in SOURCES and is_file_spec(source)


def check_source(source: str) -> str:
    """``source`` if it names an input source or a readable input FILE (read and validated here: a bad file is
    a one-line `ConfigError`), else `UnknownNameError` listing the sources (with a suggestion)."""
    if source in SOURCES:
        return source
    if is_file(source):
        load(source)
        return source
    close = difflib.get_close_matches(str(source), list(SOURCES), n=2)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UnknownNameError(
        f"input={source!r} is not an input source: {hint}use one of {', '.join(SOURCES)}, "
        f"or a file ({', '.join(SUFFIXES)}; .npz and .safetensors as FILE:NAME)"
    )


def _task(source: str, length: int) -> Task:
    from gradscope.experiments import tasks

    return tasks.make(source, length=length)


def task_input_size(source: str, length: int = 100) -> int | None:
    """The input size a task source or a FILE imposes (None for the free sources noise/uniform/zeros)."""
    check_source(source)
    if is_file(source):
        return load(source).shape[2]
    if source not in TASK_SOURCES:
        return None
    return int(_task(source, length).input_size)


def make_inputs(
    source: str, key: jax.Array, batch: int, length: int, input_size: int | None, dtype: Any = None
) -> jax.Array:
    """Inputs ``xs`` of shape ``(batch, length, input_size)`` from the named ``source``.

    ``key`` is a `jax.random` key (same key, same inputs). For a task source ``input_size`` may be None
    (the task's own size); any other value must equal it. A FILE gives its first ``length`` steps; ``batch``
    and ``input_size`` (when given) must equal its own. ``dtype`` defaults to float32.
    """
    import jax
    import jax.numpy as jnp

    from gradscope import _random

    check_source(source)
    batch = check_positive_int("batch", batch)
    length = check_positive_int("length", length)
    dtype = jnp.float32 if dtype is None else jnp.dtype(dtype)
    if is_file(source):
        raw = _file_inputs(source, batch, length, input_size)
        with np.errstate(over="ignore"):
            xs = np.asarray(raw, dtype)
        if not np.isfinite(xs).all():  # the file's values are finite: the cast overflowed
            biggest = float(np.max(np.abs(raw)))
            raise ConfigError(
                f"input file {source!r} holds values up to {biggest:g}, beyond the range of {np.dtype(dtype)}: "
                "use --float64 or rescale the inputs"
            )
        return jnp.asarray(xs)
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
        return _random.uniform(key, shape, dtype)
    return jnp.zeros(shape, dtype)  # zeros


def _file_inputs(source: str, batch: int, length: int, input_size: int | None) -> np.ndarray:
    """The first ``length`` steps of the FILE's ``(B, T, m)``; its B and m must be ``batch`` and ``input_size``."""
    data = load(source)
    B, T, m = data.shape
    if input_size is not None and check_positive_int("input_size", input_size) != m:
        raise ConfigError(
            f"input file {source!r} has {m} features per step (shape {tuple(data.source['shape'])}), but the "
            f"model takes inputs of size {input_size}: give a file with {input_size} features, or a model "
            f"with input size {m} (leave --input-size out)"
        )
    if batch != B:
        raise ConfigError(
            f"batch={batch} is not allowed with input file {source!r}: it holds {B} sequence{'s' * (B != 1)} "
            "(leave --batch out)"
        )
    if length > T:
        raise ConfigError(
            f"length={length} is not allowed with input file {source!r}: its sequences have {T} steps "
            f"(give a length of at most {T})"
        )
    return data.array[:, :length]


def from_file(spec: str) -> np.ndarray:
    """The inputs ``(B, T, m)`` (read-only float array) of a FILE: ``path`` or ``path:name`` for .npz and
    .safetensors; see `gradscope.experiments.input_files` for the formats and what is refused."""
    return load(str(spec)).array


def _first(item: Any) -> Any:
    """A batch of a data loader: ``(x, y, …)`` pairs and lists give their first element."""
    if isinstance(item, (tuple, list)) and item:
        return item[0]
    return item


def from_batches(iterable: Iterable[Any], max_batches: int | None = None) -> np.ndarray:
    """Stack the input batches of ``iterable`` (e.g. a ``torch.utils.data.DataLoader``) into one ``(B, T, m)``.

    Each item is a batch ``(b, T, m)`` — a torch tensor, NumPy or JAX array — or a tuple/list whose first
    element is one (``(x, y)`` from a DataLoader). At most ``max_batches`` batches are read (all when None),
    so an endless loader is fine with a limit. Every batch must have the same T and m and a floating dtype;
    the result has the batches' common floating dtype. Torch tensors are detached and copied to the CPU
    (`gradscope._array_like.to_array`); nothing of the caller's is modified.
    """
    from gradscope._array_like import to_array

    if max_batches is not None:
        max_batches = check_positive_int("max_batches", max_batches)
    try:
        items = iter(iterable)
    except TypeError:
        raise ConfigError(
            f"from_batches takes an iterable of batches (a DataLoader, a list of arrays), not a "
            f"{type(iterable).__name__}"
        ) from None
    batches: list[np.ndarray] = []
    for i, item in enumerate(itertools.islice(items, max_batches)):
        if isinstance(item, dict):
            raise ShapeError(
                f"batch {i} is a dict (keys {', '.join(map(str, item))}): pass the inputs, e.g. "
                "from_batches(b['x'] for b in loader)"
            )
        x = to_array(_first(item))
        try:
            x = np.asarray(x)
        except (TypeError, ValueError, RuntimeError) as e:
            raise ShapeError(f"batch {i} is a {type(x).__name__}, not an array: {e}") from None
        if x.ndim != 3:
            raise ShapeError(f"batch {i} has shape {tuple(x.shape)}: expected (batch, T, m)")
        if x.dtype.kind != "f":
            raise ShapeError(f"batch {i} has dtype {x.dtype}: expected floating-point inputs (convert, e.g. x.float())")
        if batches and x.shape[1:] != batches[0].shape[1:]:
            first = batches[0].shape
            raise ShapeError(
                f"batch {i} has shape {tuple(x.shape)} but batch 0 has {tuple(first)}: every batch needs the "
                f"same length T = {first[1]} and input size m = {first[2]} (pad or crop the sequences)"
            )
        batches.append(x)
    if not batches:
        raise ShapeError("from_batches got no batches: the iterable is empty")
    return np.concatenate(batches, axis=0)
