"""Import ``mingru-pytorch`` (lucidrains) ``minGRU`` / ``minLSTM`` layers into `gradscope.cells.mingru`.

Key names and shapes of one layer (``dim`` = m, ``dim_inner`` = n = int(m · expansion_factor)), all
``nn.Linear`` without bias::

    to_hidden_and_gate.weight        (2n, m)   minGRU: rows [W_h; W_z]
    to_hidden_and_f_i_gate.weight    (3n, m)   minLSTM: rows [W_h; W_f; W_i]
    to_out.weight                    (m, n)    only with proj_out (the default when expansion_factor != 1)

The package computes h̃ = g(W_h x) with the log-space g (g(a) = a + 0.5 for a ≥ 0, σ(a) otherwise) in both
its sequential and parallel modes, so the cells are built with ``g="log-space"`` and zero biases; the
layer output is ``to_out`` of the state (the cell's `readout`). State dicts of several such layers under
prefixes (``0.``, ``1.``, … of an ``nn.Sequential``, or ``layers.0.`` …) give a `gradscope.nets.Stack` in
the prefixes' natural order. Other tensors (a ``minLM``'s norms, feed-forwards, embeddings) are not a
stack of recurrences: pass ``prefix=`` to import one layer of such a model.

One difference from the package, documented rather than copied: its *parallel* minLSTM path, given a
``prev_hidden``, starts from g(prev_hidden) where its sequential path (and the paper) starts from
prev_hidden itself (v0.2.1). gradscope follows the sequential path; from a zero state the two agree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from gradscope.io._build import Importer, expect, resolve_dtype
from gradscope.io._plan import CellPlan, ModelPlan, stack
from gradscope.io.formats import ImportFormatError, check_float_array, to_numpy_dict

GATES = {"to_hidden_and_gate.weight": ("mingru", 2), "to_hidden_and_f_i_gate.weight": ("minlstm", 3)}
OUT = "to_out.weight"
SUFFIXES = tuple(GATES) + (OUT,)


def _split_key(key: str):
    """``(prefix, suffix)`` when ``key`` is a known minGRU/minLSTM tensor name, else None."""
    for s in SUFFIXES:
        if key == s or key.endswith("." + s):
            return key[: len(key) - len(s)], s
    return None


def layer_prefixes(keys) -> list[str]:
    """Prefixes of the minGRU/minLSTM layers named in ``keys``, in natural order (``2.`` before ``10.``)."""
    found = {p[0] for p in map(_split_key, keys) if p is not None}
    return sorted(found, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p)])


def recognise(keys: set[str]) -> bool:
    """Whether ``keys`` are those of minGRU/minLSTM layers (``mingru-pytorch``), and nothing else."""
    keys = set(keys)
    parts = [_split_key(k) for k in keys]
    return bool(keys) and all(p is not None for p in parts) and any(p is not None and p[1] in GATES for p in parts)


def _layer(arrays: Mapping[str, Any], prefix: str, source: str, dtype) -> CellPlan:
    present = [s for s in GATES if prefix + s in arrays]
    if not present:
        raise ImportFormatError(
            f"{source}: missing tensor {prefix + 'to_hidden_and_gate.weight'!r} (minGRU) "
            f"or {prefix + 'to_hidden_and_f_i_gate.weight'!r} (minLSTM)"
        )
    if len(present) > 1:
        raise ImportFormatError(
            f"{source}: both {prefix + present[0]!r} and {prefix + present[1]!r} exist: "
            "one layer is either a minGRU or a minLSTM"
        )
    key = prefix + present[0]
    kind, k = GATES[present[0]]
    w = check_float_array(np.asarray(arrays[key]), key, source)
    if w.ndim != 2 or w.shape[0] % k or w.shape[0] == 0 or w.shape[1] == 0:
        raise ImportFormatError(
            f"{source}: tensor {key!r} has shape {tuple(w.shape)}, expected ({k}·n, m) "
            f"(the {k} blocks of rows of a {kind} layer)"
        )
    n, m = w.shape[0] // k, w.shape[1]
    w_out = expect(arrays, prefix + OUT, (m, n), source) if prefix + OUT in arrays else None
    cls, gates = ("MinGRU", "hz") if kind == "mingru" else ("MinLSTM", "hfi")
    weights = {f"weight_{g}": w[j * n : (j + 1) * n] for j, g in enumerate(gates)}
    biases = {f"bias_{g}": np.zeros((n,)) for g in gates}
    static = {"input_size": m, "hidden_size": n, "g": "log-space"}
    return CellPlan("mingru", cls, static, weights | biases | {"weight_out": w_out}, dtype, name=kind)


@Importer
def from_state_dict(sd: Mapping, *, prefix: str | None = None, dtype=None, source: str = "state dict") -> ModelPlan:
    """The gradscope model equal to the ``mingru-pytorch`` layer(s) whose ``state_dict()`` is ``sd``
    (``from_state_dict.plan``: its plan).

    One layer → a `MinGRU` / `MinLSTM` cell (``g="log-space"``); several → a `gradscope.nets.Stack`.
    ``prefix`` selects one layer of a bigger state dict (e.g. ``"layers.0.2."`` in a ``minLM``).
    ``dtype``: float32 / float64 (default: float64 when every tensor is float64 and JAX has x64, else float32).
    Missing tensors, wrong shapes, NaN/inf values and unrelated tensors raise `ImportFormatError` naming them.
    """
    arrays = to_numpy_dict(sd, source=source)
    if prefix and prefix not in layer_prefixes(arrays) and prefix + "." in layer_prefixes(arrays):
        prefix += "."  # "layers.0" for "layers.0."
    if prefix is not None:
        if not any(k.startswith(prefix) and _split_key(k) == (prefix, k[len(prefix) :]) for k in arrays):
            raise ImportFormatError(
                f"{source}: prefix={prefix!r} names no minGRU/minLSTM tensor; layers found: "
                f"{layer_prefixes(arrays) or 'none'}"
            )
        prefixes = [prefix]
    else:
        prefixes = layer_prefixes(arrays)
        if not prefixes:
            raise ImportFormatError(
                f"{source}: no minGRU/minLSTM tensors found (expected "
                "'to_hidden_and_gate.weight' or 'to_hidden_and_f_i_gate.weight')"
            )
        extra = sorted(k for k in arrays if _split_key(k) is None)
        if extra:
            raise ImportFormatError(
                f"{source}: unexpected tensor {extra[0]!r} (and {len(extra) - 1} more) besides "
                f"the minGRU/minLSTM layers {prefixes}: pass prefix= to import one layer"
            )
    used = {p + s for p in prefixes for s in SUFFIXES if p + s in arrays}
    dt = resolve_dtype(dtype, [arrays[k] for k in used])
    return stack([_layer(arrays, p, source, dt) for p in prefixes])
