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
import re
from collections.abc import Mapping

import numpy as np

from gradscope.io._build import TORCH_NONLINEARITIES, expect, make_cell, resolve_dtype
from gradscope.io.deep_bidirectional import DeepBidirectional
from gradscope.io.formats import (
    DEFAULT_MAX_BYTES,
    ImportFormatError,
    check_float_array,
    read_arrays,
    write_npz,
    write_safetensors,
)

_LAYERED = re.compile(
    r"^(?P<prefix>.*?)(?P<param>weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)"
    r"_l(?P<layer>\d+)(?P<rev>_reverse)?$"
)
_CELL = re.compile(r"^(?P<prefix>.*?)(?P<param>weight_ih|weight_hh|bias_ih|bias_hh)$")
_KIND_BY_GATES = {1: "rnn", 3: "gru", 4: "lstm"}


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
    arrays: Mapping[str, np.ndarray], *, prefix: str | None = None, kind: str | None = None, source: str = "state dict"
) -> dict:
    """Work out what a PyTorch state dict holds, checking every name and shape.

    Returns ``{"kind", "input_size", "hidden_size", "proj_size", "num_layers", "bidirectional",
    "bias", "prefix", "style" ("layered"/"cell"), "params": {(layer, direction): {name: key}},
    "ignored": [keys outside the prefix]}``. Raises `ImportFormatError` naming the tensor and the
    expected shape on anything missing, extra, misshapen, non-float or non-finite.
    """
    cands = _prefixes(arrays)
    if prefix is None:
        if not cands:
            raise ImportFormatError(
                f"{source}: no PyTorch RNN weights found (no 'weight_ih_l0' or 'weight_ih' "
                f"key); keys are {sorted(arrays)[:12]}"
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
    if hidden <= 0 or w_hh.shape[0] % hidden:
        raise ImportFormatError(
            f"{source}: {key('weight_hh', 0, False)!r} has shape {w_hh.shape}: its rows are "
            f"not a multiple (1, 3 or 4) of hidden_size={hidden}"
        )
    gates = w_hh.shape[0] // hidden
    if gates not in _KIND_BY_GATES:
        raise ImportFormatError(
            f"{source}: {key('weight_hh', 0, False)!r} has shape {w_hh.shape}: {gates} gate "
            "blocks, expected 1 (RNN), 3 (GRU) or 4 (LSTM)"
        )
    inferred = _KIND_BY_GATES[gates]
    if proj and inferred != "lstm":
        raise ImportFormatError(f"{source}: {hr_key!r} (projection) exists but the gate count says {inferred}")
    if kind is not None and kind != inferred:
        raise ImportFormatError(
            f"{source}: kind={kind!r} was given but the shapes say {inferred!r} "
            f"({gates} gate block(s) in {key('weight_hh', 0, False)!r}, shape {w_hh.shape})"
        )
    if proj and not 0 < proj < hidden:
        raise ImportFormatError(f"{source}: {hr_key!r} has shape {(proj, hidden)}: proj_size must be < hidden_size")
    input_size = int(w_ih.shape[1])

    if style == "cell":
        layers, bidir = 1, False
    else:
        found = {int(_LAYERED.match(k).group("layer")) for k in own if _LAYERED.match(k)}
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


def from_torch(
    source,
    *,
    kind: str | None = None,
    nonlinearity: str | None = None,
    prefix: str | None = None,
    dtype=None,
    max_bytes: int = DEFAULT_MAX_BYTES,
):
    """A gradscope model equal to the PyTorch RNN/LSTM/GRU whose weights are in ``source``.

    ``source``: a state dict (torch tensors or numpy arrays), or a path to a ``.safetensors``,
    ``.npz`` or ``.pt``/``.pth`` file (the latter read with ``weights_only=True``, torch >= 2.10).
    ``kind``: optional check ("rnn", "lstm", "gru"); it is inferred from the gate count.
    ``nonlinearity``: "tanh" or "relu" for ``nn.RNN`` (default: sidecar/metadata, else "tanh").
    ``prefix``: the module prefix inside a larger state dict (e.g. ``"encoder.rnn."``), found
    automatically when there is exactly one recurrent module; keys outside it are ignored.
    ``dtype``: float32/float64 (default: float64 if the weights are float64 and x64 is on).
    """
    arrays, meta, desc = read_arrays(source, max_bytes=max_bytes)
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
            nonlinearity=nonlinearity,
            dtype=dt,
        )

    return assemble(cell, lay["num_layers"], lay["bidirectional"])


def assemble(cell, num_layers: int, bidirectional: bool):
    """cell / Stack / Bidirectional / DeepBidirectional from ``cell(layer, "fwd"|"bwd")``."""
    from gradscope.nets import Bidirectional, Stack

    if not bidirectional:
        cells = [cell(l, "fwd") for l in range(num_layers)]
        return cells[0] if num_layers == 1 else Stack(tuple(cells))
    layers = [Bidirectional(cell(l, "fwd"), cell(l, "bwd")) for l in range(num_layers)]
    return layers[0] if num_layers == 1 else DeepBidirectional(tuple(layers))


# ------------------------------------------------------------------------------------- export
def _cell_params(c) -> dict[str, np.ndarray]:
    from gradscope.io._build import cell_kind

    kind = cell_kind(c)
    out = {"weight_ih": c.weight_ih, "weight_hh": c.weight_hh, "bias_ih": c.bias_ih, "bias_hh": c.bias_hh}
    if kind == "lstm" and c.weight_hr is not None:
        out["weight_hr"] = c.weight_hr
    return {k: np.asarray(v) for k, v in out.items()}


def _layers_of(model):
    """``(kind, [[fwd] or [fwd, bwd] per layer], nonlinearity, proj)`` of an exportable model."""
    from gradscope.io._build import cell_kind
    from gradscope.nets import Bidirectional, Stack

    if isinstance(model, DeepBidirectional):
        grid = [[b.forward, b.backward] for b in model.layers]
    elif isinstance(model, Bidirectional):
        grid = [[model.forward, model.backward]]
    elif isinstance(model, Stack):
        if model.residual:
            raise ImportFormatError("a residual Stack has no PyTorch nn.RNN/LSTM/GRU equivalent")
        grid = [[c] for c in model.layers]
    else:
        grid = [[model]]
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
