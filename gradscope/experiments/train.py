"""Training a recurrent model with a linear readout on a task (optax), with diagnostics snapshots.

    net ─ Network(rnn, readout):  h_t = rnn.step(x_t, h_{t-1}),  ŷ = W h_T + b  (readout "last")
                                                                  ŷ_t = W h_t + b  (readout "every")

`train` runs ``steps`` updates of Adam or SGD on fresh batches ``task.sample(fold_in(data_key, step), batch)``
(``data_key, init_key, probe_key = split(key, 3)``), so a run is a deterministic function of its key and
options. Optional, as in the papers the tasks come from (`gradscope.experiments.optim`):

* Pascanu et al. 2013, Algorithm 1 — norm clipping: ``if ‖g‖ ≥ θ: g ← θ g/‖g‖`` (``clip_norm=θ``);
* Li et al. 2018, §3.1 — IndRNN's constraint ``|u| ≤ γ^{1/T}`` applied after every update (``indrnn_clip=γ``).

Every ``snapshot_every`` steps ``snapshot_fn(rnn, probe_xs)`` records diagnostics on a fixed probe batch
(default: `diagnostics_snapshot`, i.e. `gradscope.analyse`), so gradient flow can be followed during
training. Intermediate checkpoints (`gradscope.experiments.checkpoint`) hold only parameters whose loss was finite (the
final one holds the returned parameters); a resumed run reproduces the uninterrupted one exactly.
The library never prints: progress goes to ``progress(event)``.

The model and its readout live in `gradscope.experiments.network`, the optimiser options in
`gradscope.experiments.optim`, the result, `restore` and `evaluate` in `gradscope.experiments.runs`; their
public names are importable from here too.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradscope._errors import ConfigError, NonFiniteError, ShapeError, check_number, check_positive_int
from gradscope._json import clean
from gradscope.cells.indrnn import recurrent_bound
from gradscope.experiments import checkpoint as ckpt
from gradscope.experiments.network import Network, Readout, _features, network  # noqa: F401  (re-exported)
from gradscope.experiments.optim import OptimizerSpec, ScheduleSpec, clip_indrnn, norm_clipping, transformation
from gradscope.experiments.runs import TrainResult, evaluate, key_from_record, key_record, restore, stored_meta

if TYPE_CHECKING:
    from gradscope.experiments.tasks import Task

__all__ = [
    "Network",
    "Readout",
    "TrainResult",
    "TrainingDiverged",
    "clip_indrnn",
    "diagnostics_snapshot",
    "evaluate",
    "network",
    "norm_clipping",
    "restore",
    "train",
]

_plain = clean  # the one sanitiser (gradscope._json): JSON-ready, NaN/±inf as null
_transformation = transformation  # the names this module had before the split
_key_record, _key_from_record = key_record, key_from_record

#: ``snapshot_fn(rnn, probe_xs) -> dict`` of JSON-ready diagnostics
SnapshotFn = Callable[[Any, jax.Array], Mapping[str, Any]]


class TrainingDiverged(NonFiniteError):
    """The training loss became NaN or infinite; ``step`` and ``checkpoint`` (the last good one, or None)."""

    def __init__(
        self,
        message: str,
        *,
        step: int,
        checkpoint: Path | None = None,
        history: dict[str, list[float]] | None = None,
    ) -> None:
        super().__init__(message)
        self.step, self.checkpoint, self.history = step, checkpoint, history


def diagnostics_snapshot(model: Any, xs: jax.Array) -> dict[str, Any]:
    """Gradient-flow diagnostics of the recurrent model on the probe batch (`gradscope.analyse`).

    Keeps the batch-mean lag profile (log10 ‖∂S_T/∂S_k‖₂, k = 0..T−1), the summary numbers (horizon,
    decay per step, largest Lyapunov exponent, verdict) and the LSTM/GRU path split when there is one.
    """
    import gradscope

    # looked up on the package at call time (patchable); pyright types the lazy gradscope.__getattr__ as
    # returning a module
    a = gradscope.analyse(model, xs, lyapunov=True, paths=True, spectra=False, gates=False)  # pyright: ignore[reportCallIssue]
    s = a.summary
    prof = np.asarray(a.lag_profile.log10_spectral)
    keys = (
        "horizon",
        "decay_per_step",
        "log10_norm_max_lag",
        "lyapunov_max",
        "verdict",
        "highway_log10_max_lag",
        "remainder_log10_max_lag",
    )
    out = {k: _plain(s[k]) for k in keys if k in s}
    out["lag_profile"] = _plain(prof.mean(axis=0) if prof.ndim == 2 else prof)
    d = a.to_dict()
    if d.get("paths"):
        out["paths"] = _plain(d["paths"])
    return out


# ----------------------------------------------------------------------------------------- one step


def _loss(net: Network, task: Task, xs: jax.Array, ys: jax.Array) -> tuple[jax.Array, jax.Array]:
    preds = net(xs)
    return task.loss(preds, ys), preds


@functools.partial(jax.jit, static_argnames=("task", "tx", "batch", "bound"))
def _update(
    net: Network,
    opt_state: optax.OptState,
    step: jax.Array,
    *,
    data_key: jax.Array,
    task: Task,
    tx: optax.GradientTransformation,
    batch: int,
    bound: float | None,
) -> tuple[Network, optax.OptState, jax.Array, jax.Array, jax.Array]:
    """One optimisation step on the batch ``task.sample(fold_in(data_key, step), batch)``.

    Returns the updated (and, with ``bound``, IndRNN-clipped) network and optimizer state, and the loss,
    metric and global gradient norm (before clipping) *of the network that was passed in*.
    """
    xs, ys = task.sample(jax.random.fold_in(data_key, step), batch)
    (loss, preds), grads = jax.value_and_grad(_loss, has_aux=True)(net, task, xs.astype(net.readout.weight.dtype), ys)
    updates, opt_state = tx.update(grads, opt_state, net)  # pyright: ignore[reportArgumentType]  # any pytree
    new = cast(Network, optax.apply_updates(net, updates))  # pyright: ignore[reportArgumentType]  # same structure
    if bound is not None:
        new = dataclasses.replace(new, rnn=clip_indrnn(new.rnn, bound)[0])
    return new, opt_state, loss, task.metric(preds, ys), optax.tree.norm(grads)


# ------------------------------------------------------------------------------------ run set-up


def _check_options(
    steps: int,
    batch: int,
    probe_batch: int,
    lr: float,
    snapshot_every: int | None,
    snapshot_fn: SnapshotFn | None,
    checkpoint_dir: str | os.PathLike[str] | None,
    checkpoint_every: int | None,
    resume: bool,
) -> tuple[int, int, int]:
    """Refuse bad options before any work; returns the checked ``(steps, batch, probe_batch)``."""
    steps = check_positive_int("steps", steps)
    batch = check_positive_int("batch", batch)
    probe_batch = check_positive_int("probe_batch", probe_batch)
    check_number("lr", lr, positive=True)
    for name, v in (("snapshot_every", snapshot_every), ("checkpoint_every", checkpoint_every)):
        if v is not None:
            check_positive_int(name, v)
    if (checkpoint_every is not None or resume) and checkpoint_dir is None:
        raise ConfigError("checkpoint_dir=None is not allowed with checkpoint_every or resume=True: give a directory")
    if snapshot_fn is not None and snapshot_every is None:
        raise ConfigError("snapshot_fn is given but snapshot_every=None: say how often to take snapshots")
    return steps, batch, probe_batch


def _start_network(model: Any, task: Task, init_key: jax.Array) -> Network:
    """``model`` with a fresh readout for ``task``, or the given `Network` once checked against the task."""
    if not isinstance(model, Network):
        return network(model, task, key=init_key)
    network(model.rnn, task, key=init_key)  # validates sizes and readout mode
    if model.readout.weight.shape[0] != task.output_size or model.mode != task.readout:
        raise ShapeError(
            f"the Network's readout gives {model.readout.weight.shape[0]} outputs at "
            f"{model.mode!r} steps; task {task.name!r} needs {task.output_size} at {task.readout!r}"
        )
    return model


def _indrnn_bound(net: Network, task: Task, indrnn_clip: float | None) -> float | None:
    """IndRNN's ``|u| ≤ γ^{1/T}`` for ``γ = indrnn_clip`` (None without it); refused for a model without IndRNN."""
    if indrnn_clip is None:
        return None
    bound = recurrent_bound(task.length, indrnn_clip)
    if clip_indrnn(net.rnn, bound)[1] == 0:
        raise ConfigError(f"indrnn_clip={indrnn_clip!r} is not allowed: the model has no IndRNN layer")
    return bound


def _readonly(x: Any, dtype: Any = np.float64) -> np.ndarray:
    a = np.array(x, dtype)
    a.setflags(write=False)
    return a


# ----------------------------------------------------------------------------------------- training


def train(
    model: Any,
    task: Task,
    *,
    key: jax.Array | None = None,
    steps: int,
    batch: int = 32,
    optimizer: OptimizerSpec = "adam",
    lr: float = 1e-3,
    schedule: ScheduleSpec = "constant",
    decay_every: int | None = None,
    decay_factor: float = 0.1,
    clip_norm: float | None = None,
    indrnn_clip: float | None = None,
    snapshot_every: int | None = None,
    snapshot_fn: SnapshotFn | None = None,
    probe_batch: int = 8,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    progress: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train ``model`` (a recurrent model, or a `Network` with its readout) on ``task``.

    ``schedule``: ``"constant"``, ``"step"`` (× ``decay_factor`` every ``decay_every`` steps, default steps//3),
    ``"cosine"`` (to 0 at ``steps``) or an optax schedule. ``clip_norm``: Pascanu's global norm clipping
    threshold. ``indrnn_clip``: γ of IndRNN's constraint ``|u| ≤ γ^{1/T}`` (T = ``task.length``), applied to
    every IndRNN layer after every update. ``snapshot_every``: record ``snapshot_fn(rnn, probe_xs)``
    (default `diagnostics_snapshot`) at steps 0, every, 2·every, … and at the end. ``checkpoint_dir`` /
    ``checkpoint_every``: save a checkpoint every so many steps and at the end; ``resume=True`` continues
    from the latest checkpoint there (from scratch when there is none; ``key`` may then be omitted).
    ``progress(event)`` receives dicts with ``"event"`` in start / step / snapshot / checkpoint / end.

    Raises `TrainingDiverged` when the loss becomes NaN or infinite.
    """
    steps, batch, probe_batch = _check_options(
        steps, batch, probe_batch, lr, snapshot_every, snapshot_fn, checkpoint_dir, checkpoint_every, resume
    )
    from gradscope.experiments.plan import plan_training

    # before any work: refuse, in one line, a run whose training step or snapshot would not fit
    plan_training(model.rnn if isinstance(model, Network) else model, task, batch=batch, probe_batch=probe_batch)
    snap_fn: SnapshotFn = snapshot_fn or diagnostics_snapshot
    emit = progress or (lambda event: None)

    config = {
        "steps": steps,
        "batch": batch,
        "optimizer": optimizer if isinstance(optimizer, str) else "custom",
        "lr": float(lr),
        "schedule": schedule if isinstance(schedule, str) else "custom",
        "decay_every": decay_every,
        "decay_factor": float(decay_factor),
        "clip_norm": clip_norm,
        "indrnn_clip": indrnn_clip,
        "snapshot_every": snapshot_every,
        "probe_batch": probe_batch,
    }

    # with resume=True, checkpoint_dir is set (checked above); `stored` is the step to continue from
    stored = ckpt.latest(checkpoint_dir) if resume and checkpoint_dir is not None else None
    if key is None:
        if stored is None or checkpoint_dir is None:
            raise ConfigError("key=None is not allowed: give a jax.random key (or resume from a checkpoint)")
        key = key_from_record(stored_meta(checkpoint_dir, stored)["key"])
    data_key, init_key, probe_key = jax.random.split(key, 3)

    net = _start_network(model, task, init_key)
    dtype = net.readout.weight.dtype
    bound = _indrnn_bound(net, task, indrnn_clip)

    tx = transformation(optimizer, float(lr), schedule, steps, decay_every, float(decay_factor), clip_norm)
    opt_state = tx.init(net)  # pyright: ignore[reportArgumentType]  # optax takes any pytree of arrays
    update = functools.partial(_update, data_key=data_key, task=task, tx=tx, batch=batch, bound=bound)

    probe_xs = task.sample(probe_key, probe_batch)[0].astype(dtype)
    losses: list[float] = []
    metrics: list[float] = []
    gnorms: list[float] = []
    snaps: list[dict[str, Any]] = []
    start = 0
    meta_base = {"task": _plain(task.describe()), "config": config, "key": key_record(key)}

    last_good: Path | None = None
    if stored is not None and checkpoint_dir is not None:
        (net, opt_state), meta = ckpt.load(checkpoint_dir, (net, opt_state), stored)
        for k in ("task", "config", "key"):
            if meta.get(k) != meta_base[k]:
                raise ckpt.CheckpointError(
                    f"cannot resume from {ckpt.path(checkpoint_dir, stored)}: its {k} "
                    f"differs from this run's ({meta.get(k)!r} vs {meta_base[k]!r})"
                )
        start = int(meta["step"])
        losses, metrics, gnorms = list(meta["loss"]), list(meta["metric"]), list(meta["grad_norm"])
        snaps = list(meta["snapshots"])
        last_good = ckpt.path(checkpoint_dir, stored)

    def take_snapshot(n: Network, k: int) -> None:
        if snaps and snaps[-1]["step"] == k:
            return  # restored from the checkpoint
        snap = {"step": k, **_plain(snap_fn(n.rnn, probe_xs))}
        snaps.append(snap)
        emit({"event": "snapshot", "step": k, "steps": steps, "snapshot": snap})

    def save(n: Network, o: optax.OptState, k: int) -> Path:
        meta = dict(
            meta_base,
            step=k,
            loss=losses[:k],
            metric=metrics[:k],
            grad_norm=gnorms[:k],
            snapshots=[s for s in snaps if s["step"] <= k],
        )
        p = ckpt.save(ckpt.check_directory(checkpoint_dir), k, (n, o), meta)  # set whenever save is called
        emit({"event": "checkpoint", "step": k, "steps": steps, "path": str(p)})
        return p

    emit({"event": "start", "step": start, "steps": steps, "task": task.name, "metric_name": task.metric_name})
    for k in range(start, steps):
        if snapshot_every is not None and k % snapshot_every == 0:
            take_snapshot(net, k)
        new_net, new_opt, loss_k, metric, gnorm = update(net, opt_state, jnp.asarray(k, jnp.int32))
        loss = float(loss_k)
        if not math.isfinite(loss):
            where = (
                f"the last good checkpoint (step {int(last_good.stem.split('-')[1])}) is kept at {last_good}"
                if last_good is not None
                else "no checkpoint was written (pass checkpoint_dir and checkpoint_every to keep one)"
            )
            raise TrainingDiverged(
                f"training diverged at step {k}: the loss is {loss}; {where}. Try a smaller lr, clip_norm, "
                "or indrnn_clip for IndRNN models",
                step=k,
                checkpoint=last_good,
                history={"loss": list(losses), "metric": list(metrics), "grad_norm": list(gnorms)},
            )
        # the parameters that produced this finite loss are "good": checkpoint them before moving on
        if checkpoint_every is not None and k > start and k % checkpoint_every == 0:
            last_good = save(net, opt_state, k)
        losses.append(loss)
        metrics.append(float(metric))
        gnorms.append(float(gnorm))
        net, opt_state = new_net, new_opt
        emit(
            {
                "event": "step",
                "step": k + 1,
                "steps": steps,
                "loss": loss,
                "metric": metrics[-1],
                "grad_norm": gnorms[-1],
            }
        )

    if snapshot_every is not None:
        take_snapshot(net, steps)
    if checkpoint_dir is not None and (stored is None or stored < steps):
        save(net, opt_state, steps)
    emit({"event": "end", "step": steps, "steps": steps, "loss": losses[-1] if losses else None})
    return TrainResult(
        task=_plain(task.describe()),
        config=config,
        loss=_readonly(losses),
        metric=_readonly(metrics),
        grad_norm=_readonly(gnorms),
        params=net,
        snapshots=tuple(snaps),
        metric_name=task.metric_name,
        baseline=float(task.baseline),
    )
