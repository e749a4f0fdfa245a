"""Training a recurrent model with a linear readout on a task (optax), with diagnostics snapshots.

    net ─ Network(rnn, readout):  h_t = rnn.step(x_t, h_{t-1}),  ŷ = W h_T + b  (readout "last")
                                                                  ŷ_t = W h_t + b  (readout "every")

`train` runs ``steps`` updates of Adam or SGD on fresh batches ``task.sample(fold_in(data_key, step), batch)``
(``data_key, init_key, probe_key = split(key, 3)``), so a run is a deterministic function of its key and
options. Optional, as in the papers the tasks come from:

* Pascanu et al. 2013, Algorithm 1 — norm clipping: ``if ‖g‖ ≥ θ: g ← θ g/‖g‖`` (``clip_norm=θ``);
* Li et al. 2018, §3.1 — IndRNN's constraint ``|u| ≤ γ^{1/T}`` applied after every update (``indrnn_clip=γ``).

Every ``snapshot_every`` steps ``snapshot_fn(rnn, probe_xs)`` records diagnostics on a fixed probe batch
(default: `diagnostics_snapshot`, i.e. `gradscope.analyse`), so gradient flow can be followed during
training. Intermediate checkpoints (`gradscope.experiments.checkpoint`) hold only parameters whose loss was finite (the
final one holds the returned parameters); a resumed run reproduces the uninterrupted one exactly.
The library never prints: progress goes to ``progress(event)``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradscope._errors import ConfigError, NonFiniteError, ShapeError, check_number, check_positive_int
from gradscope._json import clean
from gradscope.cells._base import pytree_cell, static
from gradscope.cells.indrnn import IndRNN, clip_recurrent, recurrent_bound
from gradscope.experiments import checkpoint as ckpt
from gradscope.nets import Bidirectional, Stack


class TrainingDiverged(NonFiniteError):
    """The training loss became NaN or infinite; ``step`` and ``checkpoint`` (the last good one, or None)."""

    def __init__(self, message, *, step: int, checkpoint=None, history=None):
        super().__init__(message)
        self.step, self.checkpoint, self.history = step, checkpoint, history


# ------------------------------------------------------------------------------------------- model


@pytree_cell
class Readout:
    """A linear readout ``y = W h + b`` (``weight (out, in)``, ``bias (out,)``, PyTorch ``Linear`` layout)."""

    weight: jax.Array
    bias: jax.Array

    @classmethod
    def init(cls, key, in_size: int, out_size: int, dtype=jnp.float32) -> Readout:
        """PyTorch's ``Linear`` init: ``U(−1/√in, 1/√in)`` for both weight and bias."""
        k1, k2 = jax.random.split(key)
        b = 1.0 / math.sqrt(in_size)
        return cls(
            jax.random.uniform(k1, (out_size, in_size), dtype, -b, b), jax.random.uniform(k2, (out_size,), dtype, -b, b)
        )

    def __call__(self, h):
        return h @ self.weight.T + self.bias


def _features(rnn, x, state):
    """What the readout sees at one step: the model's layer output (a residual Stack adds its shortcut)."""
    return rnn.readout(state, x)


@pytree_cell
class Network:
    """A recurrent model (cell, `Stack` or `Bidirectional`) followed by a linear `Readout`."""

    rnn: Any
    readout: Readout
    mode: str = static("last")

    def features(self, xs):
        """Readout inputs for one sequence ``xs (T, m)``: ``(T, d_out)``, starting from the zero state."""
        dtype = jax.tree_util.tree_leaves(self.readout)[0].dtype
        state0 = tuple(jnp.zeros((n,), dtype) for n in self.rnn.block_sizes)
        xin = self.rnn.prepare_inputs(xs)

        def body(s, tx):
            t, x = tx
            s2, _ = self.rnn.step(x, s, t)
            return s2, _features(self.rnn, x, s2)

        return jax.lax.scan(body, state0, (jnp.arange(xin.shape[0]), xin))[1]

    def __call__(self, xs):
        """Predictions for a batch ``xs (B, T, m)``: ``(B, out)`` (mode "last") or ``(B, T, out)``."""
        feats = jax.vmap(self.features)(xs.astype(self.readout.weight.dtype))
        return self.readout(feats[:, -1] if self.mode == "last" else feats)


def network(rnn, task, *, key) -> Network:
    """Attach a freshly initialised readout for ``task`` to ``rnn``."""
    if rnn.input_size != task.input_size:
        raise ShapeError(
            f"the model's input_size is {rnn.input_size}, but task {task.name!r} has input_size={task.input_size}"
        )
    if task.readout == "every" and isinstance(rnn, Bidirectional):
        raise ConfigError(
            f"a Bidirectional model cannot be trained on task {task.name!r}: its readout is at "
            "every step, and the backward direction would see the future"
        )
    dtype = jax.tree_util.tree_leaves(rnn)[0].dtype
    return Network(rnn, Readout.init(key, rnn.output_size, task.output_size, dtype), mode=task.readout)


# ------------------------------------------------------------------------------------- optimisation


def norm_clipping(threshold: float) -> optax.GradientTransformation:
    """Pascanu et al.'s Algorithm 1 on the global norm of all gradients: ``g ← θ g/‖g‖`` when ``‖g‖ ≥ θ``."""
    return optax.clip_by_global_norm(check_number("clip_norm", threshold, positive=True))


def _schedule(schedule, lr, steps, decay_every, decay_factor):
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


def _optimizer(optimizer, schedule, clip_norm):
    if isinstance(optimizer, optax.GradientTransformation):
        tx = optimizer
    elif optimizer == "adam":
        tx = optax.adam(schedule)
    elif optimizer == "sgd":
        tx = optax.sgd(schedule)
    else:
        raise ConfigError(f"optimizer={optimizer!r} is not allowed: use 'adam', 'sgd' or an optax transformation")
    return optax.chain(norm_clipping(clip_norm), tx) if clip_norm is not None else tx


def clip_indrnn(rnn, max_abs: float):
    """Apply `gradscope.cells.indrnn.clip_recurrent` to every IndRNN layer of ``rnn``; returns ``(rnn, count)``."""
    if isinstance(rnn, IndRNN):
        return clip_recurrent(rnn, max_abs), 1
    if isinstance(rnn, Stack):
        out = [clip_indrnn(c, max_abs) for c in rnn.layers]
        return dataclasses.replace(rnn, layers=tuple(c for c, _ in out)), sum(n for _, n in out)
    if isinstance(rnn, Bidirectional):
        (f, nf), (b, nb) = clip_indrnn(rnn.forward, max_abs), clip_indrnn(rnn.backward, max_abs)
        return dataclasses.replace(rnn, forward=f, backward=b), nf + nb
    return rnn, 0


# -------------------------------------------------------------------------------------- diagnostics


_plain = clean  # the one sanitiser (gradscope._json): JSON-ready, NaN/±inf as null


def diagnostics_snapshot(model, xs) -> dict:
    """Gradient-flow diagnostics of the recurrent model on the probe batch (`gradscope.analyse`).

    Keeps the batch-mean lag profile (log10 ‖∂S_T/∂S_k‖₂, k = 0..T−1), the summary numbers (horizon,
    decay per step, largest Lyapunov exponent, verdict) and the LSTM/GRU path split when there is one.
    """
    import gradscope

    a = gradscope.analyse(model, xs, lyapunov=True, paths=True, spectra=False, gates=False)
    s = a.summary
    prof = np.asarray(a.lag_profile.log10_spectral)
    out = {
        k: _plain(s[k])
        for k in (
            "horizon",
            "decay_per_step",
            "log10_norm_max_lag",
            "lyapunov_max",
            "verdict",
            "highway_log10_max_lag",
            "remainder_log10_max_lag",
        )
        if k in s
    }
    out["lag_profile"] = _plain(prof.mean(axis=0) if prof.ndim == 2 else prof)
    d = a.to_dict()
    if d.get("paths"):
        out["paths"] = _plain(d["paths"])
    return out


# ----------------------------------------------------------------------------------------- training


@functools.lru_cache(maxsize=64)
def _cached_transformation(optimizer, lr, schedule, steps, decay_every, decay_factor, clip_norm):
    return _optimizer(optimizer, _schedule(schedule, lr, steps, decay_every, decay_factor), clip_norm)


def _transformation(optimizer, lr, schedule, steps, decay_every, decay_factor, clip_norm):
    """The optax transformation; the same options give the same object, so `_update` is compiled once."""
    if isinstance(optimizer, str) and isinstance(schedule, str):
        return _cached_transformation(optimizer, lr, schedule, steps, decay_every, decay_factor, clip_norm)
    return _optimizer(optimizer, _schedule(schedule, lr, steps, decay_every, decay_factor), clip_norm)


def _loss(net, task, xs, ys):
    preds = net(xs)
    return task.loss(preds, ys), preds


@functools.partial(jax.jit, static_argnames=("task", "tx", "batch", "bound"))
def _update(net, opt_state, step, *, data_key, task, tx, batch, bound):
    """One optimisation step on the batch ``task.sample(fold_in(data_key, step), batch)``.

    Returns the updated (and, with ``bound``, IndRNN-clipped) network and optimizer state, and the loss,
    metric and global gradient norm (before clipping) *of the network that was passed in*.
    """
    xs, ys = task.sample(jax.random.fold_in(data_key, step), batch)
    (loss, preds), grads = jax.value_and_grad(_loss, has_aux=True)(net, task, xs.astype(net.readout.weight.dtype), ys)
    updates, opt_state = tx.update(grads, opt_state, net)
    new = optax.apply_updates(net, updates)
    if bound is not None:
        new = dataclasses.replace(new, rnn=clip_indrnn(new.rnn, bound)[0])
    return new, opt_state, loss, task.metric(preds, ys), optax.tree.norm(grads)


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


def _key_record(key) -> dict:
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return {
            "typed": True,
            "impl": str(jax.random.key_impl(key)),
            "data": np.asarray(jax.random.key_data(key)).tolist(),
        }
    return {"typed": False, "data": np.asarray(key).tolist()}


def _key_from_record(rec):
    data = jnp.asarray(np.asarray(rec["data"], np.uint32))
    return jax.random.wrap_key_data(data, impl=rec["impl"]) if rec["typed"] else data


def _readonly(x, dtype=np.float64):
    a = np.array(x, dtype)
    a.setflags(write=False)
    return a


def train(
    model,
    task,
    *,
    key=None,
    steps: int,
    batch: int = 32,
    optimizer="adam",
    lr: float = 1e-3,
    schedule="constant",
    decay_every: int | None = None,
    decay_factor: float = 0.1,
    clip_norm: float | None = None,
    indrnn_clip: float | None = None,
    snapshot_every: int | None = None,
    snapshot_fn: Callable | None = None,
    probe_batch: int = 8,
    checkpoint_dir=None,
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
    snapshot_fn = snapshot_fn or diagnostics_snapshot
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

    stored = None
    if resume and ckpt.latest(checkpoint_dir) is not None:
        stored = ckpt.latest(checkpoint_dir)
    if key is None:
        if stored is None:
            raise ConfigError("key=None is not allowed: give a jax.random key (or resume from a checkpoint)")
        import json

        key = _key_from_record(
            json.loads((ckpt.path(checkpoint_dir, stored).with_suffix(".json")).read_text())["meta"]["key"]
        )
    data_key, init_key, probe_key = jax.random.split(key, 3)

    net = model if isinstance(model, Network) else network(model, task, key=init_key)
    if isinstance(model, Network):
        network(model.rnn, task, key=init_key)  # validates sizes and readout mode
        if model.readout.weight.shape[0] != task.output_size or model.mode != task.readout:
            raise ShapeError(
                f"the Network's readout gives {model.readout.weight.shape[0]} outputs at "
                f"{model.mode!r} steps; task {task.name!r} needs {task.output_size} at {task.readout!r}"
            )
    dtype = net.readout.weight.dtype
    bound = None
    if indrnn_clip is not None:
        bound = recurrent_bound(task.length, indrnn_clip)
        if clip_indrnn(net.rnn, bound)[1] == 0:
            raise ConfigError(f"indrnn_clip={indrnn_clip!r} is not allowed: the model has no IndRNN layer")

    tx = _transformation(optimizer, float(lr), schedule, steps, decay_every, float(decay_factor), clip_norm)
    opt_state = tx.init(net)
    update = functools.partial(_update, data_key=data_key, task=task, tx=tx, batch=batch, bound=bound)

    probe_xs = task.sample(probe_key, probe_batch)[0].astype(dtype)
    losses, metrics, gnorms, snaps = [], [], [], []
    start = 0
    meta_base = {"task": _plain(task.describe()), "config": config, "key": _key_record(key)}

    if stored is not None:
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

    last_good = ckpt.path(checkpoint_dir, stored) if stored is not None else None

    def take_snapshot(n, k):
        if snaps and snaps[-1]["step"] == k:
            return  # restored from the checkpoint
        snap = {"step": k, **_plain(snapshot_fn(n.rnn, probe_xs))}
        snaps.append(snap)
        emit({"event": "snapshot", "step": k, "steps": steps, "snapshot": snap})

    def save(n, o, k):
        meta = dict(
            meta_base,
            step=k,
            loss=losses[:k],
            metric=metrics[:k],
            grad_norm=gnorms[:k],
            snapshots=[s for s in snaps if s["step"] <= k],
        )
        p = ckpt.save(checkpoint_dir, k, (n, o), meta)
        emit({"event": "checkpoint", "step": k, "steps": steps, "path": str(p)})
        return p

    emit({"event": "start", "step": start, "steps": steps, "task": task.name, "metric_name": task.metric_name})
    for k in range(start, steps):
        if snapshot_every is not None and k % snapshot_every == 0:
            take_snapshot(net, k)
        new_net, new_opt, loss, metric, gnorm = update(net, opt_state, jnp.asarray(k, jnp.int32))
        loss = float(loss)
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


def restore(checkpoint_dir, model, task, step: int | None = None):
    """The `Network` saved by `train` in ``checkpoint_dir`` (default: the latest step) and its metadata.

    ``model`` is the recurrent model the run started from (its structure is the template; its weights are
    replaced). The optimizer state template is rebuilt from the configuration stored in the checkpoint.
    """
    import json

    if step is None:
        step = ckpt.latest(checkpoint_dir)
        if step is None:
            raise ckpt.CheckpointError(f"no checkpoint in {str(checkpoint_dir)!r} (latest.json is missing)")
    meta = json.loads(ckpt.path(checkpoint_dir, step).with_suffix(".json").read_text())["meta"]
    c = meta["config"]
    if c["optimizer"] == "custom" or c["schedule"] == "custom":
        raise ConfigError(
            "this checkpoint was written with a custom optimizer or schedule: load it with "
            "gradscope.experiments.checkpoint.load and your own template"
        )
    init_key = jax.random.split(_key_from_record(meta["key"]), 3)[1]
    net = model if isinstance(model, Network) else network(model, task, key=init_key)
    tx = _transformation(
        c["optimizer"], c["lr"], c["schedule"], c["steps"], c["decay_every"], c["decay_factor"], c["clip_norm"]
    )
    (net, _), meta = ckpt.load(checkpoint_dir, (net, tx.init(net)), step)
    return net, meta


def evaluate(net: Network, task, *, key=None, batch: int = 1000, split: str = "test") -> dict:
    """Loss, metric and success on held-out data: the whole ``split`` for data-set tasks (digits, text),
    else ``batch`` fresh sequences from ``key`` (e.g. 10,000 for Pascanu's temporal-order criterion)."""
    if hasattr(task, "dataset"):
        xs, ys = task.dataset(split)
    else:
        if key is None:
            raise ConfigError("key=None is not allowed for a synthetic task: give a jax.random key")
        xs, ys = task.sample(key, check_positive_int("batch", batch), split)
    preds = jax.jit(lambda n, x: n(x))(net, xs)
    metric = float(task.metric(preds, ys))
    return {"loss": float(task.loss(preds, ys)), task.metric_name: metric, "success": task.success(metric)}
