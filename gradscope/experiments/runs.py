"""What a training run leaves: its `TrainResult`, its checkpoints (`restore`) and held-out numbers
(`evaluate`). The run itself is `gradscope.experiments.train.train`."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from gradscope._errors import ConfigError, check_positive_int
from gradscope._json import clean
from gradscope.experiments import checkpoint as ckpt
from gradscope.experiments.network import Network, network
from gradscope.experiments.optim import transformation

if TYPE_CHECKING:
    from gradscope.experiments.tasks import Task

_plain = clean  # the one sanitiser (gradscope._json): JSON-ready, NaN/±inf as null


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """The outcome of `train`: curves (one entry per step, read-only arrays), final parameters, snapshots."""

    task: dict
    config: dict
    loss: np.ndarray
    metric: np.ndarray
    grad_norm: np.ndarray
    params: Network
    snapshots: tuple
    metric_name: str
    baseline: float

    @property
    def steps(self) -> int:
        return len(self.loss)

    def to_dict(self) -> dict:
        """JSON-ready record (no parameters)."""
        return {
            "task": self.task,
            "config": self.config,
            "metric_name": self.metric_name,
            "baseline": self.baseline,
            "loss": self.loss.tolist(),
            "metric": self.metric.tolist(),
            "grad_norm": self.grad_norm.tolist(),
            "snapshots": _plain(list(self.snapshots)),
        }


def key_record(key: jax.Array) -> dict[str, Any]:
    """A JSON record of a `jax.random` key (typed or raw uint32), for checkpoint metadata."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return {
            "typed": True,
            "impl": str(jax.random.key_impl(key)),
            "data": np.asarray(jax.random.key_data(key)).tolist(),
        }
    return {"typed": False, "data": np.asarray(key).tolist()}


def key_from_record(rec: dict[str, Any]) -> jax.Array:
    """The key `key_record` recorded."""
    data = jnp.asarray(np.asarray(rec["data"], np.uint32))
    return jax.random.wrap_key_data(data, impl=rec["impl"]) if rec["typed"] else data


def stored_meta(checkpoint_dir: str | os.PathLike[str], step: int) -> dict[str, Any]:
    """The metadata of checkpoint ``step`` (its JSON sidecar), without loading its arrays."""
    return json.loads(ckpt.path(checkpoint_dir, step).with_suffix(".json").read_text())["meta"]


def restore(
    checkpoint_dir: str | os.PathLike[str], model: Any, task: Task, step: int | None = None
) -> tuple[Network, dict[str, Any]]:
    """The `Network` saved by `train` in ``checkpoint_dir`` (default: the latest step) and its metadata.

    ``model`` is the recurrent model the run started from (its structure is the template; its weights are
    replaced). The optimizer state template is rebuilt from the configuration stored in the checkpoint.
    """
    if step is None:
        step = ckpt.latest(checkpoint_dir)
        if step is None:
            raise ckpt.CheckpointError(f"no checkpoint in {str(checkpoint_dir)!r} (latest.json is missing)")
    meta = stored_meta(checkpoint_dir, step)
    c = meta["config"]
    if c["optimizer"] == "custom" or c["schedule"] == "custom":
        raise ConfigError(
            "this checkpoint was written with a custom optimizer or schedule: load it with "
            "gradscope.experiments.checkpoint.load and your own template"
        )
    init_key = jax.random.split(key_from_record(meta["key"]), 3)[1]
    net = model if isinstance(model, Network) else network(model, task, key=init_key)
    tx = transformation(
        c["optimizer"], c["lr"], c["schedule"], c["steps"], c["decay_every"], c["decay_factor"], c["clip_norm"]
    )
    opt_state = tx.init(net)  # pyright: ignore[reportArgumentType]  # optax takes any pytree of arrays
    (net, _), meta = ckpt.load(checkpoint_dir, (net, opt_state), step)
    return net, meta


def evaluate(
    net: Network, task: Task, *, key: jax.Array | None = None, batch: int = 1000, split: str = "test"
) -> dict[str, Any]:
    """Loss, metric and success on held-out data: the whole ``split`` for data-set tasks (digits, text),
    else ``batch`` fresh sequences from ``key`` (e.g. 10,000 for Pascanu's temporal-order criterion)."""
    dataset: Callable[[str], tuple[jax.Array, jax.Array]] | None = getattr(task, "dataset", None)
    if callable(dataset):
        xs, ys = dataset(split)
    else:
        if key is None:
            raise ConfigError("key=None is not allowed for a synthetic task: give a jax.random key")
        xs, ys = task.sample(key, check_positive_int("batch", batch), split)
    preds = jax.jit(lambda n, x: n(x))(net, xs)
    metric = float(task.metric(preds, ys))
    return {"loss": float(task.loss(preds, ys)), task.metric_name: metric, "success": task.success(metric)}
