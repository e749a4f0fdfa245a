"""A training framework's model as a gradscope model, without touching the framework's state.

`to_gradscope(obj)` recognises, in this order:

* a gradscope model (the cell protocol: ``blocks``, ``block_sizes``, ``step``): returned as it is;
* a PyTorch ``nn.Module`` holding one recurrent module (``nn.RNN``/``nn.LSTM``/``nn.GRU`` or a modern
  recurrence of `gradscope.io.modern`, possibly inside the user's own module): `gradscope.io.from_torch`
  on the module, which reads ``state_dict()`` and copies every tensor out with ``.detach().cpu().numpy()``
  — here under ``torch.no_grad()``. The module's ``forward`` is never called, so its gradients
  (``.grad``), parameters, train/eval mode and the torch RNG are left as they were. An ``nn.RNN``'s
  ``nonlinearity`` (not in the state dict) is read from the module;
* a Flax NNX module (its ``nnx.Param`` state, read with ``nnx.state``) or a Flax linen parameter tree (a
  mapping holding one ``LSTMCell``/``OptimizedLSTMCell``/``GRUCell``): `gradscope.io.from_flax`;
* an Equinox module that is, or holds exactly one, ``eqx.nn.LSTMCell``/``GRUCell``: `gradscope.io.from_equinox`;
* any other mapping: a PyTorch state dict, `gradscope.io.from_torch`.

JAX arrays are immutable and JAX keys explicit, so reading a Flax or Equinox model changes nothing. Frameworks
are recognised only when the user has imported them (``sys.modules``); none is imported here.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from typing import Any

from gradscope._errors import ConfigError


def is_gradscope_model(obj: Any) -> bool:
    """True for an object following the cell protocol (a gradscope cell, `Stack`, `Bidirectional`, ...)."""
    return hasattr(obj, "blocks") and hasattr(obj, "block_sizes") and callable(getattr(obj, "step", None))


def _torch_module(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def _nnx_module(obj: Any) -> bool:
    nnx = sys.modules.get("flax.nnx")
    return nnx is not None and isinstance(obj, nnx.Module)


def _equinox_module(obj: Any) -> bool:
    eqx = sys.modules.get("equinox")
    return eqx is not None and isinstance(obj, eqx.Module)


def _from_torch(module: Any, options: Mapping[str, Any]):
    import torch

    from gradscope.io import from_torch

    opts = dict(options)
    rnns = [m for m in module.modules() if type(m) is torch.nn.RNN or type(m) is torch.nn.RNNCell]
    if "nonlinearity" not in opts and len(rnns) == 1:
        opts["nonlinearity"] = rnns[0].nonlinearity  # not in the state dict
    with torch.no_grad():  # from_torch reads state_dict() and copies each tensor with .detach().cpu().numpy()
        return from_torch(module, **opts)


def _is_equinox_cell(obj: Any) -> bool:
    return all(hasattr(obj, f) for f in ("weight_ih", "weight_hh", "hidden_size")) and not isinstance(obj, Mapping)


def _equinox_cells(obj: Any, path: str = "model", depth: int = 0) -> list[tuple[str, Any]]:
    """``(path, cell)`` for every Equinox LSTMCell/GRUCell inside ``obj`` (fields, lists, tuples, dicts)."""
    if _is_equinox_cell(obj):
        return [(path, obj)]
    if depth > 8:
        return []
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        items = [(f.name, getattr(obj, f.name, None)) for f in dataclasses.fields(obj)]
    elif isinstance(obj, (list, tuple)):
        items = [(f"[{i}]", v) for i, v in enumerate(obj)]
    elif isinstance(obj, Mapping):
        items = [(f"[{k!r}]", v) for k, v in obj.items()]
    else:
        return []
    out = []
    for name, v in items:
        sep = "" if name.startswith("[") else "."
        out += _equinox_cells(v, f"{path}{sep}{name}", depth + 1)
    return out


def _from_equinox(model: Any, options: Mapping[str, Any]):
    from gradscope.io import from_equinox

    cells = _equinox_cells(model)
    if len(cells) != 1:
        found = ", ".join(p for p, _ in cells) or "none"
        raise ConfigError(
            f"the Equinox model {type(model).__name__} holds {len(cells)} LSTMCell/GRUCell ({found}): the watcher "
            "needs exactly one; pass the cell itself to watcher.step, or convert= a function returning a gradscope "
            "model"
        )
    return from_equinox(cells[0][1], **options)


def _from_nnx(model: Any, options: Mapping[str, Any]):
    from flax import nnx

    from gradscope.io import from_flax

    return from_flax(nnx.to_pure_dict(nnx.state(model, nnx.Param)), **options)


def _from_mapping(tree: Mapping, options: Mapping[str, Any]):
    from gradscope.io import from_flax, from_torch
    from gradscope.io.flax import _norm, flax_cells
    from gradscope.io.formats import to_numpy_dict

    if flax_cells(_norm(to_numpy_dict(tree))):
        return from_flax(tree, **options)
    return from_torch(tree, **options)


def to_gradscope(obj: Any, **options: Any):
    """A gradscope model equal to ``obj`` (see the module docstring); ``options`` go to the importer
    (e.g. ``prefix=`` to choose one recurrent module of several, ``kind=``, ``dtype=``)."""
    if is_gradscope_model(obj) and not _torch_module(obj):
        if options:
            raise ConfigError(f"convert options {sorted(options)} are not allowed for a gradscope model")
        return obj
    if _torch_module(obj):
        return _from_torch(obj, options)
    if _nnx_module(obj):
        return _from_nnx(obj, options)
    if _equinox_module(obj) or _is_equinox_cell(obj):
        return _from_equinox(obj, options)
    if isinstance(obj, Mapping):
        return _from_mapping(obj, options)
    raise ConfigError(
        f"model={type(obj).__name__} is not allowed: watcher.step takes a PyTorch nn.Module, a Flax NNX module or "
        "linen parameter tree, an Equinox model, a PyTorch state dict or a gradscope model; for anything else "
        "pass convert= a function returning a gradscope model"
    )
