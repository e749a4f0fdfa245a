"""Device batching: configurations that differ only in their weights are grouped, stacked and analysed by
one jitted, vmapped program sharded over the devices (`gradscope.analysis.batch`); stack sizes come from
the memory budget."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from gradscope.experiments.sweep.config import Config, build_model, config_inputs, config_keys


def _group_key(c: Config) -> tuple:
    """Configurations with equal keys build models of the same structure and shapes (they differ only in
    weights: gain, seed), so they can be stacked and vmapped together."""
    opts = {k: v for k, v in c.options.items() if k != "gain"}
    return (
        c.cell,
        json.dumps(opts, sort_keys=True, default=str),
        c.hidden,
        c.length,
        c.batch,
        c.input,
        c.input_size,
        c.dtype,
        c.layers,
        c.residual,
        c.mode,
        c.triangle,
        c.attribution,
    )


def batchable(c: Config) -> bool:
    """The stacked engine computes the default exact-mode stages; probe mode, triangles and attribution
    are analysed one configuration at a time."""
    return c.mode == "exact" and not c.triangle and not c.attribution


def groups(configs: Sequence[Config]) -> list[list[Config]]:
    """Same-shaped configurations together (first appearance order; grid order within a group)."""
    out: dict[tuple, list[Config]] = {}
    for c in configs:
        out.setdefault(_group_key(c), []).append(c)
    return list(out.values())


def analyse_configs(configs: Sequence[Config], *, devices: Any = None, pad_to: int | None = None) -> list:
    """Analyses of same-shaped configurations as ONE stacked, vmapped, sharded program
    (`gradscope.analysis.batch.analyse_stack`); equal to `analyse_config` of each.

    Keys come from each configuration's own seed (`config_keys`), never from its position in the stack,
    a shard or a device, so a result does not depend on how the sweep is split up.
    """
    from gradscope.analysis.batch import analyse_stack

    models, xs = [], []
    for c in configs:
        k_model, k_input = config_keys(c.seed)
        model = build_model(c, k_model)
        models.append(model)
        xs.append(np.asarray(config_inputs(c, k_input, int(model.input_size))))
    return analyse_stack(
        models,
        np.stack(xs),
        names=[c.name for c in configs],
        threshold=configs[0].threshold,
        devices=devices,
        pad_to=pad_to,
    )


def plan_group(group: Sequence[Config], *, n_devices: int = 1, max_vmap: int | None = None) -> int:
    """How many of ``group``'s configurations to vmap at once (memory budget, device count, ``max_vmap``);
    raises `ResourceError` when even one does not fit."""
    from gradscope.analysis.batch import plan_stack

    c = group[0]
    model = build_model(c, config_keys(c.seed)[0])
    return plan_stack(
        model,
        c.batch,
        c.length,
        int(model.input_size),
        len(group),
        n_devices=n_devices,
        max_vmap=max_vmap,
        what=f"one configuration of the sweep ({c.name})",
    )


def chunks(group: Sequence[Config], size: int, n_devices: int = 1) -> tuple[list[list[Config]], int]:
    """Split ``group`` into stacks of at most ``size``, as even as possible, each padded to the same
    length (a multiple of the device count) so the whole group compiles once. Returns (stacks, padded length)."""
    n = len(group)
    k = -(-n // max(1, size))
    per = -(-n // k)
    per = -(-per // n_devices) * n_devices
    return [list(group[i : i + per]) for i in range(0, n, per)], per
