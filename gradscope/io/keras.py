"""Import Keras 3 ``SimpleRNN`` / ``LSTM`` / ``GRU`` weights (Keras 3 layer documentation and source, keras.layers).

Keras stores ``kernel (I, G·H)``, ``recurrent_kernel (H, G·H)`` and ``bias`` — kernels are the
**transpose** of PyTorch's (``x @ kernel``). Mapping onto gradscope's PyTorch-layout cells:

* ``LSTM`` (gates i, f, c, o = PyTorch's i, f, g, o): ``weight_ih = kernel.T``,
  ``weight_hh = recurrent_kernel.T``, ``bias_ih = bias``, ``bias_hh = 0``.
* ``GRU(reset_after=True)`` (the default; bias ``(2, 3H)`` = input and recurrent rows; gates
  **z, r, h**) → `gradscope.cells.gru.GRU`: gate blocks reordered z,r,h → r,z,n;
  ``bias_ih = bias[0]``, ``bias_hh = bias[1]`` (both reordered). Keras' ``h = z⊙h + (1−z)⊙hh`` is
  PyTorch's update.
* ``GRU(reset_after=False)`` (bias ``(3H,)``; ``hh = tanh(x W_h + b_h + (r⊙h) U_h)``) →
  `gradscope.cells.gru.GRUChung` (reset before the matmul). That cell's z *writes*
  (``h' = (1−z)⊙h + z⊙h̃``) while Keras' z *keeps*, so z_chung = 1 − z_keras = σ(−a_z): the z rows
  of both matrices and the z bias are negated — exact, not an approximation.
* ``SimpleRNN``: ``weight_ih = kernel.T``, ``weight_hh = recurrent_kernel.T``, ``bias_ih = bias``;
  the activation is ``nonlinearity`` (Keras' default ``tanh``).

Assumed: Keras' default ``activation="tanh"`` and ``recurrent_activation="sigmoid"`` for LSTM/GRU.

Sources: ``layer.get_weights()`` (a list ``[kernel, recurrent_kernel, bias]``), a mapping with keys
ending in ``kernel`` / ``recurrent_kernel`` / ``bias`` (e.g. from ``layer.weights`` paths), or a
Keras 3 ``.weights.h5`` file (``layers/<name>/cell/vars/0..2``; needs h5py; read as untrusted: no
links, no external or virtual datasets, float data only, sizes bounded before reading).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from gradscope.io._arrays import kind_by_gates
from gradscope.io._build import Importer, expect, make_cell, resolve_dtype
from gradscope.io._plan import CellPlan, ModelPlan, stack
from gradscope.io.formats import (  # noqa: F401  (read_h5 re-exported)
    DEFAULT_MAX_BYTES,
    ImportFormatError,
    check_float_array,
    read_arrays,
    read_h5,
)

_VARS = re.compile(r"^(?P<prefix>.*)vars\.(?P<i>\d+)$")
_NAMES = ("kernel", "recurrent_kernel", "bias")


def keras_layers(arrays: Mapping[str, np.ndarray]) -> dict[str, dict[str, str]]:
    """Recurrent layers in a flat mapping: ``{prefix: {"kernel": key, "recurrent_kernel": key, "bias": key?}}``.

    Two naming styles: variable paths (``.../lstm_cell/recurrent_kernel``, ``/`` or ``.`` separated)
    and ``.weights.h5`` slots (``layers.lstm.cell.vars.0/1/2``, which only count as a recurrent layer
    when there are 2 or 3 slots with 2-D first and second entries of matching widths).
    """
    out: dict[str, dict[str, str]] = {}
    norm = {k.replace("/", "."): k for k in arrays}
    for nk, k in norm.items():
        if nk.endswith("recurrent_kernel"):
            pre = nk[: -len("recurrent_kernel")]
            ent = {"recurrent_kernel": k}
            for name in ("kernel", "bias"):
                if pre + name in norm:
                    ent[name] = norm[pre + name]
            out[pre.rstrip(".")] = ent
    slots: dict[str, dict[int, str]] = {}
    for nk, k in norm.items():
        m = _VARS.match(nk)
        if m:
            slots.setdefault(m.group("prefix"), {})[int(m.group("i"))] = k
    for pre, s in slots.items():
        if sorted(s) not in ([0, 1], [0, 1, 2]):
            continue
        k0, k1 = np.shape(arrays[s[0]]), np.shape(arrays[s[1]])
        if len(k0) == 2 and len(k1) == 2 and k0[1] == k1[1] and k1[0] > 0 and k1[1] % k1[0] == 0:
            out[pre.rstrip(".").removesuffix(".cell").removesuffix(".vars")] = {
                name: s[i] for i, name in enumerate(_NAMES) if i in s
            }
    return out


@Importer
def from_keras(
    source,
    *,
    kind: str | None = None,
    reset_after: bool | None = None,
    nonlinearity: str = "tanh",
    layer: str | None = None,
    dtype=None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ModelPlan:
    """A gradscope cell equal to a Keras 3 SimpleRNN/LSTM/GRU layer (see the module docstring; ``from_keras.plan``:
    its plan).

    ``layer`` picks one layer by name (a path component such as ``"lstm"`` or ``"gru_1"``) when the
    source holds several. GRU ``reset_after`` is read from the bias shape; passing it checks it.
    """
    if isinstance(source, Sequence) and not isinstance(source, (str, bytes)):
        if len(source) not in (2, 3):
            raise ImportFormatError(
                f"source is a list of {len(source)} arrays: expected get_weights() of one "
                "recurrent layer, [kernel, recurrent_kernel] or [kernel, recurrent_kernel, bias]"
            )
        arrays = {name: np.asarray(a) for name, a in zip(_NAMES, source)}
        desc = "weights list"
    else:
        arrays, _, desc = read_arrays(source, max_bytes=max_bytes)
    found = keras_layers(arrays)
    if not found:
        raise ImportFormatError(
            f"{desc}: no Keras recurrent layer found (no 'recurrent_kernel' or "
            f"'.../cell/vars/1'); keys are {sorted(arrays)[:12]}"
        )
    if layer is not None:
        sel = {p: e for p, e in found.items() if layer in re.split(r"[./]", p) or p == layer}
        if len(sel) != 1:
            raise ImportFormatError(f"layer={layer!r} matches {len(sel)} recurrent layers; found {sorted(found)}")
        found = sel
    if len(found) > 1:
        raise ImportFormatError(f"{desc}: several recurrent layers {sorted(found)}; pass layer= to choose one")
    ((pre, ent),) = found.items()
    cell = _cell_from_keras(
        arrays, ent, desc, kind=kind, reset_after=reset_after, nonlinearity=nonlinearity, dtype=dtype
    )
    return stack([cell])


def _cell_from_keras(arrays, ent, desc, *, kind, reset_after, nonlinearity, dtype) -> CellPlan:
    if "kernel" not in ent:
        raise ImportFormatError(f"{desc}: {ent['recurrent_kernel']!r} has no matching kernel")
    rk = check_float_array(np.asarray(arrays[ent["recurrent_kernel"]]), ent["recurrent_kernel"], desc)
    if rk.ndim != 2:
        raise ImportFormatError(f"{desc}: {ent['recurrent_kernel']!r} has shape {rk.shape}, expected (H, G·H)")
    H = rk.shape[0]
    G, inferred = kind_by_gates(rk.shape, rk.shape[1], H, kind, f"{desc}: {ent['recurrent_kernel']!r}", "SimpleRNN")
    k = check_float_array(np.asarray(arrays[ent["kernel"]]), ent["kernel"], desc)
    if k.ndim != 2 or k.shape[1] != G * H:
        raise ImportFormatError(f"{desc}: {ent['kernel']!r} has shape {k.shape}, expected (input_size, {G * H})")
    I = k.shape[0]
    b = None
    if "bias" in ent:
        b = check_float_array(np.asarray(arrays[ent["bias"]]), ent["bias"], desc)
        if inferred == "gru" and b.ndim == 2:
            after = True
            expect({ent["bias"]: b}, ent["bias"], (2, G * H), desc)
        else:
            after = False if inferred == "gru" else None
            expect({ent["bias"]: b}, ent["bias"], (G * H,), desc)
        if inferred == "gru" and reset_after is not None and reset_after != after:
            raise ImportFormatError(
                f"{desc}: reset_after={reset_after} was given but bias {ent['bias']!r} has shape "
                f"{b.shape} ({'(2, 3H)' if after else '(3H,)'} means reset_after={after})"
            )
    else:
        after = True if reset_after is None else reset_after
    dt = resolve_dtype(dtype, [a for a in (k, rk, b) if a is not None])
    W_ih, W_hh = k.T, rk.T
    if inferred == "rnn":
        p = {"weight_ih": W_ih, "weight_hh": W_hh, "bias_ih": b}
        return make_cell("rnn", p, input_size=I, hidden_size=H, nonlinearity=nonlinearity, dtype=dt)
    if inferred == "lstm":
        p = {"weight_ih": W_ih, "weight_hh": W_hh, "bias_ih": b}
        return make_cell("lstm", p, input_size=I, hidden_size=H, dtype=dt)
    perm = np.concatenate([np.arange(H, 2 * H), np.arange(H), np.arange(2 * H, 3 * H)])  # z,r,h -> r,z,n
    if after:
        p = {"weight_ih": W_ih[perm], "weight_hh": W_hh[perm]}
        if b is not None:
            p |= {"bias_ih": b[0][perm], "bias_hh": b[1][perm]}
        return make_cell("gru", p, input_size=I, hidden_size=H, dtype=dt)
    sign = np.ones(3 * H)
    sign[H : 2 * H] = -1  # z_chung = 1 - z_keras = σ(-a_z)
    p = {"weight_ih": W_ih[perm] * sign[:, None], "weight_hh": W_hh[perm] * sign[:, None]}
    if b is not None:
        p["bias_ih"] = b[perm] * sign
    return make_cell("gru-chung", p, input_size=I, hidden_size=H, dtype=dt)


__all__ = ["from_keras", "keras_layers", "read_h5"]
