"""Helpers shared by the reproductions: checks, training runs, analyses, formatting."""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from gradscope.experiments.reproduce._framework import Context

if TYPE_CHECKING:
    import jax

    from gradscope.experiments.runs import TrainResult
    from gradscope.experiments.tasks import Task


def _check(name: str, expected: str, measured: str, held: bool, judged: bool = True) -> dict:
    """One check of a claim. ``judged=False`` marks an observation outside the paper's setting: reported,
    but not part of whether the claim held."""
    return {"name": name, "expected": expected, "measured": measured, "held": bool(held), "judged": bool(judged)}


def _train_module():
    return importlib.import_module("gradscope.experiments.train")


def _downsample(values, max_points: int = 1000):
    """(steps, values) with at most ``max_points`` entries: block means of the curve (NaN-free input)."""
    v = np.asarray(values, np.float64)
    n = v.size
    if n <= max_points:
        return list(range(1, n + 1)), v.tolist()
    edges = np.linspace(0, n, max_points + 1).astype(int)
    steps = [int(edges[i + 1]) for i in range(max_points)]
    return steps, [float(v[edges[i] : edges[i + 1]].mean()) for i in range(max_points)]


def run_record(
    name: str,
    result: TrainResult | None = None,
    *,
    task: Task,
    history: dict[str, list[float]] | None = None,
    diverged: dict[str, Any] | None = None,
    final: dict[str, Any] | None = None,
    seconds: float = 0.0,
    config: dict[str, Any] | None = None,
    snapshots: Sequence[dict[str, Any]] = (),
) -> dict:
    """The JSON record of one training run (the report's ``training.runs`` entries; see
    `gradscope.report.training`): curves, snapshots, final evaluation, divergence."""
    if result is not None:
        loss, metric, gnorm = result.loss, result.metric, result.grad_norm
        config, snapshots = result.config, result.snapshots
    else:
        loss, metric, gnorm = (
            (history or {}).get("loss", []),
            (history or {}).get("metric", []),
            (history or {}).get("grad_norm", []),
        )
    steps, loss_ds = _downsample(loss)
    _, metric_ds = _downsample(metric)
    _, gnorm_ds = _downsample(gnorm)
    train_mod = _train_module()
    return {
        "name": name,
        "task": train_mod._plain(task.describe()),
        "config": dict(config or {}),
        "metric_name": task.metric_name,
        "baseline": float(task.baseline),
        "steps_done": len(loss),
        "step": steps,
        "loss": loss_ds,
        "metric": metric_ds,
        "grad_norm": gnorm_ds,
        "snapshots": train_mod._plain(list(snapshots)),
        "final": final,
        "diverged": diverged,
        "seconds": round(float(seconds), 2),
    }


def train_run(
    ctx: Context,
    name: str,
    model: Any,
    task: Task,
    *,
    key: jax.Array,
    steps: int,
    batch: int,
    lr: float,
    optimizer: str = "adam",
    clip_norm: float | None = None,
    indrnn_clip: float | None = None,
    snapshot_every: int | None = None,
    probe_batch: int = 8,
    eval_batch: int = 512,
    analyse_final: bool = True,
) -> dict:
    """Train ``model`` on ``task`` (`gradscope.experiments.train.train`), evaluate it on fresh data and record the run.

    A diverged run (NaN/inf loss) is an outcome, not an error: it is recorded with the step at which it
    diverged and its final numbers are None. Returns the run record (also appended to ``ctx.runs``).
    """
    import jax

    tr = _train_module()
    t0 = time.perf_counter()

    def forward(event):
        ctx.progress({**event, "run": name})

    try:
        res = tr.train(
            model,
            task,
            key=key,
            steps=steps,
            batch=batch,
            optimizer=optimizer,
            lr=lr,
            clip_norm=clip_norm,
            indrnn_clip=indrnn_clip,
            snapshot_every=snapshot_every,
            probe_batch=probe_batch,
            progress=forward,
        )
    except tr.TrainingDiverged as exc:
        rec = run_record(
            name,
            task=task,
            history=exc.history,
            diverged={"step": exc.step, "message": str(exc)},
            seconds=time.perf_counter() - t0,
            config={
                "steps": steps,
                "batch": batch,
                "optimizer": optimizer,
                "lr": lr,
                "clip_norm": clip_norm,
                "indrnn_clip": indrnn_clip,
            },
        )
        ctx.runs.append(rec)
        return rec
    ev = tr.evaluate(res.params, task, key=jax.random.fold_in(key, 7919), batch=eval_batch)
    final = {
        "loss": ev["loss"],
        task.metric_name: ev[task.metric_name],
        "success": ev["success"],
        "eval": (f"{eval_batch} fresh sequences" if not hasattr(task, "dataset") else "test split"),
    }
    rec = run_record(name, res, task=task, final=final, seconds=time.perf_counter() - t0)
    ctx.runs.append(rec)
    if analyse_final:
        probe_xs = task.sample(jax.random.split(key, 3)[2], probe_batch)[0]  # train()'s probe batch
        _analysis(ctx, res.params.rnn, probe_xs, name)
    return rec


#: the keys of an experiment's setting that `train_setting` passes on to `train_run` (those the setting has)
TRAINING_KEYS = ("steps", "batch", "lr", "optimizer", "clip_norm", "snapshot_every", "probe_batch", "eval_batch")


def training_knobs(**knobs: Any) -> dict[str, Any]:
    """The training knobs of an experiment's setting, in `TRAINING_KEYS` order, for ``dict(..., **training_knobs(
    steps=..., batch=..., lr=...), ...)``: `train_setting` passes on only the keys it knows, so a misspelt knob
    would be left out of every run without a word; here it fails when the module is imported."""
    unknown = sorted(set(knobs) - set(TRAINING_KEYS))
    if unknown:
        raise TypeError(f"unknown training knob {unknown[0]!r}: the knobs are {', '.join(TRAINING_KEYS)}")
    return {k: knobs[k] for k in TRAINING_KEYS if k in knobs}


def train_setting(
    ctx: Context, name: str, model: Any, task: Task, s: dict, *, key: jax.Array, **overrides: Any
) -> dict:
    """`train_run` with the training knobs of the experiment's setting ``s`` (those of `TRAINING_KEYS` it
    has); ``overrides`` (``lr=s["lr"][cell]``, ``optimizer="sgd"``, ``analyse_final=False`` ...) replace or add
    to them. Returns the run record."""
    kw: dict[str, Any] = {k: s[k] for k in TRAINING_KEYS if k in s}
    kw.update(overrides)
    return train_run(ctx, name, model, task, key=key, **kw)


def _analysis(ctx: Context, model, xs, name: str, **kw) -> dict:
    """Gradient-flow analysis as a JSON record (spectra and gate histograms off: the report is about
    training), appended to ``ctx.analyses`` and returned; ``kw`` go to `gradscope.analysis.analyse`."""
    from gradscope.analysis import analyse

    opts: dict[str, Any] = dict(lyapunov=True, spectra=False, gates=False, paths=True)
    opts.update(kw)
    record = analyse(model, xs, name=name, **opts).to_dict()
    ctx.analyses.append(record)
    return record


def _fmt(x, spec=".3f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def _final(rec: dict, key: str | None = None):
    """The final evaluated metric of a run, or None if it diverged."""
    f = rec.get("final")
    if not f:
        return None
    return f.get(key or rec["metric_name"])


def _indrnn_stack(m: int, hidden: int, layers: int, T: int, key, *, residual: bool = False):
    """IndRNN as in the official adding-problem code (Li et al. 2018): |u| ≤ 2^(1/T); the last layer
    starts with u ~ U((1/2)^(1/T), 2^(1/T)) so that its recurrent weights alone keep the signal over T
    steps, the others with u ~ U(0, 2^(1/T))."""
    import jax

    from gradscope.cells import make
    from gradscope.nets import Stack

    keys = jax.random.split(key, layers)
    cells, inp = [], m
    for l in range(layers):
        last = l == layers - 1
        cells.append(
            make("indrnn", inp, hidden, key=keys[l], max_length=T, gamma=2.0, u_min=0.5 ** (1.0 / T) if last else 0.0)
        )
        inp = hidden
    return Stack(tuple(cells), residual=residual) if layers > 1 else cells[0]
