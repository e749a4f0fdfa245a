"""A model as plain data: what an importer decides before anything is built, and what the built model will report.

`CellPlan` is one gradscope cell: its class, its static fields (sizes, activation, head counts, ...), its weights as
NumPy arrays under the cell's own field names, and the dtype they take. `ModelPlan` is how the cells are assembled:
one cell, a `gradscope.nets.Stack`, a `gradscope.nets.Bidirectional` or a
`gradscope.io.deep_bidirectional.DeepBidirectional`, its cells in the order of the model's ``named_cells()``.

Importers check a file's tensors and write a plan with NumPy alone; `gradscope.io._build.build` turns the plan into
the JAX model, and ``gradscope inspect`` describes the plan (`gradscope.io.inspect.describe_plan`) without
importing JAX. For that a plan answers, for each cell, what the built cell reports: all its static fields
(``describe()``), its flat ``state_size`` and its ``output_size``. `_CLASSES` holds what that takes to know of each
cell class an importer builds; tests/test_io_others.py and tests/test_io_modern.py build the model of every
architecture and check that its description equals the plan's, so a change to a cell class that the table misses
fails there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from gradscope._errors import check_chained


@dataclasses.dataclass(frozen=True)
class CellPlan:
    """One cell: ``gradscope.cells.<module>.<cls>(**weights, **static)`` with every weight cast to ``dtype``
    (``None`` stays ``None``), recorded under the registry name ``name`` (``""``: the cell's class name)."""

    module: str
    cls: str
    static: Mapping[str, Any]
    weights: Mapping[str, np.ndarray | None]
    dtype: np.dtype
    name: str = ""

    @property
    def fields(self) -> dict[str, Any]:
        """Every static field of the built cell in its class's order: the sizes, then the class's own, those the
        importer leaves at their class default included."""
        statics = _CLASSES[self.cls].statics
        out = {"input_size": self.static["input_size"], "hidden_size": self.static["hidden_size"]}
        return out | {k: self.static[k] if k in self.static or d is ... else d for k, d in statics.items()}

    @property
    def state_size(self) -> int:
        """The size of the built cell's flat state."""
        return _CLASSES[self.cls].state_size(self)

    @property
    def output_size(self) -> int:
        """The width the built cell feeds the next layer of a stack."""
        return _CLASSES[self.cls].output_size(self)

    def describe(self) -> dict[str, Any]:
        """The built cell's ``describe()``: its name, its static fields and what its class adds."""
        return {"cell": self.name or self.cls, **self.fields, **_CLASSES[self.cls].extras(self)}


def _n(plan: CellPlan) -> int:
    return plan.fields["hidden_size"]


@dataclasses.dataclass(frozen=True)
class _Class:
    """What a plan needs to know of a cell class without importing it: ``statics`` its static fields after
    ``input_size`` and ``hidden_size`` in declaration order, each with its default (``...``: none, every importer
    gives it); its flat ``state_size`` and its ``output_size`` (default: ``hidden_size``, one ``h`` block); the
    ``extras`` its ``describe()`` adds."""

    statics: Mapping[str, Any]
    state_size: Callable[[CellPlan], int] = _n
    output_size: Callable[[CellPlan], int] = _n
    extras: Callable[[CellPlan], dict[str, Any]] = lambda plan: {}


def _lstm_h(plan: CellPlan) -> int:  # blocks h (proj_size or n) and c (n)
    return plan.fields["proj_size"] or _n(plan)


def _channels(plan: CellPlan) -> int:  # the selective SSMs: N = hidden_size states in each channel
    f = plan.fields
    return f["input_size"] if plan.cls == "Mamba" else f["num_heads"] * f["head_dim"]


def _mlstm_state(plan: CellPlan) -> int:  # blocks h (n), C (heads·Dh²), n (n), m (heads)
    n, heads = _n(plan), plan.fields["num_heads"]
    return 2 * n + heads * (n // heads) ** 2 + heads


def _rows(field: str) -> Callable[[CellPlan], int]:
    """The output width of a cell whose output is weight ``field`` times its state: that weight's rows (without
    the weight, the state's ``hidden_size``)."""

    def rows(plan: CellPlan) -> int:
        weight = plan.weights.get(field)
        return _n(plan) if weight is None else int(weight.shape[0])

    return rows


def _weight_given(field: str, key: str) -> Callable[[CellPlan], dict[str, Any]]:
    return lambda plan: {key: plan.weights.get(field) is not None}


# minGRU/minLSTM: y = W_out h with proj_out, else h
_MIN = _Class({"g": "identity"}, output_size=_rows("weight_out"), extras=_weight_given("weight_out", "proj_out"))
_CLASSES: dict[str, _Class] = {
    "Elman": _Class({"activation": "tanh"}),
    "LSTM": _Class({"proj_size": 0}, lambda p: _lstm_h(p) + _n(p), _lstm_h),
    "GRU": _Class({}),
    "GRUChung": _Class({}),
    "Mamba": _Class({"dt_rank": ...}, lambda p: _channels(p) * _n(p), _channels),
    "Mamba2": _Class(
        {"num_heads": ..., "head_dim": ..., "n_groups": 1, "time_step_limit": None},
        lambda p: _channels(p) * _n(p),
        _channels,
    ),
    "MinGRU": _MIN,
    "MinLSTM": _MIN,
    "SLSTM": _Class({"num_heads": 1, "forget_gate": "sigmoid", "norm_eps": 1e-5}, lambda p: 4 * _n(p)),  # h, c, n, m
    "MLSTM": _Class({"num_heads": 1, "forget_gate": "sigmoid", "eps": 1e-6, "norm_eps": 1e-5}, _mlstm_state),
    # blocks re, im; the output y = Re(C h) + D x has C's rows
    "LRU": _Class({"normalise": True}, lambda p: 2 * _n(p), _rows("C_re")),
    "RGLRU": _Class(
        {"num_heads": 1, "c": 8.0, "reset_at_start": False}, extras=_weight_given("weight_in", "projection")
    ),
}


@dataclasses.dataclass(frozen=True)
class ModelPlan:
    """The cells of a model and how they are assembled: ``structure`` is ``"cell"`` (one cell) or the class of the
    model that holds them (``"Stack"``, ``"Bidirectional"``, ``"DeepBidirectional"``). Bidirectional models list
    each layer's forward cell, then its backward cell."""

    structure: str
    cells: tuple[CellPlan, ...]

    @property
    def bidirectional(self) -> bool:
        """Whether each layer runs in both directions."""
        return self.structure in ("Bidirectional", "DeepBidirectional")

    @property
    def num_layers(self) -> int:
        """The number of layers (a bidirectional layer holds two cells)."""
        return len(self.cells) // 2 if self.bidirectional else len(self.cells)


def assemble(cell: Callable[[int, str], CellPlan], num_layers: int, bidirectional: bool) -> ModelPlan:
    """The plan of a cell, `Stack`, `Bidirectional` or `DeepBidirectional` from ``cell(layer, "fwd"|"bwd")``.

    A stack's layers must chain, as `gradscope.nets.Stack` checks (a `ConfigError` naming the layer); the widths of
    bidirectional layers come from PyTorch's layout, whose shapes the importer has checked."""
    if not bidirectional:
        cells = tuple(cell(l, "fwd") for l in range(num_layers))
        for l in range(1, num_layers):
            check_chained(l, cells[l].static["input_size"], cells[l - 1].output_size)
        return ModelPlan("cell" if num_layers == 1 else "Stack", cells)
    cells = tuple(c for l in range(num_layers) for c in (cell(l, "fwd"), cell(l, "bwd")))
    return ModelPlan("Bidirectional" if num_layers == 1 else "DeepBidirectional", cells)


def stack(cells: Sequence[CellPlan]) -> ModelPlan:
    """One cell, or a `Stack` of several (layer 0 first)."""
    return assemble(lambda layer, _: cells[layer], len(cells), False)
