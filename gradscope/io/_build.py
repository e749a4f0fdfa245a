"""Build gradscope cells from arrays already in PyTorch layout (shared by every importer).

Every importer turns its framework's tensors into PyTorch-layout arrays (``weight_ih``, ``weight_hh``,
``bias_ih``, ``bias_hh``, ``weight_hr``; gate blocks stacked on axis 0) and calls `make_cell`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradscope.io.formats import ImportFormatError, check_float_array

KINDS = ("rnn", "lstm", "gru", "gru-chung")
GATES = {"rnn": 1, "lstm": 4, "gru": 3, "gru-chung": 3}
TORCH_NONLINEARITIES = ("tanh", "relu")


def resolve_dtype(dtype, arrays) -> np.dtype:
    """The model dtype: ``dtype`` if given, else float64 when every source array is float64 and JAX
    has x64 enabled, else float32 (half precision is widened)."""
    if dtype is not None:
        dt = np.dtype(dtype)
        if dt not in (np.float32, np.float64):
            raise ImportFormatError(f"dtype={dtype!r} is not allowed: expected float32 or float64")
        if dt == np.float64 and not jax.config.read("jax_enable_x64"):
            raise ImportFormatError("dtype=float64 needs JAX x64: set JAX_ENABLE_X64=1 or use jax.enable_x64()")
        return dt
    kinds = {np.dtype(a.dtype) for a in arrays}
    if kinds == {np.dtype(np.float64)} and jax.config.read("jax_enable_x64"):
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def expect(arrays: Mapping, key: str, shape: tuple, source: str, *, label: str | None = None) -> np.ndarray:
    """``arrays[key]``, checked to exist, be a finite float array and have ``shape``."""
    label = label or key
    if key not in arrays:
        raise ImportFormatError(f"{source}: missing tensor {label!r} (expected shape {shape})")
    arr = check_float_array(np.asarray(arrays[key]), label, source)
    if tuple(arr.shape) != tuple(shape):
        raise ImportFormatError(f"{source}: tensor {label!r} has shape {tuple(arr.shape)}, expected {tuple(shape)}")
    return arr


def with_name(cell, name: str):
    """``cell`` recorded under the registry name ``name`` (what `Cell.name` reports; set on every cell by
    `gradscope.cells._base.pytree_cell`)."""
    return dataclasses.replace(cell, registry_name=name)


def make_cell(
    kind: str,
    p: dict,
    *,
    input_size: int,
    hidden_size: int,
    proj_size: int = 0,
    nonlinearity: str = "tanh",
    dtype: Any = np.float32,
):
    """A gradscope cell from PyTorch-layout arrays ``p`` (biases may be absent: zeros)."""
    from gradscope.cells.elman import Elman
    from gradscope.cells.lstm import LSTM

    n = hidden_size
    g = GATES[kind]

    def a(name, rows=None):
        if p.get(name) is None:
            return jnp.zeros((rows if rows is not None else g * n,), dtype)
        return jnp.asarray(np.asarray(p[name]), dtype)

    w_ih, w_hh = a("weight_ih"), a("weight_hh")
    b_ih, b_hh = a("bias_ih", g * n), a("bias_hh", g * n)
    if kind == "rnn":
        return Elman(w_ih, w_hh, b_ih, b_hh, input_size=input_size, hidden_size=n, activation=nonlinearity)
    if kind == "lstm":
        w_hr = a("weight_hr") if proj_size else None
        return LSTM(w_ih, w_hh, b_ih, b_hh, w_hr, input_size=input_size, hidden_size=n, proj_size=proj_size)
    from gradscope.cells.gru import GRU, GRUChung

    cls = GRU if kind == "gru" else GRUChung
    return cls(w_ih, w_hh, b_ih, b_hh, input_size=input_size, hidden_size=n)


def cell_kind(cell) -> str:
    """The importer kind of a gradscope cell (for export), or raise."""
    from gradscope.cells.elman import Elman
    from gradscope.cells.lstm import LSTM

    if isinstance(cell, Elman):
        return "rnn"
    if isinstance(cell, LSTM):
        return "lstm"
    try:
        from gradscope.cells.gru import GRU, GRUChung
    except ImportError:  # pragma: no cover - while the GRU module is not there
        GRU = GRUChung = ()
    if GRU and isinstance(cell, GRU):
        return "gru"
    if GRUChung and isinstance(cell, GRUChung):
        return "gru-chung"
    raise ImportFormatError(f"cannot export a {type(cell).__name__} cell: export supports Elman (rnn), LSTM and GRU")
