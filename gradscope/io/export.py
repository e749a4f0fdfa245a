"""Export gradscope models back to PyTorch ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` names (``weight_ih_l{k}[_reverse]``
...), as NumPy arrays, ``.safetensors`` or ``.npz`` with the configuration in the metadata.

Where each cell sits (layer, direction) is read from the model protocol, ``model.named_cells()``: prefixes
``""`` (a cell), ``"layer{l}."`` (a `gradscope.nets.Stack`), ``"fwd."``/``"bwd."`` (a `gradscope.nets.Bidirectional`)
and ``"layer{l}.fwd."`` (`gradscope.io.deep_bidirectional.DeepBidirectional`, PyTorch's multi-layer wiring).
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from gradscope.io._build import TORCH_NONLINEARITIES
from gradscope.io.formats import ImportFormatError, write_npz, write_safetensors


def _cell_params(c) -> dict[str, np.ndarray]:
    from gradscope.io._build import cell_kind

    kind = cell_kind(c)
    out = {"weight_ih": c.weight_ih, "weight_hh": c.weight_hh, "bias_ih": c.bias_ih, "bias_hh": c.bias_hh}
    if kind == "lstm" and c.weight_hr is not None:
        out["weight_hr"] = c.weight_hr
    return {k: np.asarray(v) for k, v in out.items()}


def _position(prefix: str, source_name: str) -> tuple[int, int]:
    """``(layer, direction)`` of a leaf cell from its `named_cells` prefix: ``""``, ``"layer2."``, ``"bwd."``,
    ``"layer2.fwd."``; any other nesting has no PyTorch counterpart."""
    m = re.fullmatch(r"(?:layer(?P<l>\d+)\.)?(?:(?P<d>fwd|bwd)\.)?", prefix)
    if m is None:
        raise ImportFormatError(
            f"cannot export {source_name}: its cell at {prefix!r} is nested in a way nn.RNN/LSTM/GRU cannot express "
            "(export takes a cell, a Stack of cells, a Bidirectional cell pair or a DeepBidirectional)"
        )
    return int(m.group("l") or 0), int(m.group("d") == "bwd")


def _layers_of(model):
    """``(kind, [[fwd] or [fwd, bwd] per layer], nonlinearity, proj)`` of an exportable model, from its leaf
    cells (``model.named_cells()``): the prefixes say where each cell sits (layer, direction)."""
    from gradscope.io._build import cell_kind

    name = type(model).__name__
    named = model.named_cells() if callable(getattr(model, "named_cells", None)) else (("", model),)
    if getattr(model, "residual", False):
        raise ImportFormatError("a residual Stack has no PyTorch nn.RNN/LSTM/GRU equivalent")
    where = {_position(p, name): c for p, c in named}
    layers = 1 + max(l for l, _ in where)
    dirs = 1 + max(d for _, d in where)
    if len(where) != layers * dirs:
        raise ImportFormatError(f"cannot export {name}: its cells {sorted(p for p, _ in named)} are not a full grid")
    if layers > 1 and dirs == 2 and getattr(model, "name", "") != "deep-bidirectional":
        raise ImportFormatError(
            f"cannot export {name}: a stack of bidirectional layers that step together is not PyTorch's "
            "multi-layer bidirectional RNN (each layer reads the whole sequence first): use DeepBidirectional"
        )
    grid: list[list[Any]] = [[where[(l, d)] for d in range(dirs)] for l in range(layers)]
    cells = [c for row in grid for c in row]
    kinds = {cell_kind(c) for c in cells}
    if len(kinds) != 1:
        raise ImportFormatError(f"cannot export a model mixing cell kinds {sorted(kinds)} as one PyTorch module")
    kind = kinds.pop()
    if kind == "gru-chung":
        raise ImportFormatError(
            "the Cho/Chung GRU (reset before the matmul) has no PyTorch equivalent; "
            "PyTorch's GRU resets after the matmul"
        )
    nonlin = None
    if kind == "rnn":
        acts = {c.activation for c in cells}
        if len(acts) != 1 or not acts <= set(TORCH_NONLINEARITIES):
            raise ImportFormatError(f"nn.RNN supports nonlinearity tanh or relu; the model has {sorted(acts)}")
        nonlin = acts.pop()
    sizes = {(c.hidden_size, getattr(c, "proj_size", 0)) for c in cells}
    if len(sizes) != 1:
        raise ImportFormatError(f"PyTorch needs one hidden/proj size for all layers; the model has {sorted(sizes)}")
    return kind, grid, nonlin, sizes.pop()[1]


def to_torch_state_dict(model) -> dict[str, np.ndarray]:
    """NumPy arrays under PyTorch's ``nn.RNN``/``nn.LSTM``/``nn.GRU`` key names (``*_l{k}[_reverse]``).

    Load into torch with ``module.load_state_dict({k: torch.from_numpy(v) ...})``.
    """
    _, grid, _, _ = _layers_of(model)
    out = {}
    for l, row in enumerate(grid):
        for d, c in enumerate(row):
            for name, v in _cell_params(c).items():
                out[f"{name}_l{l}{'_reverse' if d else ''}"] = v
    return out


def torch_metadata(model) -> dict[str, str]:
    """What a state dict does not say, as safetensors metadata (strings)."""
    kind, grid, nonlin, proj = _layers_of(model)
    cfg = {
        "kind": kind,
        "num_layers": len(grid),
        "bidirectional": len(grid[0]) == 2,
        "proj_size": proj,
        "hidden_size": grid[0][0].hidden_size,
        "input_size": grid[0][0].input_size,
    }
    if nonlin:
        cfg["nonlinearity"] = nonlin
    meta = {"format": "pt", "source": "gradscope", "kind": kind, "gradscope": json.dumps(cfg)}
    if nonlin:
        meta["nonlinearity"] = nonlin
    return meta


def save_safetensors(model, path) -> None:
    """Write ``to_torch_state_dict(model)`` with its config in the safetensors metadata."""
    write_safetensors(path, to_torch_state_dict(model), torch_metadata(model))


def save_npz(model, path) -> None:
    """Write ``to_torch_state_dict(model)`` to an .npz with a JSON ``__metadata__`` entry (no pickle)."""
    write_npz(path, to_torch_state_dict(model), torch_metadata(model))
