"""Import PyTorch ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (and the ``*Cell`` modules) — and export back.

Key names and shapes (torch.nn.RNN/LSTM/GRU documentation; G = gates: RNN 1, GRU 3, LSTM 4; D = 2 if bidirectional;
P = proj_size, h = P or H)::

    weight_ih_l{k}[_reverse]   (G·H, I) for k = 0, (G·H, D·h) for k ≥ 1
    weight_hh_l{k}[_reverse]   (G·H, h)
    bias_ih_l{k}, bias_hh_l{k} (G·H,)            absent when bias=False
    weight_hr_l{k}[_reverse]   (P, H)            LSTM with proj_size > 0
    weight_ih, weight_hh, ...                    nn.RNNCell / LSTMCell / GRUCell (no suffix)

gradscope's cells use this layout verbatim, so import is a rename: LSTM gates i, f, g, o; GRU
r, z, n with the reset applied after the recurrent matmul (`gradscope.cells.gru.GRU`).

What the state dict does not hold: the RNN ``nonlinearity`` (tanh or relu) — pass it, or put it
in a sidecar ``<file>.json`` / safetensors metadata as ``{"nonlinearity": "relu"}``. Precedence:
argument > sidecar > file metadata > "tanh".

Result: one layer, one direction → the cell; ``num_layers > 1`` → `gradscope.nets.Stack`;
bidirectional, one layer → `gradscope.nets.Bidirectional`; bidirectional with ``num_layers > 1``
→ `gradscope.io.deep_bidirectional.DeepBidirectional` (not a single recurrence; analyse its layers
one at a time with ``layer_models_and_inputs``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from gradscope.io._arrays import kind_by_gates
from gradscope.io._build import TORCH_NONLINEARITIES, Importer, expect, make_cell, resolve_dtype
from gradscope.io._plan import ModelPlan, assemble
from gradscope.io.formats import (
    DEFAULT_MAX_BYTES,
    ImportFormatError,
    check_float_array,
    read_arrays,
    to_numpy_dict,
)

_LAYERED = re.compile(
    r"^(?P<prefix>.*?)(?P<param>weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)"
    r"_l(?P<layer>\d+)(?P<rev>_reverse)?$"
)
_CELL = re.compile(r"^(?P<prefix>.*?)(?P<param>weight_ih|weight_hh|bias_ih|bias_hh)$")


def _prefixes(keys) -> dict[str, str]:
    """Candidate module prefixes -> "layered" or "cell", from the ``weight_ih*`` keys."""
    out = {}
    for k in keys:
        m = _LAYERED.match(k)
        if m and m.group("param") == "weight_ih" and m.group("layer") == "0" and not m.group("rev"):
            out[m.group("prefix")] = "layered"
            continue
        m = _CELL.match(k)
        if m and m.group("param") == "weight_ih":
            out.setdefault(m.group("prefix"), "cell")
    return out


def infer_layout(
    arrays: Mapping[str, Any], *, prefix: str | None = None, kind: str | None = None, source: str = "state dict"
) -> dict:
    """Work out what a PyTorch state dict holds, checking every name and shape.

    Returns ``{"kind", "input_size", "hidden_size", "proj_size", "num_layers", "bidirectional",
    "bias", "prefix", "style" ("layered"/"cell"), "params": {(layer, direction): {name: key}},
    "ignored": [keys outside the prefix]}``. Raises `ImportFormatError` naming the tensor and the
    expected shape on anything missing, extra, misshapen, non-float or non-finite.
    """
    from gradscope.io import modern

    cands = _prefixes(arrays)
    if prefix is None:
        if not cands:
            raise ImportFormatError(
                f"{source}: no PyTorch RNN weights found (no 'weight_ih_l0' or 'weight_ih' key) and no "
                f"modern layout ({modern.MARKERS}); keys are {sorted(arrays)[:12]}"
            )
        if len(cands) > 1:
            raise ImportFormatError(
                f"{source}: several recurrent modules found (prefixes {sorted(cands)}); pass prefix= to choose one"
            )
        prefix = next(iter(cands))
    elif prefix not in cands:
        raise ImportFormatError(
            f"{source}: prefix={prefix!r} has no 'weight_ih_l0'/'weight_ih' key; prefixes found: {sorted(cands)}"
        )
    style = cands[prefix]
    own = [k for k in arrays if k.startswith(prefix)]
    ignored = sorted(k for k in arrays if not k.startswith(prefix))
    for k in own:  # dtype and finiteness first: a wrong dtype explains any shape error after it
        check_float_array(np.asarray(arrays[k]), k, source)

    def key(param, layer, rev):
        if style == "cell":
            return f"{prefix}{param}"
        return f"{prefix}{param}_l{layer}{'_reverse' if rev else ''}"

    # sizes from layer 0, forward
    w_hh = np.asarray(arrays.get(key("weight_hh", 0, False), np.zeros((0, 0))))
    w_ih = np.asarray(arrays[key("weight_ih", 0, False)])
    if key("weight_hh", 0, False) not in arrays:
        raise ImportFormatError(f"{source}: missing tensor {key('weight_hh', 0, False)!r}")
    if w_ih.ndim != 2 or w_hh.ndim != 2:
        raise ImportFormatError(
            f"{source}: {key('weight_ih', 0, False)!r} has shape {w_ih.shape} and "
            f"{key('weight_hh', 0, False)!r} has shape {w_hh.shape}; both must be matrices"
        )
    hr_key = key("weight_hr", 0, False)
    if style == "layered" and hr_key in arrays:
        w_hr = np.asarray(arrays[hr_key])
        if w_hr.ndim != 2:
            raise ImportFormatError(
                f"{source}: tensor {hr_key!r} has shape {w_hr.shape}, expected (proj_size, hidden_size)"
            )
        proj, hidden = int(w_hr.shape[0]), int(w_hr.shape[1])
    else:
        proj, hidden = 0, int(w_hh.shape[1])
    gates, inferred = kind_by_gates(
        w_hh.shape, w_hh.shape[0], hidden, kind, f"{source}: {key('weight_hh', 0, False)!r}"
    )
    if proj and inferred != "lstm":
        raise ImportFormatError(f"{source}: {hr_key!r} (projection) exists but the gate count says {inferred}")
    if proj and not 0 < proj < hidden:
        raise ImportFormatError(f"{source}: {hr_key!r} has shape {(proj, hidden)}: proj_size must be < hidden_size")
    input_size = int(w_ih.shape[1])

    if style == "cell":
        layers, bidir = 1, False
    else:
        found = {int(m.group("layer")) for k in own if (m := _LAYERED.match(k))}
        layers = max(found) + 1
        bidir = key("weight_ih", 0, True) in arrays or key("weight_hh", 0, True) in arrays
    has_bias = key("bias_ih", 0, False) in arrays or key("bias_hh", 0, False) in arrays
    h_out = proj or hidden
    D = 2 if bidir else 1
    G = gates * hidden
    params, expected_keys = {}, set()
    for layer in range(layers):
        m = input_size if layer == 0 else D * h_out
        for rev in [False, True] if bidir else [False]:
            shapes = {"weight_ih": (G, m), "weight_hh": (G, h_out)}
            if has_bias:
                shapes |= {"bias_ih": (G,), "bias_hh": (G,)}
            if proj:
                shapes["weight_hr"] = (proj, hidden)
            entry = {}
            for param, shape in shapes.items():
                k = key(param, layer, rev)
                expect(arrays, k, shape, source)
                entry[param] = k
                expected_keys.add(k)
            params[(layer, "bwd" if rev else "fwd")] = entry
    extra = sorted(set(own) - expected_keys)
    if extra:
        raise ImportFormatError(
            f"{source}: unexpected tensor(s) {extra} for a {layers}-layer "
            f"{'bidirectional ' if bidir else ''}{inferred} with bias={has_bias}, "
            f"proj_size={proj} (missing biases or _reverse weights in some layer?)"
        )
    return {
        "kind": inferred,
        "input_size": input_size,
        "hidden_size": hidden,
        "proj_size": proj,
        "num_layers": layers,
        "bidirectional": bidir,
        "bias": has_bias,
        "prefix": prefix,
        "style": style,
        "params": params,
        "ignored": ignored,
    }


def _meta_value(meta: dict, name: str):
    v = meta.get(name)
    if v is None and "gradscope" in meta:  # our own export nests its config as JSON
        try:
            v = json.loads(meta["gradscope"]).get(name)
        except (json.JSONDecodeError, AttributeError):
            v = None
    return v


def _read(source, max_bytes: int):
    """``(arrays, metadata, description, hints)``: an ``nn.Module`` is read through its ``state_dict()``, and
    what its state dict cannot say (a transformers ``config``; a Mamba2Mixer's ``n_groups``/``ssm_state_size``)
    is kept as Mamba hints."""
    hints: dict = {}
    if not isinstance(source, (Mapping, str, os.PathLike)) and callable(getattr(source, "state_dict", None)):
        config = getattr(source, "config", None)
        if config is not None:
            hints["config"] = config
        elif all(hasattr(source, a) for a in ("n_groups", "ssm_state_size")):
            hints["config"] = {
                "n_groups": source.n_groups,
                "state_size": source.ssm_state_size,
                "time_step_limit": getattr(source, "time_step_limit", None),
            }
        return to_numpy_dict(source.state_dict(), source=type(source).__name__), {}, type(source).__name__, hints
    arrays, meta, desc = read_arrays(source, max_bytes=max_bytes)
    return arrays, meta, desc, hints


@Importer
def from_torch(
    source,
    *,
    kind: str | None = None,
    nonlinearity: str | None = None,
    prefix: str | None = None,
    dtype=None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    **options,
) -> ModelPlan:
    """A gradscope model equal to the PyTorch module whose weights are in ``source`` (``from_torch.plan``: its plan).

    ``source``: an ``nn.Module``, a state dict (torch tensors or numpy arrays), or a path to a ``.safetensors``,
    ``.npz`` or ``.pt``/``.pth`` file (the latter read with ``weights_only=True``, torch >= 2.10).
    Recognised from the tensor names: ``nn.RNN``/``nn.LSTM``/``nn.GRU`` (and their ``*Cell``), and the modern
    recurrences of `gradscope.io.modern` (transformers Mamba/Mamba-2, xlstm, mingru-pytorch, lru-pytorch,
    recurrentgemma's PyTorch RG-LRU); several at once is ambiguous and raises, naming them.
    ``kind``: "rnn", "lstm", "gru" (checked against the gate count), or an architecture name ("mamba", "xlstm",
    "mingru", "lru", "rglru") to choose it.
    ``nonlinearity``: "tanh" or "relu" for ``nn.RNN`` (default: sidecar/metadata, else "tanh").
    ``prefix``: the module prefix inside a larger state dict (e.g. ``"encoder.rnn."``), found
    automatically when there is exactly one recurrent module; keys outside it are ignored.
    ``dtype``: float32/float64 (default: float64 if the weights are float64 and x64 is on).
    ``options``: for a modern architecture, its converter's options (Mamba: ``layer``, ``n_groups``,
    ``state_size``, ``time_step_limit``, ``config``; RG-LRU: ``reset_at_start``).
    """
    from gradscope.io import modern

    arrays, meta, desc, hints = _read(source, max_bytes)
    if kind not in (None, "rnn", "lstm", "gru") and kind not in modern.ARCHITECTURES:
        raise ImportFormatError(
            f"kind={kind!r} is not allowed: expected rnn, lstm, gru or one of {', '.join(modern.ARCHITECTURES)}"
        )
    found = {} if kind in ("rnn", "lstm", "gru") or nonlinearity else modern.detect(arrays, prefix=prefix)
    classic = prefix in _prefixes(arrays) if prefix is not None else bool(_prefixes(arrays))
    if kind in modern.ARCHITECTURES or (kind is None and found):
        if kind is None and classic:
            raise modern.ambiguous({**found, "torch": sorted(_prefixes(arrays))}, desc)
        if nonlinearity is not None:
            raise ImportFormatError("nonlinearity= is only for nn.RNN; the tensors are a modern architecture")
        if "mamba" in found and options.get("config") is None and "config" in hints:
            options = {**options, "config": hints["config"]}
        if prefix is not None:
            options["prefix"] = prefix
        path = source if isinstance(source, (str, os.PathLike)) else None
        return modern.import_arrays.plan(
            arrays, architecture=kind, meta=meta, path=path, dtype=dtype, source=desc, **options
        )
    if options:
        raise ImportFormatError(
            f"option {sorted(options)[0]}= is not allowed for nn.RNN/LSTM/GRU weights: from_torch takes kind, "
            "nonlinearity, prefix, dtype and max_bytes"
        )
    lay = infer_layout(arrays, prefix=prefix, kind=kind, source=desc)
    meta_kind = _meta_value(meta, "kind")
    if meta_kind is not None and meta_kind != lay["kind"]:
        raise ImportFormatError(f"{desc}: metadata says kind={meta_kind!r} but the tensor shapes say {lay['kind']!r}")
    if nonlinearity is None:
        nonlinearity = _meta_value(meta, "nonlinearity") or "tanh"
    if lay["kind"] == "rnn" and nonlinearity not in TORCH_NONLINEARITIES:
        raise ImportFormatError(f"nonlinearity={nonlinearity!r} is not allowed: nn.RNN has 'tanh' or 'relu'")
    used = [np.asarray(arrays[k]) for e in lay["params"].values() for k in e.values()]
    dt = resolve_dtype(dtype, used)
    nonlin = str(nonlinearity)

    def cell(layer, direction):
        p = {name: arrays[k] for name, k in lay["params"][(layer, direction)].items()}
        m = (
            lay["input_size"]
            if layer == 0
            else (2 if lay["bidirectional"] else 1) * (lay["proj_size"] or lay["hidden_size"])
        )
        return make_cell(
            lay["kind"],
            p,
            input_size=m,
            hidden_size=lay["hidden_size"],
            proj_size=lay["proj_size"],
            nonlinearity=nonlin,
            dtype=dt,
        )

    return assemble(cell, lay["num_layers"], lay["bidirectional"])


# export lives in gradscope.io.export; these names stay importable from here
from gradscope.io.export import (  # noqa: E402
    save_npz,
    save_safetensors,
    to_torch_state_dict,
    torch_metadata,
)

__all__ = [
    "from_torch",
    "infer_layout",
    "to_torch_state_dict",
    "torch_metadata",
    "save_safetensors",
    "save_npz",
]
