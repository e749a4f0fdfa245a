"""Import Flax linen and NNX ``LSTMCell`` / ``OptimizedLSTMCell`` / ``GRUCell`` (as documented by flax.linen and
flax.nnx).

Flax kernels are ``(in, out)`` — the transpose of PyTorch's. Parameter trees and their mapping:

* linen ``LSTMCell`` and ``OptimizedLSTMCell`` (same tree), NNX ``LSTMCell`` (``if_`` for ``if``):
  ``ii, if, ig, io: {kernel (I,H)}``, ``hi, hf, hg, ho: {kernel (H,H), bias (H,)}`` →
  ``weight_ih = [ii; if; ig; io].kernelᵀ``, ``weight_hh = [hi; …; ho].kernelᵀ``,
  ``bias_hh = [hi; …; ho].bias``, ``bias_ih = 0``.
* NNX ``OptimizedLSTMCell``: fused ``dense_i {kernel (I,4H)}``, ``dense_h {kernel (H,4H), bias (4H)}``
  split i, f, g, o → ``weight_ih = dense_i.kernelᵀ`` etc.
* linen ``GRUCell``: ``ir, iz, in: {kernel, bias}``, ``hr, hz: {kernel}``, ``hn: {kernel, bias}``
  with ``n = tanh(in(x) + r ⊙ hn(h))`` → PyTorch's GRU exactly: ``bias_ih = [ir; iz; in].bias``,
  ``bias_hh = [0; 0; hn.bias]``.
* NNX ``GRUCell``: ``dense_i {kernel (I,3H), bias}``, ``dense_h {kernel (H,3H)}`` (no recurrent bias),
  split r, z, n → ``bias_hh = 0``.

Flax's LSTM carry is ``(c, h)``; gradscope's state is ``(h, c)``.

Sources: a parameter tree (nested mapping; ``{"params": ...}`` and ``nn.RNN``'s ``cell`` level are
found automatically), an NNX module, Flax msgpack bytes (``flax.serialization.to_bytes``; needs flax),
or a ``.msgpack`` / ``.safetensors`` / ``.npz`` file whose names are the flattened tree paths.

Trees of recurrentgemma's RG-LRU (De et al. 2024) and of the LRU paper's Flax layer (Orvieto et al. 2023) are
recognised too and imported with `gradscope.io.rglru` / `gradscope.io.lru` (see `gradscope.io.modern`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradscope.io._build import Importer, expect, make_cell, resolve_dtype
from gradscope.io._plan import ModelPlan, stack
from gradscope.io.formats import DEFAULT_MAX_BYTES, ImportFormatError, msgpack_tree, read_arrays, to_numpy_dict

_LSTM_IN = ("ii", "if", "ig", "io")
_LSTM_H = ("hi", "hf", "hg", "ho")
_GRU_IN = ("ir", "iz", "in")
_GRU_H = ("hr", "hz", "hn")
# layout name -> the key (relative to the cell) that identifies it
_MARKERS = {
    "linen-lstm": "hi.kernel",
    "linen-gru": "hn.kernel",
    "nnx-fused": "dense_h.kernel",
}


def _norm(arrays):
    return {k.replace("/", "."): v for k, v in arrays.items()}


def flax_cells(arrays) -> dict[str, str]:
    """``{prefix: layout}`` for every Flax recurrent cell in a flat mapping."""
    out = {}
    for k in arrays:
        for layout, marker in _MARKERS.items():
            if k == marker or k.endswith("." + marker):
                out[k[: len(k) - len(marker)]] = layout
    return out


def _to_arrays(source, max_bytes):
    if isinstance(source, (bytes, bytearray)):
        return to_numpy_dict(msgpack_tree(bytes(source))), "msgpack bytes"
    mod = type(source).__module__
    if mod.startswith("flax.nnx") or mod.startswith("flax.experimental.nnx"):
        from flax import nnx

        return to_numpy_dict(nnx.to_pure_dict(nnx.state(source, nnx.Param))), type(source).__name__
    arrays, _, desc = read_arrays(source, max_bytes=max_bytes)
    return arrays, desc


@Importer
def from_flax(
    source,
    *,
    kind: str | None = None,
    prefix: str | None = None,
    dtype=None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    reset_at_start: bool | None = None,
) -> ModelPlan:
    """A gradscope `LSTM` or `GRU` cell equal to the Flax cell whose parameters are in ``source``; for a
    recurrentgemma RG-LRU tree (``a_param``, ``input_gate``, ``a_gate``) the `RGLRU` cell (``reset_at_start``:
    see `gradscope.io.rglru`), for the LRU paper's Flax layer (``nu_log``, ``B_re``, ...) the `LRU` cell
    (``from_flax.plan``: its plan)."""
    arrays, desc = _to_arrays(source, max_bytes)
    arrays = _norm(arrays)
    found = flax_cells(arrays)
    if prefix is not None:
        found = {p: l for p, l in found.items() if p == prefix}
    if not found and kind is None:  # an RG-LRU (recurrentgemma) or LRU (the paper's Flax code) tree
        from gradscope.io import modern

        if modern.detect(arrays, prefix=prefix, flax_only=True):
            opts: dict[str, Any] = {} if prefix is None else {"prefix": prefix}
            if reset_at_start is not None:
                opts["reset_at_start"] = reset_at_start
            name = modern.choose(modern.detect(arrays, prefix=prefix, flax_only=True), None, desc)
            return modern.import_arrays.plan(arrays, architecture=name, dtype=dtype, source=desc, **opts)
    elif reset_at_start is not None:
        raise ImportFormatError("reset_at_start= is only for an RG-LRU parameter tree")
    if not found:
        raise ImportFormatError(
            f"{desc}: no Flax LSTMCell/OptimizedLSTMCell/GRUCell parameters found "
            f"(looked for 'hi.kernel', 'hn.kernel', 'dense_h.kernel'); keys are {sorted(arrays)[:12]}"
        )
    if len(found) > 1:
        raise ImportFormatError(f"{desc}: several Flax cells at prefixes {sorted(found)}; pass prefix= to choose one")
    ((pre, layout),) = found.items()
    own = {k[len(pre) :]: v for k, v in arrays.items() if k.startswith(pre)}
    if layout == "linen-lstm" and "if_.kernel" in own:
        own["if.kernel"] = own.pop("if_.kernel")
    H = np.shape(own[_MARKERS[layout]])[0]

    def get(key, shape):
        return expect(own, key, shape, desc, label=pre + key)

    if layout == "nnx-fused":
        G = np.shape(own["dense_h.kernel"])[-1] // max(H, 1)
        inferred = {4: "lstm", 3: "gru"}.get(G)
        if inferred is None or np.shape(own["dense_h.kernel"])[-1] != G * H:
            raise ImportFormatError(
                f"{desc}: {pre}dense_h.kernel has shape {np.shape(own['dense_h.kernel'])}, "
                "expected (H, 4H) (OptimizedLSTMCell) or (H, 3H) (GRUCell)"
            )
        I = np.shape(own.get("dense_i.kernel", np.zeros((0, 0))))[0]
        W_i, W_h = get("dense_i.kernel", (I, G * H)), get("dense_h.kernel", (H, G * H))
        if inferred == "lstm":
            expected = {"dense_i.kernel", "dense_h.kernel", "dense_h.bias"}
            p = {"weight_ih": W_i.T, "weight_hh": W_h.T, "bias_hh": get("dense_h.bias", (4 * H,))}
        else:
            expected = {"dense_i.kernel", "dense_i.bias", "dense_h.kernel"}
            p = {"weight_ih": W_i.T, "weight_hh": W_h.T, "bias_ih": get("dense_i.bias", (3 * H,))}
    elif layout == "linen-lstm":
        inferred = "lstm"
        I = np.shape(own.get("ii.kernel", np.zeros((0, 0))))[0]
        expected = {f"{g}.kernel" for g in _LSTM_IN + _LSTM_H} | {f"{g}.bias" for g in _LSTM_H}
        p = {
            "weight_ih": np.concatenate([get(f"{g}.kernel", (I, H)).T for g in _LSTM_IN]),
            "weight_hh": np.concatenate([get(f"{g}.kernel", (H, H)).T for g in _LSTM_H]),
            "bias_hh": np.concatenate([get(f"{g}.bias", (H,)) for g in _LSTM_H]),
        }
    else:
        inferred = "gru"
        I = np.shape(own.get("ir.kernel", np.zeros((0, 0))))[0]
        expected = {f"{g}.kernel" for g in _GRU_IN + _GRU_H} | {f"{g}.bias" for g in _GRU_IN + ("hn",)}
        zeros = np.zeros((H,), np.asarray(own["hn.kernel"]).dtype)
        p = {
            "weight_ih": np.concatenate([get(f"{g}.kernel", (I, H)).T for g in _GRU_IN]),
            "weight_hh": np.concatenate([get(f"{g}.kernel", (H, H)).T for g in _GRU_H]),
            "bias_ih": np.concatenate([get(f"{g}.bias", (H,)) for g in _GRU_IN]),
            "bias_hh": np.concatenate([zeros, zeros, get("hn.bias", (H,))]),
        }
    if kind is not None and kind != inferred:
        raise ImportFormatError(f"{desc}: kind={kind!r} was given but the parameters are a Flax {inferred}")
    extra = sorted(set(own) - expected)
    if extra:
        raise ImportFormatError(
            f"{desc}: unexpected parameter(s) {[pre + e for e in extra]} for a Flax {inferred} cell"
        )
    if I <= 0:
        raise ImportFormatError(f"{desc}: the input kernel of {pre or 'the cell'} is empty or missing")
    dt = resolve_dtype(dtype, [np.asarray(v) for v in own.values()])
    return stack([make_cell(inferred, p, input_size=I, hidden_size=H, dtype=dt)])
