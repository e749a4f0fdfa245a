"""`run_sweep`: a whole grid, stacked, sharded and resumable."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gradscope._errors import check_positive_int
from gradscope._json import dumps
from gradscope.experiments.sweep.batching import analyse_configs, batchable, chunks, groups, plan_group
from gradscope.experiments.sweep.config import Config, analyse_config
from gradscope.experiments.sweep.resume import PARTIAL_SCHEMA, _settings, _write_lines, read_partial


def _record(a) -> dict:
    return json.loads(dumps(a.to_dict()))


def plan_grid(configs: list[Config]) -> None:
    """Refuse, in seconds, a grid holding a configuration that cannot run (`gradscope.analysis.plan`):
    every seed is checked, and one configuration per group of same-shaped ones is planned."""
    from gradscope.analysis.plan import check_seed
    from gradscope.experiments.plan import plan_config

    for cfg in configs:
        check_seed(cfg.seed)
    for group in groups(configs):
        plan_config(group[0])


def run_sweep(
    configs: list[Config],
    *,
    partial: str | os.PathLike | None = None,
    on_done: Callable[[Config, bool], None] | None = None,
    on_analysis: Callable[[Config, Any], None] | None = None,
    max_vmap: int | None = None,
    devices: Any = None,
) -> list[dict]:
    """Analyse every configuration; returns their ``to_dict()`` records in grid order.

    Same-shaped configurations (`groups`) are stacked and analysed by one jitted, vmapped program whose
    configuration axis is sharded over ``devices`` (default: every device of every process, see
    docs/scale.md); `plan_group` sizes the stacks from the memory budget, ``max_vmap`` caps them.

    ``partial``: a JSON-lines file; configurations already recorded there are not recomputed, each
    finished stack is appended (flushed and fsynced) at once. ``on_done(config, resumed)`` is called once
    per configuration (progress; resumed ones first); ``on_analysis(config, analysis)`` sees each freshly
    computed `Analysis` (e.g. to check it is finite) before it is recorded. Every record is round-tripped
    through JSON, so fresh and resumed records are identical. With several JAX processes
    (``jax.distributed``) every process computes, and only process 0 writes the partial file.
    """
    import jax

    if max_vmap is not None:
        max_vmap = check_positive_int("max_vmap", max_vmap)
    plan_grid(configs)  # before any work or file: sizes, seeds and memory of every group
    writer = jax.process_index() == 0
    n_devices = len(jax.devices() if devices is None else devices)
    done = read_partial(Path(partial), configs) if partial is not None else {}
    fh = None
    if partial is not None and writer:
        p = Path(partial)
        header = json.dumps({"schema": PARTIAL_SCHEMA, "settings": _settings(configs)})
        _write_lines(
            p,
            [header]
            + [
                json.dumps({"name": c.name, "config": c.to_dict(), "analysis": done[c.name]})
                for c in configs
                if c.name in done
            ],
        )
        fh = open(p, "a", encoding="utf-8")
    fresh: dict[str, dict] = {}

    def record(cfgs, analyses):
        recs = []
        for cfg, a in zip(cfgs, analyses):
            if on_analysis:
                on_analysis(cfg, a)
            recs.append(_record(a))
        if fh is not None:
            fh.write(
                "".join(
                    json.dumps({"name": c.name, "config": c.to_dict(), "analysis": r}) + "\n"
                    for c, r in zip(cfgs, recs)
                )
            )
            fh.flush()
            os.fsync(fh.fileno())
        for cfg, r in zip(cfgs, recs):
            fresh[cfg.name] = r
            if on_done:
                on_done(cfg, False)

    try:
        if on_done:
            for cfg in configs:
                if cfg.name in done:
                    on_done(cfg, True)
        for group in groups([c for c in configs if c.name not in done]):
            if not batchable(group[0]):
                for cfg in group:
                    record([cfg], [analyse_config(cfg)])
                continue
            size = plan_group(group, n_devices=n_devices, max_vmap=max_vmap)
            stacks, per = chunks(group, size, n_devices)
            for cfgs in stacks:
                record(cfgs, analyse_configs(cfgs, devices=devices, pad_to=per))
    finally:
        if fh is not None:
            fh.close()
    return [done[c.name] if c.name in done else fresh[c.name] for c in configs]
