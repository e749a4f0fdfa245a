"""Import sLSTM / mLSTM weights from the `xlstm` package (Beck et al. 2024, "xLSTM: Extended Long
Short-Term Memory") into `gradscope.cells.xlstm` cells.

Recognised modules (``P`` = any common key prefix, e.g. ``blocks.0.xlstm.``)::

    sLSTMCell   P_recurrent_kernel_  (heads, 4·Dh, Dh) vanilla backend | (heads, Dh, 4·Dh) cuda backend
                P_bias_              (4n,) gate-major (i, f, z, o) | head-major (cuda)
    sLSTMLayer  P{f,i,z,o}gate.weight (heads, Dh, Dh), Pslstm_cell.*, Pgroup_norm.weight (n,)
                [Pconv1d.conv.weight, Pconv1d.conv.bias when conv1d_kernel_size > 0]
    mLSTMCell   P{i,f}gate.weight (heads, 3E), P{i,f}gate.bias (heads,), Poutnorm.weight (E,)
    mLSTMLayer  Pmlstm_cell.*, Pproj_up.weight, Pconv1d.*, P{q,k,v}_proj.weight, ...

* An sLSTMCell becomes an `SLSTM` whose input is the cell's own input, the stacked gate pre-activations
  W x (4n), so ``weight_ih = I``. The two backends store R and b in different internal layouts; the
  shape of R tells which (4·Dh ≠ Dh), and both map to the same cell.
* An sLSTMLayer built with ``conv1d_kernel_size=0`` becomes an `SLSTM` on the layer input: W stacks the
  layer's head-wise gate projections as the layer applies them — note that the package feeds
  ``fgate`` into the input-gate slot and ``igate`` into the forget-gate slot — and the readout is the
  layer's per-head norm with scale 1 + ``group_norm.weight``.
* An mLSTMCell becomes an `MLSTM` whose input is [q; k; v] (3E; W_q, W_k, W_v select the thirds),
  without output gate, readout scale 1 + ``outnorm.weight``.
* Refused, with the reason: layers with a causal conv1d (the sLSTMLayer default, every mLSTMLayer): the
  conv window is recurrent state that these cells do not model; import the layer's cell instead
  (``prefix=".../slstm_cell."`` or ``".../mlstm_cell."``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from gradscope.io._build import Importer, expect, resolve_dtype
from gradscope.io._plan import CellPlan, ModelPlan, stack
from gradscope.io.formats import ImportFormatError, check_float_array

KINDS = ("slstm-cell", "slstm-layer", "mlstm-cell", "mlstm-layer")
_RK, _SC, _MC = "_recurrent_kernel_", "slstm_cell.", "mlstm_cell."
_LAYER_KEYS = ("igate.weight", "fgate.weight", "zgate.weight", "ogate.weight", "group_norm.weight")


def modules(keys) -> dict[str, str]:
    """The xLSTM modules found among ``keys``: prefix -> kind (one of `KINDS`)."""
    keys = set(keys)
    out: dict[str, str] = {}
    for k in keys:
        if k.endswith(_RK):
            p = k[: -len(_RK)]
            if p.endswith(_SC) and any(p[: -len(_SC)] + g in keys for g in _LAYER_KEYS):
                out[p[: -len(_SC)]] = "slstm-layer"
            else:
                out.setdefault(p, "slstm-cell")
        elif k.endswith("outnorm.weight"):
            p = k[: -len("outnorm.weight")]
            if {p + "igate.weight", p + "fgate.weight"} <= keys:
                if p.endswith(_MC) and p[: -len(_MC)] + "proj_up.weight" in keys:
                    out[p[: -len(_MC)]] = "mlstm-layer"
                else:
                    out[p] = "mlstm-cell"
    # a layer's own cell is part of the layer, not a second module
    return {
        p: kd
        for p, kd in out.items()
        if not (
            (p.endswith(_SC) and out.get(p[: -len(_SC)]) == "slstm-layer")
            or (p.endswith(_MC) and out.get(p[: -len(_MC)]) == "mlstm-layer")
        )
    }


def recognise(keys) -> bool:
    """Whether these state-dict keys hold an `xlstm` sLSTM / mLSTM cell or layer."""
    return bool(modules(keys))


def _arrays(sd: Mapping) -> dict[str, np.ndarray]:
    out = {}
    for k, v in sd.items():
        if hasattr(v, "detach"):  # a torch tensor
            v = v.detach().cpu().numpy()
        out[k] = np.asarray(v)
    return out


@Importer
def from_state_dict(
    sd: Mapping, *, prefix: str | None = None, dtype=None, source: str = "xlstm state dict"
) -> ModelPlan:
    """The gradscope cell for the sLSTM / mLSTM module in ``sd`` (numpy arrays or torch tensors;
    ``from_state_dict.plan``: its plan).

    ``prefix`` picks one module when ``sd`` holds several (a whole xLSTM stack); ``dtype`` float32 or
    float64 (default: float64 when every tensor is float64 and JAX has x64 enabled)."""
    arrays = _arrays(sd)
    found = modules(arrays)
    if prefix is None:
        if len(found) != 1:
            listed = ", ".join(map(repr, sorted(found)))
            what = f"{len(found)} modules ({listed})" if found else "no sLSTM/mLSTM cell or layer"
            raise ImportFormatError(f"{source}: found {what}; pass prefix= to pick one")
        prefix = next(iter(found))
    elif prefix not in found:
        raise ImportFormatError(
            f"{source}: prefix={prefix!r} is not an sLSTM/mLSTM module; found "
            f"{', '.join(map(repr, sorted(found))) or 'none'}"
        )
    kind = found[prefix]
    dt = resolve_dtype(dtype, [a for k, a in arrays.items() if k.startswith(prefix) and a.dtype.kind == "f"])
    if kind == "slstm-cell":
        return stack([_slstm(arrays, prefix, None, source, dt)])
    if kind == "slstm-layer":
        return stack([_slstm_layer(arrays, prefix, source, dt)])
    if kind == "mlstm-cell":
        return stack([_mlstm(arrays, prefix, source, dt)])
    raise ImportFormatError(
        f"{source}: tensor {prefix + 'conv1d.conv.weight'!r}: an mLSTMLayer's causal conv1d window is recurrent "
        f"state that gradscope's mlstm cell does not model; import its cell with prefix={prefix + _MC!r} "
        "(inputs q, k, v)"
    )


def _recurrent(arrays, p, source):
    """R as ``(4, heads, Dh_out, Dh_in)`` and the backend its layout came from."""
    key = p + _RK
    if key not in arrays:
        raise ImportFormatError(f"{source}: missing tensor {key!r}")
    R = check_float_array(arrays[key], key, source)
    if R.ndim == 3 and R.shape[1] == 4 * R.shape[2]:  # vanilla: [head, gate·Dh_out, Dh_in]
        K, _, D = R.shape
        return R.reshape(K, 4, D, D).transpose(1, 0, 2, 3), "vanilla"
    if R.ndim == 3 and R.shape[2] == 4 * R.shape[1]:  # cuda: [head, Dh_in, gate·Dh_out]
        K, D, _ = R.shape
        return R.reshape(K, D, 4, D).transpose(2, 0, 3, 1), "cuda"
    raise ImportFormatError(
        f"{source}: tensor {key!r} has shape {R.shape}, expected (heads, 4·Dh, Dh) (vanilla "
        "backend) or (heads, Dh, 4·Dh) (cuda backend)"
    )


def _block_diag(blocks: np.ndarray) -> np.ndarray:
    """The block-diagonal matrix (K·D, K·D) of ``blocks`` (K, D, D)."""
    K, D, _ = blocks.shape
    return np.einsum("kl,kij->kilj", np.eye(K, dtype=blocks.dtype), blocks).reshape(K * D, K * D)


def _slstm(arrays, p, weight_ih, source, dt, norm_scale=None) -> CellPlan:
    R, backend = _recurrent(arrays, p, source)
    K, D = R.shape[1], R.shape[2]
    n = K * D
    b = expect(arrays, p + "_bias_", (4 * n,), source)
    if backend == "cuda":  # head-major [head, gate, unit] -> gate-major [gate, head, unit]
        b = b.reshape(K, 4, D).transpose(1, 0, 2).reshape(-1)
    W = np.eye(4 * n) if weight_ih is None else weight_ih
    weights = {"weight_ih": W, "weight_hh": R, "bias": b, "norm_scale": norm_scale}
    static = {"input_size": W.shape[1], "hidden_size": n, "num_heads": K}
    return CellPlan("xlstm", "SLSTM", static, weights, dt, name="slstm")


def _slstm_layer(arrays, p, source, dt) -> CellPlan:
    conv = p + "conv1d.conv.weight"
    if conv in arrays:
        raise ImportFormatError(
            f"{source}: tensor {conv!r}: this sLSTMLayer has a causal conv1d (conv1d_kernel_size > 0) whose window "
            f"is recurrent state that gradscope's slstm cell does not model; import its cell with "
            f"prefix={p + _SC!r} (inputs: the gate pre-activations) or use conv1d_kernel_size=0"
        )
    R, _ = _recurrent(arrays, p + _SC, source)
    K, D = R.shape[1], R.shape[2]
    n = K * D
    # the layer computes i, f, z, o = fgate(x), igate(x), zgate(x), ogate(x) (sic) and concatenates them
    blocks = [expect(arrays, p + g + ".weight", (K, D, D), source) for g in ("fgate", "igate", "zgate", "ogate")]
    W = np.concatenate([_block_diag(w) for w in blocks], axis=0)
    gn = p + "group_norm.weight"
    scale = 1.0 + expect(arrays, gn, (n,), source) if gn in arrays else np.ones(n)
    return _slstm(arrays, p + _SC, W, source, dt, norm_scale=scale)


def _mlstm(arrays, p, source, dt) -> CellPlan:
    key = p + "igate.weight"
    Wi = check_float_array(arrays[key], key, source)
    if Wi.ndim != 2 or Wi.shape[1] % 3 or (Wi.shape[1] // 3) % Wi.shape[0]:
        raise ImportFormatError(
            f"{source}: tensor {key!r} has shape {Wi.shape}, expected (heads, 3·E) with heads dividing E"
        )
    H, E = Wi.shape[0], Wi.shape[1] // 3
    bi = expect(arrays, p + "igate.bias", (H,), source)
    Wf = expect(arrays, p + "fgate.weight", (H, 3 * E), source)
    bf = expect(arrays, p + "fgate.bias", (H,), source)
    scale = 1.0 + expect(arrays, p + "outnorm.weight", (E,), source)
    eye, zero = np.eye(E), np.zeros((E, E))
    sel = [np.concatenate([eye if j == i else zero for j in range(3)], axis=1) for i in range(3)]
    z = np.zeros((E,))
    weights = {
        "weight_q": sel[0],
        "weight_k": sel[1],
        "weight_v": sel[2],
        "bias_q": z,
        "bias_k": z,
        "bias_v": z,
        "weight_i": Wi,
        "weight_f": Wf,
        "bias_i": bi,
        "bias_f": bf,
        "norm_scale": scale,
    }
    return CellPlan(
        "xlstm", "MLSTM", {"input_size": 3 * E, "hidden_size": E, "num_heads": H}, weights, dt, name="mlstm"
    )
