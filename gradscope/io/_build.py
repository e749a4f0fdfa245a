"""What every importer shares: checking tensors, choosing the dtype, planning the classic cells from arrays in
PyTorch layout (`make_cell`), and turning a plan into the JAX model (`build`, and `Importer`, which makes a
``from_...`` function of a planner).

Every importer turns its framework's tensors into a `gradscope.io._plan.ModelPlan` with NumPy alone (classic
cells in PyTorch layout: ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``, ``weight_hr``; gate blocks stacked
on axis 0). JAX and the cells are imported only by `build` (and `cell_kind`), so ``gradscope inspect`` describes a
file without importing JAX.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, ParamSpec

import numpy as np

from gradscope._precision import x64_enabled
from gradscope.io._plan import CellPlan, ModelPlan
from gradscope.io.formats import ImportFormatError, check_float_array

KINDS = ("rnn", "lstm", "gru", "gru-chung")
GATES = {"rnn": 1, "lstm": 4, "gru": 3, "gru-chung": 3}
TORCH_NONLINEARITIES = ("tanh", "relu")
P = ParamSpec("P")


def resolve_dtype(dtype: Any, arrays: Iterable[np.ndarray]) -> np.dtype:
    """The model dtype: ``dtype`` if given, else float64 when every source array is float64 and JAX
    has x64 enabled, else float32 (half precision is widened)."""
    if dtype is not None:
        dt = np.dtype(dtype)
        if dt not in (np.float32, np.float64):
            raise ImportFormatError(f"dtype={dtype!r} is not allowed: expected float32 or float64")
        if dt == np.float64 and not x64_enabled():
            raise ImportFormatError("dtype=float64 needs JAX x64: set JAX_ENABLE_X64=1 or use jax.enable_x64()")
        return dt
    kinds = {np.dtype(a.dtype) for a in arrays}
    if kinds == {np.dtype(np.float64)} and x64_enabled():
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


def make_cell(
    kind: str,
    p: dict,
    *,
    input_size: int,
    hidden_size: int,
    proj_size: int = 0,
    nonlinearity: str = "tanh",
    dtype: Any = np.float32,
) -> CellPlan:
    """The plan of a gradscope cell of ``kind`` (`KINDS`) from PyTorch-layout arrays ``p`` (biases may be absent:
    zeros): `gradscope.cells.elman.Elman`, `gradscope.cells.lstm.LSTM`, or `gradscope.cells.gru.GRU` /
    `GRUChung`."""
    rows = GATES[kind] * hidden_size
    dt = np.dtype(dtype)
    weights: dict[str, np.ndarray | None] = {
        name: np.zeros((rows,), dt) if p.get(name) is None else np.asarray(p[name])
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    }
    static: dict[str, Any] = {"input_size": input_size, "hidden_size": hidden_size}
    if kind == "rnn":
        return CellPlan("elman", "Elman", static | {"activation": nonlinearity}, weights, dt)
    if kind == "lstm":
        weights["weight_hr"] = np.asarray(p["weight_hr"]) if proj_size else None
        return CellPlan("lstm", "LSTM", static | {"proj_size": proj_size}, weights, dt)
    return CellPlan("gru", "GRU" if kind == "gru" else "GRUChung", static, weights, dt)


def build(plan: ModelPlan) -> Any:
    """The JAX model of ``plan``: its cells, in a `gradscope.nets.Stack` / `Bidirectional` or a
    `gradscope.io.deep_bidirectional.DeepBidirectional` as the plan says."""
    import jax.numpy as jnp

    def cell(p: CellPlan) -> Any:
        cls = getattr(importlib.import_module(f"gradscope.cells.{p.module}"), p.cls)
        weights = {k: None if v is None else jnp.asarray(v, p.dtype) for k, v in p.weights.items()}
        return cls(**weights, **p.static, registry_name=p.name)

    cells = [cell(p) for p in plan.cells]
    if plan.structure == "cell":
        return cells[0]
    from gradscope.nets import Bidirectional, Stack

    if plan.structure == "Stack":
        return Stack(tuple(cells))
    layers = [Bidirectional(fwd, bwd) for fwd, bwd in zip(cells[::2], cells[1::2], strict=True)]
    if plan.structure == "Bidirectional":
        return layers[0]
    from gradscope.io.deep_bidirectional import DeepBidirectional

    return DeepBidirectional(tuple(layers))


class Importer(Generic[P]):
    """An importer (``from_torch``, ``from_state_dict``, ...) made of the planner it decorates, which checks the
    tensors with NumPy alone and returns a `ModelPlan`: calling the importer builds that plan into the JAX model
    (`build`); `plan` only plans (what `gradscope.io.inspect_file` needs). The importer carries the planner's
    name, signature and docstring."""

    def __init__(self, plan: Callable[P, ModelPlan]) -> None:
        self.plan = plan
        functools.update_wrapper(self, plan)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        return build(self.plan(*args, **kwargs))


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
