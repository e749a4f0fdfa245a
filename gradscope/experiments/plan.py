"""Planning of the experiments layer: a sweep/CLI configuration before its model or inputs exist, and a
training run before its first step (the analysis-level planning and the byte counts are
`gradscope.analysis.plan`; the closed forms `gradscope.engine._memory`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gradscope.analysis.plan import analysis_bytes, analysis_stages, check_extents, check_sizes, label
from gradscope.engine._memory import SLACK, Sizes, check, gate_numbers, model_sizes, rollout_numbers

if TYPE_CHECKING:
    from gradscope.experiments.sweep import Config
    from gradscope.experiments.tasks import Task


def plan_config(cfg: Config) -> None:
    """Refuse, in seconds and before any weights or inputs exist, a sweep/CLI configuration that cannot run.

    Seeds beyond 64 bits, sizes beyond XLA's extents and stacks deeper than `MAX_LAYERS` are `ConfigError`s;
    otherwise the model is built abstractly (`jax.eval_shape`: shapes only, nothing allocated) and the
    analysis the configuration asks for is planned (`plan_analysis`, with ``hidden`` offered as a remedy).
    """
    import jax

    from gradscope import _random
    from gradscope.experiments.sweep.config import build_model

    check_sizes(seed=cfg.seed, layers=cfg.layers, hidden=cfg.hidden, length=cfg.length, batch=cfg.batch)

    def sizes(hidden: int) -> Sizes:
        c = dataclasses.replace(cfg, hidden=int(hidden))
        model = jax.eval_shape(lambda k: build_model(c, k), _random.key(0))
        m = getattr(model, "input_size", cfg.input_size) or 1
        return model_sizes(model, cfg.batch, cfg.length, int(m), hidden=int(hidden), rebuild=sizes)

    s = sizes(cfg.hidden)
    stages = analysis_stages(
        mode=cfg.mode, triangle=cfg.triangle, attribution=cfg.attribution, sensitivity=cfg.sensitivity
    )
    check(lambda z: analysis_bytes(z, stages), s, label(s, cfg.name))


def plan_model_config(model: Any, cfg: Config) -> None:
    """`plan_config` for a given (e.g. imported) ``model`` analysed with ``cfg``'s length, batch, seed and
    stages: refused before its inputs are drawn."""
    check_sizes(seed=cfg.seed, length=cfg.length, batch=cfg.batch)
    s = model_sizes(model, cfg.batch, cfg.length, int(model.input_size))
    stages = analysis_stages(
        mode=cfg.mode, triangle=cfg.triangle, attribution=cfg.attribution, sensitivity=cfg.sensitivity
    )
    check(lambda z: analysis_bytes(z, stages), s, label(s, cfg.name))


def training_bytes(s: Sizes, outputs: int) -> int:
    """Peak bytes of one training step (module docstring); ``outputs``: the readout's size per step."""
    per_seq = 2 * (rollout_numbers(s) + gate_numbers(s)) + 2 * s.length * outputs
    return int(SLACK * s.itemsize * (s.batch * per_seq + 4 * s.params))


def plan_training(
    model: Any, task: Task, *, batch: int, probe_batch: int, build: Callable[[int], Any] | None = None
) -> None:
    """Refuse a `train` run whose training step or diagnostics snapshot would not fit, before any work.

    ``model``: the recurrent model (or its `jax.eval_shape` twin); ``build(hidden)``: the model (abstract)
    at another hidden size, to offer a smaller hidden size as a remedy."""
    check_extents(batch=batch, probe_batch=probe_batch, length=task.length)
    T, m = int(task.length), int(task.input_size)

    def resized(hidden: int) -> Sizes:
        assert build is not None
        return model_sizes(build(hidden), batch, T, m, hidden=hidden, rebuild=resized)

    rebuild = resized if build is not None else None
    s = model_sizes(model, batch, T, m, rebuild=rebuild)
    out = int(task.output_size)
    check(lambda z: training_bytes(z, out), s, f"training (state size {s.state}, T = {s.length}, batch {s.batch})")
    p = model_sizes(model, probe_batch, T, m, rebuild=rebuild)
    stages = analysis_stages(spectra=False)
    check(lambda z: analysis_bytes(z, stages), p, label(p, "the diagnostics snapshot"))
