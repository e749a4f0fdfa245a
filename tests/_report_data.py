"""Real analyses of tiny models for the report tests (computed once per test session).

rnn-tanh on a batch of 2 sequences and an LSTM on one sequence, hidden 8, length 30, with the
triangle and (for the LSTM) the attribution. Attribution on the batch is left out until the engine's
batched attribution works (engine.attribution does not vmap the cotangents).
"""

from __future__ import annotations

import copy
import functools

import jax


@functools.cache
def _analyses() -> tuple[dict, ...]:
    import gradscope as gs

    out = []
    for i, (name, shape, attribution) in enumerate([("rnn-tanh", (2, 30, 3), False), ("lstm", (30, 3), True)]):
        cell = gs.cells.make(name, 3, 8, key=jax.random.key(i))
        xs = jax.random.normal(jax.random.key(10 + i), shape)
        out.append(gs.analyse(cell, xs, name=name, triangle=True, attribution=attribution).to_dict())
    return tuple(out)


def analyses() -> list[dict]:
    """Fresh deep copies (tests may mutate them)."""
    return copy.deepcopy(list(_analyses()))


@functools.cache
def _report(command: str) -> dict:
    from gradscope.report import build_report

    return build_report(list(_analyses()), command=command, config={"cells": ["rnn-tanh", "lstm"], "hidden": 8})


def full_report(command: str = "compare") -> dict:
    return copy.deepcopy(_report(command))


LIGHT_KEYS = (
    "schema",
    "name",
    "model",
    "blocks",
    "block_sizes",
    "length",
    "batch",
    "precision",
    "method",
    "summary",
    "lag_profile",
    "bound",
)


def light_report() -> dict:
    """The same report with only the lag profiles (one figure: fast to render)."""
    r = full_report()
    r["analyses"] = [{k: a[k] for k in LIGHT_KEYS if k in a} for a in r["analyses"]]
    return r
