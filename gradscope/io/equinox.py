"""Import Equinox ``eqx.nn.LSTMCell`` / ``eqx.nn.GRUCell`` (Equinox's equinox.nn documentation).

Equinox uses PyTorch's ``(out, in)`` layout and gate order, with one input-side bias:

* ``LSTMCell``: ``weight_ih (4H, I)``, ``weight_hh (4H, H)``, ``bias (4H,)`` (i, f, g, o) →
  ``bias_ih = bias``, ``bias_hh = 0``.
* ``GRUCell``: ``weight_ih (3H, I)``, ``weight_hh (3H, H)``, ``bias (3H,)``, ``bias_n (H,)`` (r, z, n;
  ``new = tanh(i_n + r ⊙ (h_n + bias_n))``, ``h' = new + z ⊙ (h − new)``) → PyTorch's GRU with
  ``bias_ih = bias``, ``bias_hh = [0, 0, bias_n]``.
* ``use_bias=False``: the biases are ``None`` (zeros here).

Equinox's LSTM state is ``(h, c)``, like gradscope's. Sources: the module itself (its fields are
read; equinox need not be importable here), a mapping of those field names (optionally under a
prefix), or a ``.safetensors`` / ``.npz`` file holding them.
"""

from __future__ import annotations

import numpy as np

from gradscope.io._build import Importer, expect, make_cell, resolve_dtype
from gradscope.io._plan import ModelPlan, stack
from gradscope.io.formats import DEFAULT_MAX_BYTES, ImportFormatError, read_arrays

_FIELDS = ("weight_ih", "weight_hh", "bias", "bias_n")


def _to_arrays(source, max_bytes):
    if all(hasattr(source, f) for f in ("weight_ih", "weight_hh", "hidden_size")) and not isinstance(source, dict):
        out = {f: np.asarray(getattr(source, f)) for f in _FIELDS if getattr(source, f, None) is not None}
        return out, type(source).__name__
    arrays, _, desc = read_arrays(source, max_bytes=max_bytes)
    return {k.replace("/", "."): v for k, v in arrays.items()}, desc


@Importer
def from_equinox(
    source, *, kind: str | None = None, prefix: str = "", dtype=None, max_bytes: int = DEFAULT_MAX_BYTES
) -> ModelPlan:
    """A gradscope `LSTM` or `GRU` cell equal to the Equinox cell ``source`` (see the module docstring;
    ``from_equinox.plan``: its plan)."""
    arrays, desc = _to_arrays(source, max_bytes)
    own = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
    if "weight_hh" not in own or "weight_ih" not in own:
        raise ImportFormatError(
            f"{desc}: no Equinox cell fields 'weight_ih'/'weight_hh' under prefix {prefix!r}; "
            f"keys are {sorted(arrays)[:12]}"
        )
    w_hh = np.asarray(own["weight_hh"])
    if w_hh.ndim != 2 or w_hh.shape[1] == 0 or w_hh.shape[0] % w_hh.shape[1]:
        raise ImportFormatError(f"{desc}: {prefix}weight_hh has shape {w_hh.shape}, expected (G·H, H)")
    H = w_hh.shape[1]
    G = w_hh.shape[0] // H
    inferred = {4: "lstm", 3: "gru"}.get(G)
    if inferred is None:
        raise ImportFormatError(
            f"{desc}: {prefix}weight_hh has shape {w_hh.shape}: {G} gate blocks, expected 4 (LSTMCell) or 3 (GRUCell)"
        )
    if kind is not None and kind != inferred:
        raise ImportFormatError(f"{desc}: kind={kind!r} was given but the shapes say {inferred!r}")
    I = np.shape(own["weight_ih"])[-1] if np.ndim(own["weight_ih"]) == 2 else -1

    def get(key, shape):
        return expect(own, key, shape, desc, label=prefix + key)

    p = {"weight_ih": get("weight_ih", (G * H, I)), "weight_hh": get("weight_hh", (G * H, H))}
    expected = {"weight_ih", "weight_hh"}
    if "bias" in own:
        p["bias_ih"] = get("bias", (G * H,))
        expected.add("bias")
    if inferred == "gru" and "bias_n" in own:
        bn = get("bias_n", (H,))
        p["bias_hh"] = np.concatenate([np.zeros(2 * H, bn.dtype), bn])
        expected.add("bias_n")
    extra = sorted(set(own) - expected)
    if extra:
        raise ImportFormatError(
            f"{desc}: unexpected field(s) {[prefix + e for e in extra]} for an Equinox "
            f"{'LSTMCell' if inferred == 'lstm' else 'GRUCell'}"
        )
    dt = resolve_dtype(dtype, [np.asarray(v) for v in own.values()])
    return stack([make_cell(inferred, p, input_size=I, hidden_size=H, dtype=dt)])
