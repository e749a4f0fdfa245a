"""The task protocol and the task registry.

A task is an immutable description of a supervised sequence problem with a *pure* data generator:

* ``sample(key, batch, split="train") -> (xs, ys)``: ``xs`` of shape ``(B, T, input_size)`` (float32),
  ``ys`` the targets; the same key gives the same batch, and the function can run inside `jax.jit`;
* ``loss(preds, ys)``: the training loss (a scalar; MSE or cross-entropy in nats);
* ``metric(preds, ys)``: the task's headline number (``metric_name``; ``higher_is_better`` says which way);
* ``success(metric) -> bool``: the success criterion of the task's paper (each task documents its source);
* ``input_size``, ``output_size``, ``length`` (T), ``readout`` — ``"last"`` (predictions ``(B, output_size)``
  read from the final state) or ``"every"`` (``(B, T, output_size)``, one per step) — and ``baseline``: the
  loss of the best predictor that ignores the input (e.g. 0.167 for the adding problem).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import optax

from gradscope._errors import ConfigError
from gradscope._registry import Registry


class Task:
    """Base class; concrete tasks are frozen dataclasses whose fields are their options.

    A concrete task states what it is in its class line, as class keywords (`__init_subclass__`):
    ``class Copy(Task, name="copy", readout="every", metric_name="accuracy", higher_is_better=True)``.
    """

    name: ClassVar[str] = ""
    readout: ClassVar[str] = "last"
    metric_name: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = False

    def __init_subclass__(
        cls,
        *,
        name: str | None = None,
        readout: str | None = None,
        metric_name: str | None = None,
        higher_is_better: bool | None = None,
        **kwargs: Any,
    ) -> None:
        """Set the class attributes given as class keywords; one left out keeps the inherited value (the digits
        leave out ``name``: it depends on their options, so it is a property)."""
        super().__init_subclass__(**kwargs)
        given = {"name": name, "readout": readout, "metric_name": metric_name, "higher_is_better": higher_is_better}
        for attr, value in given.items():
            if value is not None:
                setattr(cls, attr, value)

    # --- provided by subclasses: the ``length`` field (T), the properties and methods below
    length: int

    @property
    def input_size(self) -> int:
        raise NotImplementedError

    @property
    def output_size(self) -> int:
        raise NotImplementedError

    @property
    def baseline(self) -> float:
        """The loss of the best predictor that ignores the input."""
        raise NotImplementedError

    def sample(self, key: jax.Array, batch: int, split: str = "train") -> tuple[jax.Array, jax.Array]:
        """``(xs, ys)``: ``xs (B, T, input_size)`` and the targets, a pure function of ``key``."""
        raise NotImplementedError

    def loss(self, preds: jax.Array, ys: jax.Array) -> jax.Array:
        """The training loss (a scalar)."""
        raise NotImplementedError

    def metric(self, preds: jax.Array, ys: jax.Array) -> jax.Array:
        """The headline number ``metric_name``."""
        raise NotImplementedError

    def success(self, metric: float) -> bool:
        """The success criterion of the task's paper."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The task's configuration as plain Python (for reports and checkpoints)."""
        out: dict[str, Any] = {"task": self.name}
        for f in dataclasses.fields(self):  # pyright: ignore[reportArgumentType]  # concrete tasks are dataclasses
            if not f.name.startswith("_"):
                out[f.name] = getattr(self, f.name)
        out.update(
            input_size=self.input_size,
            output_size=self.output_size,
            readout=self.readout,
            metric=self.metric_name,
            baseline=float(self.baseline),
        )
        return out

    def _check_preds(self, preds: jax.Array, ys: jax.Array) -> None:
        want = (
            (ys.shape[0], self.output_size) if self.readout == "last" else (ys.shape[0], self.length, self.output_size)
        )
        if tuple(preds.shape) != want:
            from gradscope._errors import ShapeError

            raise ShapeError(
                f"preds has shape {tuple(preds.shape)}, but task {self.name!r} expects {want} "
                f"(readout={self.readout!r})"
            )


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy in nats (labels are integer class indices)."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def positive_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name}={value!r} is not allowed: expected an integer >= {minimum}")
    return value


# ------------------------------------------------------------------------------------------- registry


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    description: str
    build: Callable


_REGISTRY: Registry[Entry] = Registry(
    "task", unknown="task={name!r} is not a registered task: {hint}known tasks are {known}"
)


def register(name: str, description: str) -> Callable[[Callable[..., Task]], Callable[..., Task]]:
    """Decorator for a builder ``build(length=None, **options) -> Task``."""

    def deco(build: Callable[..., Task]) -> Callable[..., Task]:
        _REGISTRY.register(name, Entry(name, description, build))
        return build

    return deco


def names() -> dict[str, str]:
    """Registered task names with one-line descriptions."""
    return {e.name: e.description for e in _REGISTRY.entries()}


def entry(name: str) -> Entry:
    """The registered task ``name``; else `UnknownNameError` with the closest names and the known ones."""
    return _REGISTRY.get(name)


def options(name: str) -> dict[str, Any]:
    """The options a task accepts (besides ``length``), with their defaults."""
    sig = inspect.signature(entry(name).build)
    return {p.name: p.default for p in sig.parameters.values() if p.kind == p.KEYWORD_ONLY and p.name != "length"}


def make(name: str, length: int | None = None, **opts: Any) -> Task:
    """Build the registered task ``name`` with sequence length ``length`` (None = the task's default)."""
    e = entry(name)
    allowed = options(name)
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise ConfigError(
            f"option {unknown[0]!r} is not allowed for task {name!r}: allowed options are "
            f"length, {', '.join(allowed) or '(none)'}"
        )
    return e.build(length=length, **opts)
